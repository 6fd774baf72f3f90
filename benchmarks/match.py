"""`vista match` figures: seconds and peak memory of its core for 2k x 8k and 16k x 16k SAEs.

    .venv/bin/python -m benchmarks.match [--cases 2048x8192,16384x16384] [--d-in 768] [--repeats 3]
                                         [--k 8] [--candidates 32]

The core is `pipeline.match.run.match_directions`: decoder and encoder top-k neighbours and the
one-to-one matching, from weights in memory (loading from disk and writing the table left out).
The SAEs are random unit decoders and encoders (seeded, float32): the worst case for the sparse
matching, since no latent has a clear partner. d_in 768 is GPT-2 small's residual stream; 2304
(Gemma 2 2B) triples the matrix products.

Each run is a fresh process (torch allocates outside Python, so tracemalloc would not see it): peak
memory is that process's maximum RSS (ru_maxrss) minus its RSS once the inputs exist, i.e. what the
core adds. Printed: the median of --repeats runs, with the baseline measured in the same runs — one
bare blocked top-k pass over the decoders (`topk_cosines`, k = --candidates), the least any
matching needs — and what the full cosine matrix would take (float64, as the solver wants it).
Asserts nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_bytes() -> int:
    """This process's resident memory now."""
    import psutil

    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(m: int, n: int, d_in: int, k: int, candidates: int, seed: int, what: str) -> dict[str, object]:
    """One measurement in this (fresh) process: `what` is "core" or "baseline"."""
    import torch

    from pipeline.match.cosine import topk_cosines
    from pipeline.match.load import Directions
    from pipeline.match.run import MatchConfig, match_directions
    from vista_tui.mapdata import SaeRef

    generator = torch.Generator().manual_seed(seed)

    def unit(rows: int) -> torch.Tensor:
        x = torch.randn(rows, d_in, generator=generator)
        return x / x.norm(dim=1, keepdim=True)

    a = Directions(SaeRef("a", d_in, m), unit(m), unit(m))
    b = Directions(SaeRef("b", d_in, n), unit(n), unit(n))
    before = rss_bytes()
    start = time.perf_counter()
    result: dict[str, object] = {}
    if what == "baseline":
        topk_cosines(a.decoder, b.decoder, candidates)
    else:
        assignment = match_directions(a, b, MatchConfig(k=k, candidates=candidates)).assignment
        result = {
            "method": assignment.method,
            "exact": assignment.exact,
            "mean": float(assignment.cosine[assignment.partner >= 0].mean()),
            "gap": assignment.gap,
            "matched": assignment.n_matched,
        }
    result["seconds"] = time.perf_counter() - start
    result["peak_mb"] = max(0, peak_rss_bytes() - before) / 2**20
    return result


def measure(m: int, n: int, args: argparse.Namespace, what: str, seed: int) -> dict[str, object]:
    """`child` in a fresh interpreter; its JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.match", "--child", what, "--cases", f"{m}x{n}", "--d-in", str(args.d_in),
         "--k", str(args.k), "--candidates", str(args.candidates), "--seed", str(seed)],
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="2048x8192,16384x16384", help="M x N latents, comma-separated")
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=("core", "baseline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = [tuple(int(v) for v in case.split("x")) for case in args.cases.split(",")]
    if args.child:
        m, n = cases[0]
        print(json.dumps(child(m, n, args.d_in, args.k, args.candidates, args.seed, args.child)))
        return
    import torch

    print(f"vista match core, random unit decoders and encoders, d_in {args.d_in}, k {args.k}, "
          f"candidates {args.candidates}, median of {args.repeats} fresh processes, torch threads "
          f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    for m, n in cases:
        core = [measure(m, n, args, "core", args.seed + r) for r in range(args.repeats)]
        base = [measure(m, n, args, "baseline", args.seed + r) for r in range(args.repeats)]
        seconds = statistics.median(float(r["seconds"]) for r in core)
        peak = statistics.median(float(r["peak_mb"]) for r in core)
        base_seconds = statistics.median(float(r["seconds"]) for r in base)
        base_peak = statistics.median(float(r["peak_mb"]) for r in base)
        last = core[-1]
        print(
            f"{m:>6,} x {n:<6,} {seconds:7.1f} s  peak +{peak:6.0f} MB  | one top-{args.candidates} pass "
            f"{base_seconds:6.1f} s, +{base_peak:5.0f} MB (core = {seconds / base_seconds:.1f}x)  | full matrix "
            f"would be {m * n * 8 / 2**20:,.0f} MB  | {last['method']}, exact {last['exact']}, mean matched "
            f"cosine {float(last['mean']):.3f}, at most {float(last['gap']):.4f} below exact, "
            f"{last['matched']:,} matched"
        )


if __name__ == "__main__":
    main()
