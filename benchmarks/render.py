"""Time region MultiDiffusion (pipeline.render) against diffusers' StableDiffusionPanoramaPipeline.

    python -m benchmarks.render [--model DIR | --arch tiny|sd15] [--width 1024 --height 512]
        [--window 512 --stride 256] [--steps 20] [--repeats 3] [--regions 6] [--device auto]

Both run on the same components, canvas, windows, steps, guidance and seed; the panorama
pipeline is given exactly our windows (its `get_views` is replaced: it hard-codes 64-cell
windows every 8 cells and a VAE factor of 8) and batches all of them into one UNet call, its
fastest setting. Rows:

* `panorama`: diffusers, one prompt over every window.
* `ours, 1 prompt`: `multidiffusion` with no regions (the background prompt everywhere), the
  same UNet work as the panorama: the ratio is our overhead (target <= 1.2x).
* `ours, N regions`: `multidiffusion` with N disc regions plus the background: more
  (window, prompt) pairs per step, so more UNet work; its ratio is per UNet pair as well.

Medians of --repeats after one warm-up run each, the two interleaved. Without --model, the
components are random: "tiny" (the test model, CPU-friendly; overhead-dominated, so the
least favourable case for the ratio) or "sd15" (the SD 1.5 architecture, for a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline import render
from pipeline.models import resolve_device
from pipeline.render import Components, Region, RenderConfig
from pipeline.render.denoise import _plan  # what the benchmark counts: the pairs a step denoises


def panorama_runner(components: Components, cfg: RenderConfig, prompt: str) -> tuple[Callable[[], Any], int]:
    """A call of diffusers' panorama pipeline on `components` with our windows, and its number of views."""
    # torch / diffusers are heavy: a benchmark of the render step needs them anyway.
    import torch
    from diffusers import StableDiffusionPanoramaPipeline

    pipe = StableDiffusionPanoramaPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=render.make_scheduler(components, cfg.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    h, w = render.canvas_cells(components, cfg)
    window, stride = cfg.window // components.vae_factor, cfg.stride // components.vae_factor
    vh, vw = min(window, h), min(window, w)
    views = [
        (top, top + vh, left, left + vw)
        for top in render.window_starts(h, vh, stride)
        for left in render.window_starts(w, vw, stride)
    ]
    pipe.get_views = lambda *args, **kwargs: views  # type: ignore[method-assign]

    def call() -> Any:
        pipe.scheduler = render.make_scheduler(components, cfg.scheduler)
        return pipe(
            prompt,
            height=cfg.height,
            width=cfg.width,
            num_inference_steps=cfg.steps,
            guidance_scale=cfg.guidance,
            view_batch_size=len(views),
            generator=torch.Generator("cpu").manual_seed(cfg.seed),
        ).images[0]

    return call, len(views)


def disc_regions(canvas: tuple[int, int], n: int, seed: int = 0) -> list[Region]:
    """`n` disc regions at random layout positions with random activations (as regions_for_map places them)."""
    rng = np.random.default_rng(seed)
    centres = rng.random((n, 2))
    activations = rng.uniform(0.2, 1.0, n)
    _, _, owner = render.place_discs(centres, activations, (0.0, 0.0, 1.0, 1.0), canvas)
    prompts = ["a red apple", "a lighthouse", "a violin", "a cat", "a mountain lake", "a city at night"]
    return [
        Region(prompt=prompts[i % len(prompts)], mask=(owner == i).astype(np.float32))
        for i in range(n)
        if (owner == i).any()
    ]


def pairs_per_step(components: Components, cfg: RenderConfig, regions: list[Region]) -> int:
    """How many (window, prompt) pairs a step denoises."""
    plan = _plan(components, cfg, regions, render.canvas_cells(components, cfg))
    return len(plan.item_view)


def timed_median(repeats: int, runners: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Median wall seconds of each runner over `repeats` interleaved runs, after one warm-up each."""
    # torch: to wait for the GPU before reading the clock.
    import torch

    def sync() -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            sync()
            start = time.perf_counter()
            run()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def load(args: argparse.Namespace) -> Components:
    """The components to time: --model, else a random architecture."""
    # torch is heavy: a benchmark of the render step needs it anyway.
    import torch

    from tests.helpers.tiny_sd import random_sd_pipeline

    if args.model:
        return render.load_components(args.model, args.device, args.dtype)
    device = torch.device(resolve_device(args.device))
    dtype = render.resolve_dtype(args.dtype, device)
    pipe = random_sd_pipeline(seed=0, arch=args.arch)
    if dtype != torch.float32:  # the VAE stays float32, as load_components keeps SD VAEs (force_upcast)
        pipe.unet.to(dtype=dtype)
        pipe.text_encoder.to(dtype=dtype)
    return render.components_from_pipeline(pipe, f"random-{args.arch}", device, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a local diffusers SD directory (default: random --arch)")
    parser.add_argument("--arch", choices=["tiny", "sd15"], default="tiny")
    parser.add_argument("--width", type=int, default=None, help="default: 1024 (sd15, --model), 64 (tiny)")
    parser.add_argument("--height", type=int, default=None, help="default: 512 (sd15, --model), 32 (tiny)")
    parser.add_argument("--window", type=int, default=None, help="default: 512 (sd15, --model), 16 (tiny)")
    parser.add_argument("--stride", type=int, default=None, help="default: window / 2")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--regions", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    tiny = args.model is None and args.arch == "tiny"
    window = args.window or (16 if tiny else 512)
    cfg = RenderConfig(
        model=args.model or f"random-{args.arch}",
        steps=args.steps,
        guidance=args.guidance,
        width=args.width or (64 if tiny else 1024),
        height=args.height or (32 if tiny else 512),
        window=window,
        stride=args.stride or window // 2,
        background_prompt="a watercolour landscape",
        device=args.device,
        dtype=args.dtype,
        batch=1024,
    )
    components = load(args)
    canvas = render.canvas_cells(components, cfg)
    regions = disc_regions(canvas, args.regions)
    panorama, n_views = panorama_runner(components, cfg, cfg.background_prompt)
    runners = {
        "panorama": panorama,
        "ours, 1 prompt": lambda: render.multidiffusion(components, [], cfg),
        f"ours, {len(regions)} regions": lambda: render.multidiffusion(components, regions, cfg),
    }
    pairs = {
        "panorama": n_views,
        "ours, 1 prompt": pairs_per_step(components, cfg, []),
        f"ours, {len(regions)} regions": pairs_per_step(components, cfg, regions),
    }
    print(
        f"model={cfg.model}  device={components.device}  dtype={components.dtype}  "
        f"canvas={cfg.width}x{cfg.height}px ({canvas[1]}x{canvas[0]} cells)  window={cfg.window}  stride={cfg.stride}  "
        f"views={n_views}  steps={cfg.steps}  guidance={cfg.guidance}  repeats={args.repeats}"
    )
    medians = timed_median(args.repeats, runners)
    base = medians["panorama"]
    print(f"{'':<22}{'median s':>10}{'ratio':>8}{'pairs/step':>12}{'ratio per pair':>16}")
    for name, seconds in medians.items():
        per_pair = (seconds / pairs[name]) / (base / pairs["panorama"])
        print(f"{name:<22}{seconds:>10.3f}{seconds / base:>7.2f}x{pairs[name]:>12}{per_pair:>15.2f}x")
    overhead = medians["ours, 1 prompt"] / base
    print(f"overhead of region MultiDiffusion at equal UNet work: {overhead:.2f}x (target <= 1.20x)")


if __name__ == "__main__":
    main()
