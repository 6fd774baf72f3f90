"""Time the mutual-kNN gain sweep against the plain dense reference, on synthetic SAE codes.

    python -m benchmarks.bench_fidelity [--n 4000] [--repeat 3] [--no-reference]

Prints seconds (best of --repeat) for: the VISTA distance matrix, the sweep given that matrix,
the whole fidelity.run, and benchmarks.baselines.fidelity_dense_reference; and whether the
fast and the reference curves are identical.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from benchmarks.baselines import fidelity_dense_reference
from pipeline import fidelity
from pipeline.distance import vista_distance_matrix, worker_count
from vista_tui.mapdata import SparseCodes


def synthetic_codes(n: int, n_latents: int = 16384, per_row: int = 64, seed: int = 0) -> tuple[SparseCodes, np.ndarray]:
    """Codes shaped like one latent's top contexts: Zipf-ish latent use, the latent always on."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_latents + 1) ** 0.8
    popularity /= popularity.sum()
    rows = [np.unique(np.append(rng.choice(n_latents, per_row, p=popularity), 123)) for _ in range(n)]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(r) for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int32)
    values = rng.exponential(1.0, size=len(indices)).astype(np.float32)
    activations = rng.gamma(2.0, 1.0, size=n).astype(np.float32)
    return SparseCodes(indptr, indices, values, n_latents), activations


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    """Fastest wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow dense reference")
    args = parser.parse_args()

    codes, activations = synthetic_codes(args.n)
    xy = np.random.default_rng(1).random((args.n, 2)).astype(np.float32)
    cfg = fidelity.FidelityConfig()
    print(f"N={args.n}  threads={worker_count()}  load average={os.getloadavg()[0]:.2f}")
    seconds, distances = best_of(args.repeat, lambda: vista_distance_matrix(codes, activations, cfg.lam))
    print(f"vista_distance_matrix        {seconds:7.3f} s")
    seconds, _ = best_of(args.repeat, lambda: fidelity.run(cfg, codes, activations, xy, distances=distances))
    print(f"fidelity.run (matrix given)  {seconds:7.3f} s")
    seconds, curve = best_of(args.repeat, lambda: fidelity.run(cfg, codes, activations, xy))
    print(f"fidelity.run                 {seconds:7.3f} s")
    if not args.no_reference:
        seconds, reference = best_of(1, lambda: fidelity_dense_reference(cfg, codes, activations, xy))
        print(f"dense reference              {seconds:7.3f} s   identical: {reference == curve}")


if __name__ == "__main__":
    main()
