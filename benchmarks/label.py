"""Labelling throughput against a loopback chat-completions server with a fixed reply delay.

    .venv/bin/python -m benchmarks.label [--delay-ms 50] [--concurrency 1,4,16]

Prints labels per second per concurrency and the ratio of the measured time to two ideals:
nodes x delay / concurrency, and the level-bound ideal (parents wait for their children, so each
tree level takes ceil(nodes in level / concurrency) rounds). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from pipeline import label
from tests.helpers.llm_server import Reply, chat_server, good_content
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import MapReader


def main() -> None:
    """Run the sweep and print one line per concurrency."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--n", type=int, default=120, help="contexts of the synthetic map")
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    with (
        tempfile.TemporaryDirectory() as tmp,
        chat_server(lambda r: Reply(good_content(r.prompt), delay_s=delay)) as server,
    ):
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            map_dir = build_synthetic_map(Path(tmp) / f"c{concurrency}", n=args.n)
            tree = MapReader(map_dir).tree
            levels: dict[int, int] = {}
            for node in tree:
                levels[node.depth] = levels.get(node.depth, 0) + 1
            cfg = label.LabelConfig(base_url=server.base_url, model="bench", api_key=None, concurrency=concurrency)
            start = time.perf_counter()
            report = label.run(cfg, map_dir)
            seconds = time.perf_counter() - start
            ideal = len(tree) * delay / concurrency
            level_ideal = sum(math.ceil(count / concurrency) for count in levels.values()) * delay
            print(
                f"concurrency {concurrency:>2}: {report.n_ok}/{len(tree)} nodes in {seconds:.3f} s = "
                f"{report.n_ok / seconds:.1f} labels/s; ideal {ideal:.3f} s (x{seconds / ideal:.2f}), "
                f"level-bound ideal {level_ideal:.3f} s (x{seconds / level_ideal:.2f})"
            )


if __name__ == "__main__":
    main()
