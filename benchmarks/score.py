"""The scorers' figures: the embedding scorer's CPU cost, the LLM scorers' throughput, and the demo maps.

    .venv/bin/python -m benchmarks.score [--contexts 2000] [--delay-ms 50] [--concurrency 1,4,16]
                                         [--demo-store /tmp/lift_demo/store]

1. Embedding: seconds per 1,000 contexts embedded by MiniLM on the CPU (distinct windows of 13
   tokens, as the scorer sees them; the encoder's load is timed apart).
2. LLM scorers: against the loopback chat-completions server answering every request after a fixed
   delay, the requests per node and the nodes per second at each concurrency, with the ratio to the
   ideal (requests x delay / concurrency: every request in flight all the time).
3. The demo maps (when the store is there): per map, each node's focus-token summary scored by the
   embedding scorer against the summary of another latent's root, on a copy of the store (the maps
   there are not written). The demo maps predate negatives.parquet: negatives come from the other
   maps of the store (`--negatives store`).

Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from pipeline.agreement import AgreementConfig, Encoder
from pipeline.label import LabelConfig
from pipeline.label.prompts import RunContexts
from pipeline.score import ScoreConfig, focus_summary, run
from pipeline.score.embedding import EmbeddingScorer
from pipeline.score.sampling import NegativePool, node_sample
from tests.helpers.llm_server import Reply, chat_server
from tests.helpers.score_map import neutral_windows, prepare_for_scoring
from tests.helpers.score_server import verdict_content
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import MapReader


def embedding_cost(n: int, encoder_threads: int) -> None:
    """Print seconds per 1,000 contexts embedded on the CPU."""
    torch.set_num_threads(encoder_threads)
    started = time.perf_counter()
    encoder = Encoder(AgreementConfig())
    loaded = time.perf_counter() - started
    texts = ["".join(window) + f" #{i}" for i, window in enumerate(neutral_windows(n, seed=3))]
    started = time.perf_counter()
    encoder.encode(texts)
    seconds = time.perf_counter() - started
    print(
        f"embedding: {n:,} contexts in {seconds:.2f} s on the CPU ({encoder_threads} threads): "
        f"{1000 * seconds / n:.2f} s per 1,000 contexts (encoder load {loaded:.1f} s, once per run)"
    )


def llm_throughput(delay_s: float, concurrencies: list[int], n: int) -> None:
    """Print requests per node and nodes per second against the delayed loopback server."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        chat_server(lambda request: Reply(verdict_content(request), delay_s=delay_s)) as server,
    ):
        for concurrency in concurrencies:
            map_dir = prepare_for_scoring(build_synthetic_map(Path(tmp) / f"c{concurrency}", n=n), "mustard")
            llm = LabelConfig(base_url=server.base_url, model="bench", concurrency=concurrency, backoff_s=0.01)
            cfg = ScoreConfig(scorers=("detection", "fuzzing"), llm=llm)
            before = len(server.requests)
            report = run(cfg, map_dir)
            requests = len(server.requests) - before
            ideal = requests * delay_s / concurrency
            per_node = requests / report.n_nodes
            print(
                f"LLM scorers, concurrency {concurrency:>2}: {report.n_nodes} nodes, {requests} requests "
                f"({per_node:.1f} per node: {per_node / 2:.1f} per scorer, {report.n_scores // report.n_nodes // 2} "
                f"readings), {report.seconds:.2f} s, {report.nodes_per_s:.2f} nodes/s; ideal {ideal:.2f} s "
                f"({report.n_nodes / ideal:.2f} nodes/s), ratio {report.seconds / ideal:.2f}"
            )


def demo_figures(store: Path, encoder: Encoder) -> None:
    """Print, per demo map, its nodes' focus-token summaries scored against another latent's root summary."""
    maps = sorted(path for path in (store / "maps").iterdir() if (path / "manifest.json").is_file())
    if len(maps) < 2:
        print(f"demo maps: fewer than two maps in {store}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "maps"
        for path in maps:
            shutil.copytree(path, copy / path.name, ignore=shutil.ignore_patterns("renders", "*.sqlite*"))
        roots = {path.name: focus_summary(MapReader(copy / path.name).root) for path in maps}
        cfg = ScoreConfig(negatives="store", label_contexts=0)
        scorer = EmbeddingScorer(cfg, encoder)
        margins: list[float] = []
        for index, path in enumerate(maps):
            reader = MapReader(copy / path.name)
            other = maps[(index + 1) % len(maps)].name
            contexts = RunContexts(reader)
            pool = NegativePool(cfg, reader, contexts)
            by_id = {node.node_id: node for node in reader.tree}
            own_scores, other_scores, wins, n = [], [], 0, 0
            for node in reader.tree:
                summary = focus_summary(node)
                if node.kind == "noise" or not summary:
                    continue
                parent = by_id.get(node.parent_id) if node.parent_id else None
                sample = node_sample(cfg, reader, node, parent, pool, contexts)
                own = scorer.score(summary, sample.embedding_positives, sample.embedding_negatives)
                foreign = scorer.score(roots[other], sample.embedding_positives, sample.embedding_negatives)
                if math.isnan(own) or math.isnan(foreign):
                    continue
                own_scores.append(own)
                other_scores.append(foreign)
                margins.append(own - foreign)
                wins += own > foreign
                n += 1
            print(
                f"demo {path.name}: {n} nodes; own focus-token summary AUC mean {statistics.mean(own_scores):.3f} "
                f"(min {min(own_scores):.3f}), summary of {other}'s root ({roots[other]}) mean "
                f"{statistics.mean(other_scores):.3f}; own above other on {wins}/{n} nodes; root summary {roots[path.name]}"
            )
        print(f"demo maps: mean margin {statistics.mean(margins):.3f}, min margin {min(margins):.3f}")


def main() -> None:
    """Run the three measurements and print their figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the encoder (default: 2)")
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--n", type=int, default=120, help="contexts of the synthetic map for the LLM run")
    parser.add_argument("--demo-store", type=Path, default=Path("/tmp/lift_demo/store"))
    args = parser.parse_args()
    embedding_cost(args.contexts, args.threads)
    llm_throughput(args.delay_ms / 1000, [int(c) for c in args.concurrency.split(",")], args.n)
    if (args.demo_store / "maps").is_dir():
        demo_figures(args.demo_store, Encoder(AgreementConfig()))
    else:
        print(f"demo maps: none at {args.demo_store}")


if __name__ == "__main__":
    main()
