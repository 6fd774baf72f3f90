"""The Ray driver's host memory against corpus size: an atlas harvest over a corpus and over one 4x its size.

    .venv/bin/python -m benchmarks.atlas_driver [--docs 300] [--pad-kb 40] [--top-n 20] [--workers 2]

Each harvest (pass 1 and pass 2 on a local Ray instance, every latent of a small seeded TopK SAE,
MiniLM hook 3) runs in a fresh process, which prints its peak RSS growth (ru_maxrss) from just
after Ray started to the end of the harvest. The corpora are the first stdlib docstrings
(cycled), each padded with `--pad-kb` KB of blank lines: the tokenizer gives no token for them,
so the text is large next to the model's work, and a driver that held the corpus text would show
it (4x the text: 4x that share of its growth). The figures should be about equal. Asserts nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.steps import no_progress


def write_corpus(path: Path, n_documents: int, pad_kb: int) -> Path:
    """`n_documents` stdlib docstrings (cycled) as JSONL, each followed by `pad_kb` KB of blank lines."""
    from pipeline.corpus import iter_documents

    texts = [doc.text for doc in itertools.islice(iter_documents(["python-stdlib-docstrings"]), 2000)]
    padding = "\n" * (pad_kb * 1024)
    with path.open("w") as handle:
        for i in range(n_documents):
            handle.write(json.dumps({"id": f"d{i}", "text": texts[i % len(texts)] + padding}) + "\n")
    return path


def child(corpus: str, sae_dir: str, top_n: int, workers: int) -> dict[str, float]:
    """One harvest on Ray in this process: the driver's RSS growth over it."""
    from pipeline.atlas.config import AtlasHarvestConfig
    from pipeline.atlas.engine import RayEngine

    cfg = AtlasHarvestConfig(
        model="minilm", hook="3", corpus=(corpus,), latents="all", sae_path=sae_dir, top_n=top_n, device="cpu"
    )
    engine = RayEngine(workers=workers)
    try:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        result = engine.harvest(cfg, lambda step, description: no_progress)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        engine.close()
    return {
        "corpus MB": os.path.getsize(corpus) / 1e6,
        "tokens": float(result.n_tokens_seen),
        "documents": float(result.n_documents),
        "driver RSS at start MB": base / 1024,
        "driver peak RSS growth MB": (peak - base) / 1024,
        "seconds": seconds,
    }


def main() -> None:
    """Write both corpora, run each harvest in its own process, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="documents of the smaller corpus (default: 300)")
    parser.add_argument("--pad-kb", type=int, default=40, help="blank KB after each document (default: 40)")
    parser.add_argument("--top-n", type=int, default=20, help="contexts per latent (default: 20)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default: 2)")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "SAE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.top_n, args.workers)))
        return
    from tests.helpers.build_inputs import save_sae

    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sae_dir = save_sae(root / "sae", 384)
        figures: list[dict[str, Any]] = []
        for scale in (1, 4):
            corpus = write_corpus(root / f"corpus{scale}.jsonl", scale * args.docs, args.pad_kb)
            load = os.getloadavg()[0]
            command = [sys.executable, "-m", "benchmarks.atlas_driver", "--child", str(corpus), str(sae_dir)]
            command += ["--top-n", str(args.top_n), "--workers", str(args.workers)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            figures.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"\ncorpus x{scale}: load {load:.2f} before, {os.getloadavg()[0]:.2f} after")
            for name, value in figures[-1].items():
                print(f"  {name:<28} {value:12.1f}")
        small, large = (figure["driver peak RSS growth MB"] for figure in figures)
        print(f"\n  {'growth x4 / growth x1':<28} {large / max(small, 1e-9):12.2f}")


if __name__ == "__main__":
    main()
