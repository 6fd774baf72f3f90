"""numba's disk cache: a map build in a new process, first on this machine vs the next one.

    python -m benchmarks.jit_cache [--repeats 2] [--top-n 150]

Three kinds of run, each a fresh `python -m pipeline build` process (what `vista build` runs in
its child process) on MiniLM, a small real SAE and corpus (tests/helpers/build_inputs), one
latent, its own new store (no step is reused), timed wall to wall:

- cold: an empty $NUMBA_CACHE_DIR, as on a machine's first build (everything compiles);
- before: the cache kept, but umap-learn's functions not cached (pipeline.jit_cache's switch
  turned off), as every build was before: pynndescent loads, UMAP compiles again;
- after: the cache kept and used: the second and later builds.

Prints the median of --repeats per kind (cold runs once, unless --numba-dir names a cache
filled already) and the load. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.build_inputs import docstring_corpus, save_sae

WITHOUT_UMAP_CACHE = (
    "import sys, pipeline.jit_cache as j; j.enable_disk_cache = lambda *a, **k: 0; "
    "from pipeline.cli import main; sys.exit(main())"
)


def build_seconds(command: list[str], numba_dir: Path) -> float:
    """Wall seconds of one build process; raises with its stderr when it fails."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", NUMBA_CACHE_DIR=str(numba_dir))
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"build failed: {result.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="builds per kind (median; default: 2)")
    parser.add_argument("--top-n", type=int, default=150, help="contexts per map (default: 150)")
    parser.add_argument(
        "--numba-dir",
        type=Path,
        default=None,
        help="a numba cache filled already: skip the cold build (default: a new one)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vista-jit-") as scratch:
        root = Path(scratch)
        sae = save_sae(root / "sae", 384)
        corpus = docstring_corpus(root / "docs.jsonl", 400)
        numba_dir = args.numba_dir or root / "numba"
        runs = iter(range(10_000))

        def build(prefix: list[str]) -> float:
            store = root / f"store-{next(runs)}"
            return build_seconds(
                [*prefix, "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae), "--corpus",
                 str(corpus), "--top-n", str(args.top_n), "--latents", "1", "--cache", str(store)],
                numba_dir,
            )  # fmt: skip

        cli = [sys.executable, "-m", "pipeline"]
        print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
        if args.numba_dir is None:
            cold = build(cli)
            print(f"cold   (empty numba cache, first build)        {cold:7.1f} s", flush=True)
        before, after = [], []
        for _ in range(args.repeats):  # interleaved, so load changes hit both kinds alike
            before.append(build([sys.executable, "-c", WITHOUT_UMAP_CACHE]))
            after.append(build(cli))
        b, a = statistics.median(before), statistics.median(after)
        print(f"before (umap-learn compiled in every process)  {b:7.1f} s  (median of {args.repeats})")
        print(f"after  (compiled code loaded from the cache)   {a:7.1f} s  (median of {args.repeats})")
        print(f"saved per build: {b - a:.1f} s ({b / a:.1f}x)   load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
