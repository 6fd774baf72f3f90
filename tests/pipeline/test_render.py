"""The render step on a tiny random Stable Diffusion checkpoint (CPU, seconds)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline import render
from pipeline.render import (
    Components,
    Region,
    RenderCancelled,
    RenderConfig,
    RenderError,
    RenderTimeout,
    background_mask,
    denoise_latents,
    encode_prompts,
    job_config,
    key_options,
    load_components,
    multidiffusion,
    place_discs,
    regions_for_map,
    render_node,
    save_render,
    window_starts,
)
from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tiny_sd import TINY_VAE_FACTOR, TINY_WINDOW_PX, build_tiny_sd
from vista_tui.mapdata import MapReader
from vista_tui.mapdata.renders import RenderJob, render_key

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model", seed=0)


@pytest.fixture(scope="module")
def components(tiny_model: Path) -> Components:
    return load_components(str(tiny_model), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def synthetic_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_map(tmp_path_factory.mktemp("maps") / "syn", n=240, seed=0)


def small_cfg(model: Path | str, **overrides: Any) -> RenderConfig:
    """A config sized for the tiny model: 64 × 32 pixels = 32 × 16 latent cells, windows of 8 cells every 4."""
    params: dict[str, Any] = {
        "model": str(model),
        "steps": 3,
        "width": 4 * TINY_WINDOW_PX,
        "height": 2 * TINY_WINDOW_PX,
        "window": TINY_WINDOW_PX,
        "stride": TINY_WINDOW_PX // 2,
        "bootstrap_steps": 1,
        "device": "cpu",
        "dtype": "float32",
    }
    params.update(overrides)
    return RenderConfig(**params)


def box_region(prompt: str, canvas: tuple[int, int], rows: slice, cols: slice, weight: float = 1.0) -> Region:
    mask = np.zeros(canvas, dtype=np.float32)
    mask[rows, cols] = 1.0
    return Region(prompt=prompt, mask=mask, weight=weight)


# -- config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("guidance", -1.0),
        ("guidance", math.nan),
        ("width", 100),
        ("window", 0),
        ("stride", 1024),
        ("bootstrap_steps", -1),
        ("scheduler", "NoSuchScheduler"),
        ("dtype", "float64"),
        ("time_limit_s", 0.0),
        ("model", " "),
        ("batch", 0),
    ],
)
def test_config_rejects_bad_values_naming_them(field: str, value: Any) -> None:
    params: dict[str, Any] = {"model": "some/model", field: value}
    with pytest.raises(ValueError, match=field):
        RenderConfig(**params)


def test_load_components_reports_missing_and_non_checkpoints(tmp_path: Path, components: Components) -> None:
    with pytest.raises(RenderError, match=r"does not exist.*downloads are off"):
        load_components(str(tmp_path / "nope"), device="cpu")
    with pytest.raises(RenderError, match=r"not in the Hugging Face cache.*downloads are off"):
        load_components("nobody/no-such-model-anywhere", device="cpu")
    with pytest.raises(RenderError, match=r"no model_index\.json"):
        load_components(str(tmp_path), device="cpu")
    assert (components.vae_factor, components.unet_factor, components.latent_channels) == (TINY_VAE_FACTOR, 2, 4)


def test_size_that_does_not_fit_the_model_is_a_render_error(components: Components, tiny_model: Path) -> None:
    like_sd = dataclasses.replace(components, vae_factor=8, unet_factor=8)
    with pytest.raises(RenderError, match="width must be a multiple of 64 pixels"):
        multidiffusion(like_sd, [], small_cfg(tiny_model, width=544, height=512, window=512, stride=256))


# -- regions -------------------------------------------------------------------------------


def test_window_starts_cover_the_edges() -> None:
    assert window_starts(16, 8, 4) == [0, 4, 8]
    assert window_starts(18, 8, 4) == [0, 4, 8, 10]
    assert window_starts(6, 8, 4) == [0]


def test_discs_are_sized_by_activation_and_placed_by_layout() -> None:
    centres = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    activations = np.array([1.0, 0.25, 0.5, 0.0625])
    rows_cols, radii, owner = place_discs(centres, activations, (0.0, 0.0, 1.0, 1.0), (64, 64), margin=0.2)
    areas = [(owner == i).sum() for i in range(4)]
    assert areas[0] > areas[2] > areas[1] > areas[3] > 0
    assert np.allclose(radii / radii[0], np.sqrt(activations), atol=1e-9)
    # y points up: the point at y=1 sits in the top rows, x=1 in the right columns.
    assert rows_cols[2, 0] < rows_cols[0, 0] and rows_cols[1, 1] > rows_cols[0, 1]
    for i, (r, c) in enumerate(rows_cols):
        assert owner[round(r), round(c)] == i


def test_overlapping_discs_go_to_the_more_active() -> None:
    centres = np.array([[0.4, 0.5], [0.6, 0.5]])
    _, _, owner = place_discs(centres, np.array([0.5, 1.0]), (0.0, 0.0, 1.0, 1.0), (32, 32), coverage=1.0)
    # The cell halfway between the centres lies in both discs; the more active one owns it.
    assert owner[16, 16] == 1
    assert (owner == 1).sum() > (owner == 0).sum() > 0


def test_cluster_regions_follow_the_layout_and_cover_the_canvas(synthetic_map: Path) -> None:
    reader = MapReader(synthetic_map)
    canvas = (32, 64)
    regions = regions_for_map(reader, None, canvas, per="cluster")
    children = {c.node_id: c for c in reader.children(reader.root.node_id) if c.kind != "noise"}
    assert {r.source for r in regions} == set(children)
    masks = np.stack([r.mask for r in regions])
    assert masks.shape == (len(regions), *canvas)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert masks.sum(axis=0).max() == 1.0, "region masks are disjoint"
    total = masks.sum(axis=0) + background_mask(regions, canvas)
    assert np.array_equal(total, np.ones(canvas, dtype=np.float32)), "regions plus background cover every cell once"
    assert (background_mask(regions, canvas) > 0).any()
    # Every region sits where its cluster is: mask centres in the same order as the centroids (y up).
    centre = {r.source: np.argwhere(r.mask > 0).mean(axis=0) for r in regions}
    by_x = sorted(children, key=lambda n: children[n].centroid[0])
    by_row = sorted(children, key=lambda n: -children[n].centroid[1])
    assert [centre[n][1] for n in by_x] == sorted(centre[n][1] for n in by_x)
    assert [centre[n][0] for n in by_row] == sorted(centre[n][0] for n in by_row)
    for region in regions:
        assert region.prompt == children[region.source].labels.visual_prompt


def test_context_regions_are_the_most_active_members_cut_to_the_tokenizer(
    synthetic_map: Path, components: Components
) -> None:
    reader = MapReader(synthetic_map)
    node = reader.children(reader.root.node_id)[0]
    regions = regions_for_map(
        reader, node.node_id, (32, 64), per="context", max_regions=5, tokenizer=components.tokenizer
    )
    assert 0 < len(regions) <= 5
    top = node.members[np.argsort(-reader.activations[node.members], kind="stable")[:5]]
    assert {r.source for r in regions} <= {reader.context_ids[i] for i in top}
    limit = components.tokenizer.model_max_length - 2
    for region in regions:
        assert region.prompt
        assert len(components.tokenizer(region.prompt, add_special_tokens=False)["input_ids"]) <= limit
    long = "word " * 500
    assert len(render.cut_prompt(long, components.tokenizer).split()) < 100
    assert render.clean_prompt("a\x1b[31m red\u202e apple\n") == "a [31m red apple"


# -- rendering -----------------------------------------------------------------------------


def test_region_canvas_renders_to_the_configured_size(
    components: Components, tiny_model: Path, synthetic_map: Path
) -> None:
    cfg = small_cfg(tiny_model)
    reader = MapReader(synthetic_map)
    regions = regions_for_map(reader, None, render.canvas_cells(components, cfg), per="cluster")
    image = multidiffusion(components, regions, cfg)
    assert image.size == (cfg.width, cfg.height)
    assert image.mode == "RGB"


def test_same_seed_same_image_other_seed_other_image(components: Components, tiny_model: Path) -> None:
    canvas = render.canvas_cells(components, small_cfg(tiny_model))
    regions = [box_region("a red apple", canvas, slice(2, 10), slice(4, 14))]
    first = np.asarray(multidiffusion(components, regions, small_cfg(tiny_model, seed=3)))
    again = np.asarray(multidiffusion(components, regions, small_cfg(tiny_model, seed=3)))
    other = np.asarray(multidiffusion(components, regions, small_cfg(tiny_model, seed=4)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_one_window_canvas_is_plain_single_view_denoising(components: Components, tiny_model: Path) -> None:
    side = TINY_WINDOW_PX
    cfg = small_cfg(tiny_model, width=side, height=side, steps=4, bootstrap_steps=2)
    cells = side // TINY_VAE_FACTOR
    full = [Region("a lighthouse at dusk", np.ones((cells, cells), dtype=np.float32))]
    panorama = np.asarray(multidiffusion(components, full, cfg))
    single = np.asarray(render_node(components, "a lighthouse at dusk", cfg))
    assert np.array_equal(panorama, single)


def test_render_node_matches_diffusers_stable_diffusion_pipeline(components: Components, tiny_model: Path) -> None:
    from diffusers import StableDiffusionPipeline

    cfg = small_cfg(tiny_model, steps=4)
    ours = np.asarray(render_node(components, "a lighthouse at dusk", cfg)).astype(np.int16)
    pipe = StableDiffusionPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=render.make_scheduler(components, None),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        "a lighthouse at dusk",
        height=cfg.window,
        width=cfg.window,
        num_inference_steps=cfg.steps,
        guidance_scale=cfg.guidance,
        generator=torch.Generator("cpu").manual_seed(cfg.seed),
    ).images[0]
    assert np.abs(ours - np.asarray(theirs).astype(np.int16)).max() <= 1


@pytest.mark.parametrize("scheduler", ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler"])
def test_other_schedulers_render(components: Components, tiny_model: Path, scheduler: str) -> None:
    cfg = small_cfg(tiny_model, scheduler=scheduler, bootstrap_steps=2)
    canvas = render.canvas_cells(components, cfg)
    image = multidiffusion(components, [box_region("a boat", canvas, slice(0, 8), slice(0, 12))], cfg)
    assert image.size == (cfg.width, cfg.height)
    assert np.isfinite(np.asarray(image, dtype=np.float32)).all()


class StandInUNet:
    """Noise = the mean of the view it is shown (per channel) + a per-prompt constant (mean of its embedding)."""

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, return_dict: bool = False) -> Any:
        view_mean = sample.mean(dim=(2, 3), keepdim=True)
        prompt_constant = encoder_hidden_states.float().mean(dim=(1, 2))[:, None, None, None]
        return (view_mean + prompt_constant).expand_as(sample).clone(), None


def test_overlapping_windows_and_regions_are_averaged_exactly(components: Components, tiny_model: Path) -> None:
    cfg = small_cfg(tiny_model, steps=1, bootstrap_steps=0, guidance=3.0)
    stand_in = dataclasses.replace(components, unet=StandInUNet())
    h, w = render.canvas_cells(components, cfg)
    soft = box_region("a blue boat", (h, w), slice(2, 7), slice(10, 26), weight=2.0)
    soft.mask[:] *= 0.5
    # A hard region and a soft, heavier one that overlaps it (cols 10-11): they blend by weight × mask.
    regions = [box_region("a red apple", (h, w), slice(0, h), slice(0, 12)), soft]
    generator = torch.Generator("cpu").manual_seed(7)
    start = torch.randn((1, components.latent_channels, h, w), generator=generator)
    fused = denoise_latents(stand_in, regions, cfg, latents=start)[0].numpy()

    # By hand: DDIM with eta 0 from t to the final alpha, per (window, prompt) pair, then Σ m·x / Σ m.
    scheduler = render.make_scheduler(components, None)
    scheduler.set_timesteps(1)
    t = int(scheduler.timesteps[0])
    alpha, alpha_prev = float(scheduler.alphas_cumprod[t]), float(scheduler.final_alpha_cumprod)
    layers = [(cfg.background_prompt, background_mask(regions, (h, w)), 1.0)]
    layers += [(r.prompt, r.mask, r.weight) for r in regions]
    constants = encode_prompts(components, [p for p, _, _ in layers]).float().mean(dim=(1, 2)).numpy()
    uncond = float(encode_prompts(components, [""]).float().mean())
    x = start[0].numpy().astype(np.float64)
    window, stride = cfg.window // TINY_VAE_FACTOR, cfg.stride // TINY_VAE_FACTOR
    value = np.zeros_like(x)
    count = np.zeros((h, w))
    for top in window_starts(h, window, stride):
        for left in window_starts(w, window, stride):
            view = x[:, top : top + window, left : left + window]
            for k, (_, mask, weight) in enumerate(layers):
                m = mask[top : top + window, left : left + window] * weight
                if not m.any():
                    continue
                mean = view.mean(axis=(1, 2), keepdims=True)
                eps = (mean + uncond) + cfg.guidance * (constants[k] - uncond)
                x0 = (view - math.sqrt(1 - alpha) * eps) / math.sqrt(alpha)
                stepped = math.sqrt(alpha_prev) * x0 + math.sqrt(1 - alpha_prev) * eps
                value[:, top : top + window, left : left + window] += m * stepped
                count[top : top + window, left : left + window] += m
    assert (count > 0).all()
    assert (background_mask(regions, (h, w))[:, :12] == 0).all() and (background_mask(regions, (h, w)) > 0).any()
    expected = value / count
    assert np.abs(fused - expected).max() < 1e-4
    # The windows really disagree, so the check is not vacuous: cells under one window differ from cells under two.
    assert len(window_starts(w, window, stride)) == 7


def test_progress_once_per_step_and_cancel(components: Components, tiny_model: Path) -> None:
    cfg = small_cfg(tiny_model, steps=5)
    calls: list[tuple[int, int]] = []
    multidiffusion(components, [], cfg, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]

    polls = iter([False, False, True])
    calls.clear()
    with pytest.raises(RenderCancelled, match="step 2 of 5"):
        multidiffusion(components, [], cfg, progress=lambda d, t: calls.append((d, t)), cancelled=lambda: next(polls))
    assert calls == [(1, 5), (2, 5)]


def test_time_limit_stops_the_render(components: Components, tiny_model: Path) -> None:
    with pytest.raises(RenderTimeout, match="time limit"):
        render_node(components, "a boat", small_cfg(tiny_model, time_limit_s=1e-9))


# -- cache ---------------------------------------------------------------------------------


def test_key_options_name_only_what_differs_from_the_worker(
    components: Components, tiny_model: Path, synthetic_map: Path
) -> None:
    job = RenderJob(synthetic_map, kind="panorama", model=str(tiny_model), steps=3, width=128, height=64)
    usual = job_config(components, job)
    assert (usual.window, usual.stride, usual.width, usual.seed) == (TINY_WINDOW_PX, TINY_WINDOW_PX // 2, 128, 0)
    assert key_options(usual, components, job) == {}
    # Where and how fast it runs is not part of the picture.
    fast = dataclasses.replace(usual, device="cuda", dtype="float16", time_limit_s=5.0, batch=2)
    assert key_options(fast, components, job) == {}
    variants = [
        key_options(dataclasses.replace(usual, window=2 * TINY_WINDOW_PX), components, job),
        key_options(dataclasses.replace(usual, stride=TINY_WINDOW_PX), components, job),
        key_options(dataclasses.replace(usual, bootstrap_steps=1), components, job),
        key_options(dataclasses.replace(usual, background_prompt="a wall"), components, job),
        key_options(dataclasses.replace(usual, negative_prompt="blurry"), components, job),
        key_options(dataclasses.replace(usual, scheduler="EulerDiscreteScheduler"), components, job),
        key_options(usual, components, job, per="context"),
        key_options(usual, components, job, max_regions=4),
    ]
    assert all(len(options) == 1 for options in variants)
    keys = {render_key(job, options) for options in variants}
    assert len(keys) == len(variants) and render_key(job) not in keys and render_key(job, {}) == render_key(job)
    node = dataclasses.replace(job, kind="node", width=64, height=64)
    assert key_options(job_config(components, node), components, node, per="context", max_regions=4) == {}


def test_save_render_writes_png_and_sidecar(tmp_path: Path) -> None:
    from PIL import Image

    image = Image.new("RGB", (32, 16), (200, 10, 10))
    sidecar = {"kind": "diffusion", "prompts": ["a red apple"], "seed": 0}
    png = save_render(image, tmp_path / "renders", "0123456789abcdef", sidecar)
    assert png == tmp_path / "renders" / "0123456789abcdef.png"
    assert Image.open(png).size == (32, 16)
    assert json.loads(png.with_suffix(".json").read_text())["prompts"] == ["a red apple"]
    assert sorted(p.name for p in png.parent.iterdir()) == ["0123456789abcdef.json", "0123456789abcdef.png"]
    with pytest.raises(ValueError, match="key"):
        save_render(image, tmp_path, "../escape", sidecar)


def test_run_renders_a_map_node_once_then_finds_it(
    components: Components, tiny_model: Path, synthetic_map: Path, tmp_path: Path
) -> None:
    import shutil

    map_dir = shutil.copytree(synthetic_map, tmp_path / "map")
    # Render jobs are at least 64 pixels a side (real SD sizes are multiples of 64 anyway).
    cfg = small_cfg(tiny_model, steps=2, width=128, height=64, window=64, stride=32)
    first = render.run(cfg, map_dir, per="cluster", components=components)
    assert not first.cached and first.png.is_file()
    sidecar = json.loads(first.png.with_suffix(".json").read_text())
    assert sidecar["kind"] == "diffusion"
    assert sidecar["size"] == [cfg.width, cfg.height]
    assert sidecar["scheduler"] == "DDIMScheduler"
    assert len(sidecar["prompts"]) == len(sidecar["regions"]) > 1
    again = render.run(cfg, map_dir, per="cluster", components=components)
    assert again.cached and again.png == first.png
    assert first.png == map_dir / "renders" / f"{first.key}.png" and first.key.startswith("diffusion-")
    assert sidecar["key"] == first.key and sidecar["per"] == "cluster"
    node = render.run(cfg, map_dir, per="node", components=components)
    assert node.png != first.png
    from PIL import Image

    assert Image.open(node.png).size == (cfg.window, cfg.window)


def test_tiled_decode_gives_the_canvas_size(components: Components) -> None:
    latents = torch.randn((1, components.latent_channels, 24, 40), generator=torch.Generator().manual_seed(0))
    tiled = render.decode(components, latents, tiled=True)
    whole = render.decode(components, latents, tiled=False)
    assert tiled.size == whole.size == (80, 48)
