"""Atlas figures: pass-1 throughput against the bare forward + SAE encode, pass 2's cost, maps per hour in
process and on Ray, and peak memory of pass 1's buffer.

    .venv/bin/python -m benchmarks.atlas [--tokens 20000,100000] [--repeats 3] [--d-sae 2048,16384]
                                         [--top-n 4000] [--maps 8] [--map-n 300] [--skip-ray] [--skip-passes] [--skip-pass2]

MiniLM, hook 3, seeded random TopK SAEs, the stdlib docstrings. Prints medians of --repeats runs and
ratios against baselines measured in the same run, with the machine's 1-minute load average before
and after each figure (a shared machine's load moves the medians); asserts nothing. Pass 1 pays a
fixed cost at its end (sorting the kept candidates and writing the (latents x candidates) buffer
to the host), which a short corpus cannot amortise: its throughput is printed per corpus size. Peak device memory is CUDA's
peak allocation (0 on a CPU machine); peak host memory is this process's maximum RSS growth over the
run (ru_maxrss), so run the memory figure first in a fresh process for a clean number.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.steps import no_progress


def median_seconds(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The median wall seconds of `repeats` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def atlas_cfg(d_sae: int, tokens: int, top_n: int, sae_path: str = "unused") -> AtlasHarvestConfig:
    """Every latent of a d_sae SAE over the first `tokens` stdlib docstring tokens."""
    return AtlasHarvestConfig(
        model="minilm",
        hook="3",
        corpus=("python-stdlib-docstrings",),
        latents="all",
        sae_path=sae_path,
        top_n=top_n,
        max_tokens=tokens,
        device="auto",
    )


def bare_forward_and_encode(cfg: AtlasHarvestConfig, model: Any, sae: Any) -> int:
    """The baseline: the same batches forwarded to the hook and encoded by the SAE, nothing kept. Returns tokens."""
    import torch

    from pipeline.atlas.pass1 import ENCODE_BUDGET, model_batches, open_hook
    from pipeline.corpus import iter_documents

    forward, _, d_sae = open_hook(model, sae, cfg.hook, cfg.max_length)
    rows = max(1, ENCODE_BUDGET // d_sae)
    n = 0
    read: dict[str, int] = {}
    with torch.inference_mode():
        for _, (input_ids, attention, real) in model_batches(cfg, enumerate(iter_documents(cfg.corpus)), model, read):
            hidden = forward(torch.from_numpy(input_ids).to(model.device), torch.from_numpy(attention).to(model.device))
            tokens = hidden[torch.from_numpy(real).to(model.device)]
            for start in range(0, len(tokens), rows):
                sae.encode(tokens[start : start + rows]).max()  # a reduction, so the encode is not skipped
            n += len(tokens)
    return n


def bench_pass1(d_sae: int, tokens: int, top_n: int, repeats: int) -> dict[str, float]:
    """Pass 1 tokens/s against the bare forward + encode, and the memory it peaks at."""
    import torch

    from pipeline.atlas.pass1 import scan
    from pipeline.corpus import iter_documents
    from pipeline.models import load_model, random_topk_sae

    model = load_model("minilm")
    sae = random_topk_sae(384, d_sae, k=32, seed=0, device=model.device)
    cfg = atlas_cfg(d_sae, tokens, top_n)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    bare_runs, full_runs, n, first = [], [], 0, None
    for _ in range(repeats):  # interleaved, so that a change of load hits both alike
        seconds, n = median_seconds(1, lambda: bare_forward_and_encode(cfg, model, sae))
        bare_runs.append(seconds)
        seconds, first = median_seconds(1, lambda: scan(cfg, enumerate(iter_documents(cfg.corpus)), model, sae))
        full_runs.append(seconds)
    bare, full = statistics.median(bare_runs), statistics.median(full_runs)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss
    return {
        "tokens": float(n),
        "bare forward+encode tok/s": n / bare,
        "pass 1 tok/s": n / full,
        "ratio pass 1 / bare": bare / full,
        "buffer MB (acts+keys)": (first.top.acts.nbytes + first.top.keys.nbytes) / 1e6,
        "peak host RSS growth MB": peak_rss / 1024,
        "peak device MB": torch.cuda.max_memory_allocated() / 1e6 if torch.cuda.is_available() else 0.0,
    }


def bench_pass2(d_sae: int, tokens: int, top_n: int, repeats: int) -> dict[str, float]:
    """Pass 2 seconds per 1,000 selected contexts (materialise alone, the selection from a real pass 1)."""
    from pipeline.atlas.pass1 import scan
    from pipeline.atlas.pass2 import materialise
    from pipeline.corpus import iter_documents
    from pipeline.models import load_model, random_topk_sae

    model = load_model("minilm")
    sae = random_topk_sae(384, d_sae, k=32, seed=0, device=model.device)
    cfg = atlas_cfg(d_sae, tokens, top_n)
    first = scan(cfg, enumerate(iter_documents(cfg.corpus)), model, sae)
    selected = int((first.top.keys != first.top.keys.max()).sum())
    seconds, _ = median_seconds(
        repeats,
        lambda: materialise(cfg, enumerate(iter_documents(cfg.corpus)), first.top, model, sae, end_key=first.end_key),
    )
    return {"selected (latent, token) pairs": float(selected), "s per 1,000": 1000 * seconds / max(selected, 1)}


def bench_maps(n_maps: int, map_n: int, workers: int, skip_ray: bool) -> dict[str, float]:
    """Maps per hour, in process against Ray with `workers` workers, from one harvest (JIT included in both)."""
    from pipeline import harvest
    from pipeline.atlas.build import AtlasConfig
    from pipeline.atlas.engine import InProcess, RayEngine
    from pipeline.atlas.maps import MapJob
    from tests.helpers.build_inputs import save_sae

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sae_dir = save_sae(root / "sae", 384)
        cfg = AtlasConfig(harvest=replace_latents(atlas_cfg(64, 60_000, map_n, str(sae_dir)), n_maps))
        result = InProcess().harvest(cfg.harvest, lambda step, description: no_progress)
        for latent in result.latents:
            alone = replace(
                result,
                latents={latent: result.latents[latent]},
                never_fired=[latent] if latent in result.never_fired else [],
            )
            harvest.save(alone, root / "harvest" / f"L{latent}")
        figures: dict[str, float] = {}
        for name in ("in-process",) + (() if skip_ray else ("ray",)):
            out = root / name
            jobs = [
                MapJob(latent, str(root / "harvest" / f"L{latent}"), str(out), cfg.build_config())
                for latent in result.latents
            ]
            engine: Any = InProcess() if name == "in-process" else RayEngine(workers=workers)
            try:
                start = time.perf_counter()
                built = sum(1 for outcome in engine.build_maps(jobs) if outcome.row.built)
                seconds = time.perf_counter() - start
            finally:
                engine.close()
            figures[f"{name} maps/hour"] = 3600 * built / seconds
            figures[f"{name} seconds"] = seconds
        if not skip_ray:
            figures["ratio ray / in-process"] = figures["ray maps/hour"] / figures["in-process maps/hour"]
        return figures


def replace_latents(cfg: AtlasHarvestConfig, n: int) -> AtlasHarvestConfig:
    """`cfg` for latents 0..n-1."""
    return replace(cfg, latents=f"0-{n - 1}")


def main() -> None:
    """Parse the options and print every figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tokens", default="20000,100000", help="corpus tokens of pass 1, one figure each (default: 20000,100000)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure, median (default: 3)")
    parser.add_argument("--d-sae", default="2048,16384", help="SAE widths (default: 2048,16384)")
    parser.add_argument(
        "--top-n", type=int, default=4000, help="N of the memory and throughput figures (default: 4000)"
    )
    parser.add_argument("--pass2-top-n", type=int, default=50, help="N of the pass-2 figure (default: 50)")
    parser.add_argument("--maps", type=int, default=8, help="maps built per engine (default: 8)")
    parser.add_argument("--map-n", type=int, default=300, help="contexts per map (default: 300)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default: 2)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--skip-maps", action="store_true")
    parser.add_argument("--skip-passes", action="store_true", help="only the maps figure")
    parser.add_argument("--skip-pass2", action="store_true", help="no pass-2 figure")
    args = parser.parse_args()
    import torch

    print(f"cores={os.cpu_count()} torch threads={torch.get_num_threads()} load={os.getloadavg()[0]:.2f}")
    sizes = [int(part) for part in args.tokens.split(",") if part]
    for d_sae in [] if args.skip_passes else [int(part) for part in args.d_sae.split(",") if part]:
        for tokens in sizes:
            load = os.getloadavg()[0]
            figures = bench_pass1(d_sae, tokens, args.top_n, args.repeats)
            print(
                f"\npass 1, d_sae={d_sae}, N={args.top_n} (candidates {2 * args.top_n}), {tokens} tokens,"
                f" median of {args.repeats}; load {load:.2f} before, {os.getloadavg()[0]:.2f} after"
            )
            for name, value in figures.items():
                print(f"  {name:<28} {value:12.2f}")
    if not args.skip_passes and not args.skip_pass2:
        figures = bench_pass2(2048, sizes[0], args.pass2_top_n, args.repeats)
        print(f"\npass 2, d_sae=2048, N={args.pass2_top_n}, median of {args.repeats}")
        for name, value in figures.items():
            print(f"  {name:<28} {value:12.3f}")
    if not args.skip_maps:
        figures = bench_maps(args.maps, args.map_n, args.workers, args.skip_ray)
        print(f"\nmaps: {args.maps} maps of N={args.map_n}, in process vs Ray with {args.workers} workers")
        for name, value in figures.items():
            print(f"  {name:<28} {value:12.2f}")


if __name__ == "__main__":
    main()
