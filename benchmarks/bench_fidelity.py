"""Time the mutual-kNN gain sweep, before and after the blocked kernel, on synthetic SAE codes.

    python -m benchmarks.bench_fidelity [--sizes 4000,20000] [--repeat 3] [--no-reference] [--against REV]

Per N, medians of --repeat runs, side by side in this process: before = the N x N
`vista_distance_matrix` and the sweep from it (fidelity.run with `distances`, what run did by
itself until the blocked kernel); after = fidelity.run (blocked, O(N) per row). Both curves
must be identical; benchmarks.baselines.fidelity_dense_reference (N <= 4000) checks them too.
The kernel's first compile (or load from numba's disk cache) is timed apart. --against REV also
times the blocked sweep with the row kernel of git revision REV (its pipeline/row_kernel.py, same
interface), alternating run by run with this one: a before/after of a kernel change in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

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


def median_of(repeat: int, work: Callable[[], object]) -> tuple[float, float, object]:
    """Median wall time and median process CPU time (every thread) of `repeat` calls, and the last result.

    CPU time is the figure that other load on the machine disturbs least: on an idle machine the
    wall time of the blocked kernel is about CPU / threads.
    """
    seconds, cpu, result = [], [], None
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = work()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(seconds), statistics.median(cpu), result


def best_of(repeat: int, work: Callable[[], object]) -> tuple[float, object]:
    """Fastest wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


REPO = Path(__file__).resolve().parent.parent


def kernel_at(revision: str) -> ModuleType:
    """pipeline/row_kernel.py as it was at git `revision`, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:pipeline/row_kernel.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="vista-kernel-")) / "row_kernel_then.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("row_kernel_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def kernel_in_use(kernel: ModuleType) -> Iterator[None]:
    """fidelity.run with `kernel` as its row kernel."""
    own = fidelity.row_kernel
    fidelity.row_kernel = lambda: kernel
    try:
        yield
    finally:
        fidelity.row_kernel = own


def alternate(repeat: int, then: Callable[[], object], now: Callable[[], object]) -> tuple[list[float], list[float]]:
    """Wall seconds of `then` and `now`, run in turn `repeat` times each."""
    seconds: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for times, work in zip(seconds, (then, now), strict=True):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,20000", help="N per comparison (default: 4000,20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median; default: 3)")
    parser.add_argument("--no-reference", action="store_true", help="skip the slow dense reference")
    parser.add_argument("--against", metavar="REV", help="also time the row kernel of git revision REV, alternating")
    args = parser.parse_args()
    then_kernel = kernel_at(args.against) if args.against else None
    cfg = fidelity.FidelityConfig()
    print(f"threads={worker_count()}  load average={os.getloadavg()[0]:.2f} (1 min)")
    codes, activations = synthetic_codes(200)
    xy = np.random.default_rng(1).random((200, 2)).astype(np.float32)
    seconds, _ = best_of(1, lambda: fidelity.run(cfg, codes, activations, xy))
    print(f"first blocked run in this process (numba import + kernel compile or cache load): {seconds:.2f} s")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        codes, activations = synthetic_codes(n)
        xy = np.random.default_rng(1).random((n, 2)).astype(np.float32)

        def before(c: SparseCodes = codes, a: np.ndarray = activations, p: np.ndarray = xy) -> object:
            return fidelity.run(cfg, c, a, p, distances=vista_distance_matrix(c, a, cfg.lam))

        old, old_cpu, old_curve = median_of(args.repeat, before)
        new, new_cpu, new_curve = median_of(
            args.repeat, lambda c=codes, a=activations, p=xy: fidelity.run(cfg, c, a, p)
        )
        print(
            f"N={n:>6}  before (N x N matrix + sweep) {old:7.3f} s   after (blocked) {new:7.3f} s   "
            f"{old / new:5.1f}x   identical: {old_curve == new_curve}   (median of {args.repeat})\n"
            f"          CPU time, all threads: before {old_cpu:7.3f} s   after {new_cpu:7.3f} s"
        )
        if then_kernel is not None:

            def with_then(c: SparseCodes = codes, a: np.ndarray = activations, p: np.ndarray = xy) -> object:
                with kernel_in_use(then_kernel):
                    return fidelity.run(cfg, c, a, p)

            with_then()  # its compile
            then, now = alternate(
                args.repeat, with_then, lambda c=codes, a=activations, p=xy: fidelity.run(cfg, c, a, p)
            )
            then_s, now_s = statistics.median(then), statistics.median(now)
            print(
                f"          kernel of {args.against} {then_s:7.3f} s   this kernel {now_s:7.3f} s   "
                f"{then_s / now_s:5.2f}x   identical: {with_then() == new_curve}   (alternating, median of {args.repeat})"
            )
        if not args.no_reference and n <= 4000:
            seconds, reference = best_of(1, lambda c=codes, a=activations, p=xy: fidelity_dense_reference(cfg, c, a, p))
            print(f"          dense reference {seconds:7.3f} s   identical: {reference == new_curve}")
    print(f"load average={os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    main()
