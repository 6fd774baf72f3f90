"""Build-pipeline figures: per-step seconds, fidelity against a dense baseline, harvest throughput.

    .venv/bin/python -m benchmarks.build [--sizes 4000,20000] [--repeats 3] [--skip-harvest]

Prints medians of --repeats runs (N=20000 steps run --big-repeats times) and ratios against
baselines measured in the same run. Nothing here is asserted: it prints figures for a note.
Set OMP_WAIT_POLICY=PASSIVE (done below) and keep the machine quiet for stable numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.baselines import fidelity_dense_reference, layout_dense_reference
from benchmarks.bench_fidelity import synthetic_codes
from pipeline import cluster, fidelity, keywords, layout
from pipeline.distance import vista_distance_matrix
from vista_tui.mapdata import context_id_for

WORDS = [
    "muscle",
    "biceps",
    "tendon",
    "mustard",
    "mustang",
    "museum",
    "music",
    "stream",
    "buffer",
    "socket",
    "thread",
    "lock",
    "decimal",
    "context",
    "round",
    "error",
    "raise",
    "cause",
    "occur",
    "escape",
    "safe",
    "custom",
    "style",
    "module",
    "import",
]


def timed_runs(repeats: int, work: Callable[[], Any]) -> tuple[list[float], Any]:
    """Wall seconds of each of `repeats` calls, and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        seconds.append(time.perf_counter() - start)
    return seconds, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def synthetic_windows(n: int, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    """Token windows over a small vocabulary, the focus in the middle."""
    rng = np.random.default_rng(seed)
    tokens = [[" " + WORDS[j] for j in rng.integers(0, len(WORDS), size=13)] for _ in range(n)]
    return tokens, np.full(n, 6)


def umap_jit_seconds() -> float:
    """The first UMAP fit in this process on tiny data: numba's JIT, or its load from the disk cache."""
    from pipeline.jit_cache import import_umap  # heavy; only this benchmark's layout part needs it

    umap = import_umap()

    rng = np.random.default_rng(0)
    points = rng.random((32, 3)).astype(np.float32)
    distances = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).astype(np.float32)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        umap.UMAP(n_neighbors=5, metric="precomputed", random_state=0, n_epochs=20).fit(distances)
    return time.perf_counter() - start


def bench_steps(n: int, repeats: int) -> dict[str, float]:
    """Median seconds of each map step at N contexts (synthetic SAE-like codes), with the steps'
    previous versions (layout on the dense N x N matrix with UMAP's default epochs; fidelity from
    the N x N matrix) timed in the same run, so the ratios hold whatever the load."""
    codes, activations = synthetic_codes(n)
    context_ids = [context_id_for("bench", str(i), i) for i in range(n)]
    tokens, focus = synthetic_windows(n)
    figures: dict[str, float] = {}
    old_layout, _ = timed_runs(repeats, lambda: layout_dense_reference(codes, activations))
    seconds, xy = timed_runs(repeats, lambda: layout.run(layout.LayoutConfig(), codes, activations))
    figures["layout (UMAP, warm)"] = median(seconds)
    figures["  before: dense N×N"] = median(old_layout)
    seconds, tree = timed_runs(repeats, lambda: cluster.run(cluster.ClusterConfig(), xy, activations, context_ids))
    figures["cluster"] = median(seconds)
    seconds, _ = timed_runs(repeats, lambda: keywords.run(keywords.KeywordsConfig(), tree.nodes, tokens, focus))
    figures["keywords"] = median(seconds)
    cfg = fidelity.FidelityConfig()
    seconds, _ = timed_runs(repeats, lambda: fidelity.run(cfg, codes, activations, xy))
    old_fidelity, _ = timed_runs(
        repeats,
        lambda: fidelity.run(cfg, codes, activations, xy, distances=vista_distance_matrix(codes, activations, cfg.lam)),
    )
    figures["fidelity"] = median(seconds)
    figures["  before: N×N matrix"] = median(old_fidelity)
    figures["build (4 steps)"] = figures["layout (UMAP, warm)"] + figures["cluster"] + figures["keywords"]
    figures["build (4 steps)"] += figures["fidelity"]
    figures["  before"] = (
        figures["  before: dense N×N"] + figures["cluster"] + figures["keywords"] + figures["  before: N×N matrix"]
    )
    figures["tree nodes"] = float(len(tree.nodes))
    return figures


def bench_fidelity_vs_dense(n: int, repeats: int) -> tuple[float, float, bool]:
    """Median seconds of fidelity.run and of the dense N×N baseline, and whether they agree."""
    codes, activations = synthetic_codes(n)
    xy = np.random.default_rng(1).random((n, 2)).astype(np.float32)
    cfg = fidelity.FidelityConfig()
    fast, curve = timed_runs(repeats, lambda: fidelity.run(cfg, codes, activations, xy))
    dense, reference = timed_runs(max(1, repeats // 2), lambda: fidelity_dense_reference(cfg, codes, activations, xy))
    return median(fast), median(dense), reference == curve


def bench_harvest(repeats: int, max_tokens: int, d_sae: int) -> dict[str, float]:
    """Harvest tokens/s against the bare forward on the same batches (MiniLM, hook 3, a TopK SAE)."""
    from pipeline.harvest import HarvestConfig, measure_throughput
    from pipeline.models import load_model, random_topk_sae

    cfg = HarvestConfig(
        model="minilm",
        hook="3",
        latents=tuple(range(8)),
        corpus=("python-stdlib-docstrings",),
        sae_path="unused",
        max_tokens=max_tokens,
        top_n=4000,
    )
    model = load_model("minilm")
    sae = random_topk_sae(384, d_sae, k=32, seed=0)
    runs = [measure_throughput(cfg, model=model, sae=sae) for _ in range(repeats)]
    full = median([r.seconds_full_forward for r in runs])
    hook = median([r.seconds_hook_forward for r in runs])
    harvest = median([r.seconds_harvest for r in runs])
    tokens = runs[0].n_tokens
    return {
        "tokens": tokens,
        "harvest tok/s": tokens / harvest,
        "full forward tok/s": tokens / full,
        "forward to hook tok/s": tokens / hook,
        "ratio harvest / full forward": full / harvest,
        "ratio harvest / forward to hook": hook / harvest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,20000", help="N contexts per map (default: 4000,20000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median; default: 3)")
    parser.add_argument("--big-repeats", type=int, default=1, help="runs per figure for N > 10000 (default: 1)")
    parser.add_argument("--skip-harvest", action="store_true")
    parser.add_argument("--harvest-tokens", type=int, default=60_000, help="corpus tokens per harvest run")
    parser.add_argument("--d-sae", type=int, default=2048, help="SAE width for the harvest figure")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]

    import torch  # the thread count shapes every figure below

    print(f"cores={os.cpu_count()} torch threads={torch.get_num_threads()} load={os.getloadavg()[0]:.2f}")
    print(f"\nUMAP JIT warm-up (first tiny fit in this process): {umap_jit_seconds():.1f} s")
    for n in sizes:
        repeats = args.big_repeats if n > 10_000 else args.repeats
        figures = bench_steps(n, repeats)
        print(f"\nN={n} (median of {repeats}; load {os.getloadavg()[0]:.2f})")
        for name, value in figures.items():
            print(f"  {name:<24} {value:8.3f}" + ("" if name == "tree nodes" else " s"))

    fast, dense, same = bench_fidelity_vs_dense(4000, args.repeats)
    print(f"\nfidelity at N=4000: {fast:.3f} s vs dense N×N baseline {dense:.3f} s → {dense / fast:.1f}× faster")
    print(f"  curves identical: {same}  (target: < 0.5 s and ≥ 5×)")

    if not args.skip_harvest:
        figures = bench_harvest(args.repeats, args.harvest_tokens, args.d_sae)
        print(f"\nharvest, MiniLM hook 3, SAE d_sae={args.d_sae}, median of {args.repeats}")
        for name, value in figures.items():
            print(f"  {name:<32} {value:10.2f}")
        print("  (target: harvest ≥ 0.8× the bare forward)")


if __name__ == "__main__":
    main()
