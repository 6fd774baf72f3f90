"""Triage figures: the time to commit one annotation, and to open a big store and count statuses.

    .venv/bin/python -m benchmarks.triage [--writes 500] [--nodes 10000]

(a) Commit latency: `set_status` / `add_tag` / `set_note` in turn on a fresh store, each one
    a committed WAL transaction with synchronous=FULL (an fsync per write) — the time between
    a key press and "saved". Median and p95 over --writes.
(b) Open + counts: a store holding --nodes annotated nodes (written directly, one transaction),
    then, in each run, `AnnotationStore.open` (schema check, quick_check) + `counts` over all
    ids + `close`. Median and p95 over 20 runs.
Wall time on a shared machine, on the temp directory's filesystem (printed); nothing asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from vista_tui.core.annotations import DEFAULT_STATUSES, AnnotationStore


def _quantiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _filesystem(path: Path) -> str:
    try:
        return (
            subprocess.run(["df", "-T", str(path)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
        )
    except (OSError, IndexError):
        return "?"


def bench_commits(map_dir: Path, writes: int) -> list[float]:
    """Seconds per committed write."""
    times = []
    with AnnotationStore.open(map_dir, "bench") as store:
        members = [f"ctx{i}" for i in range(50)]
        for i in range(writes):
            node = f"node{i % 200}"
            started = time.perf_counter()
            if i % 3 == 0:
                store.set_status(node, DEFAULT_STATUSES[1 + i % (len(DEFAULT_STATUSES) - 1)], members)
            elif i % 3 == 1:
                store.add_tag(node, f"tag{i % 17}", members)
            else:
                store.set_note(node, f"note {i}", members)
            times.append(time.perf_counter() - started)
    return times


def bench_open_counts(map_dir: Path, nodes: int, runs: int = 20) -> list[float]:
    """Seconds to open a store of `nodes` annotations and count them."""
    with AnnotationStore.open(map_dir, "bench") as store:
        pass  # creates the schema
    import sqlite3

    db = sqlite3.connect(map_dir / "annotations.sqlite")
    with db:
        db.executemany(
            "INSERT INTO annotations(node_id, status, tags, note, author, updated, members) VALUES (?,?,?,?,?,?,?)",
            (
                (
                    f"{i:016x}",
                    DEFAULT_STATUSES[i % len(DEFAULT_STATUSES)],
                    json.dumps([f"tag{i % 13}"]),
                    f"note {i}",
                    "bench",
                    "2026-01-01T00:00:00+00:00",
                    json.dumps([f"ctx{j}" for j in range(i % 40)]),
                )
                for i in range(nodes)
            ),
        )
    db.close()
    ids = [f"{i:016x}" for i in range(nodes)]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        store = AnnotationStore.open(map_dir, "bench")
        store.counts(ids)
        store.close()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a").mkdir()
        (root / "b").mkdir()
        print(f"filesystem: {_filesystem(root)}  load average: {os.getloadavg()[0]:.2f}")
        median, p95 = _quantiles(bench_commits(root / "a", args.writes))
        print(f"commit one annotation ({args.writes} writes): median {median * 1e3:.2f} ms, p95 {p95 * 1e3:.2f} ms")
        median, p95 = _quantiles(bench_open_counts(root / "b", args.nodes))
        print(f"open + counts over {args.nodes} annotated nodes: median {median * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
