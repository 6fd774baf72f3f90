"""The harvest's streaming top-N on its own (no model): with dedupe, the N best distinct windows.

Streams of activations whose windows repeat, fed in blocks of random sizes, against a plain
reference over the whole stream: per window its best copy (the first seen on a tie), then
the N best of those (the first seen on a tie). The end-to-end checks with MiniLM and a
corpus of real repeated docstrings are in test_harvest.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.harvest.topn import TopN


def reference(acts: np.ndarray, windows: list[bytes], n: int, dedupe: bool) -> list[int]:
    """Ordinals of the N best (distinct, with dedupe) positive activations; ties: the first seen."""
    order = sorted(np.flatnonzero(acts > 0).tolist(), key=lambda i: (-acts[i], i))
    if dedupe:
        firsts: dict[bytes, int] = {}
        for i in order:
            firsts.setdefault(windows[i], i)
        order = sorted(firsts.values(), key=lambda i: (-acts[i], i))
    return sorted(order[:n])


def stream(top: TopN, acts: np.ndarray, windows: list[bytes], blocks: list[int], start: int = 0) -> int:
    """Offer `acts` from ordinal `start` on in blocks; check the bounded memory after each; return
    how many window keys were asked for."""
    asked = 0

    def key_at(base: int) -> Callable[[int], bytes]:
        def key(i: int) -> bytes:
            nonlocal asked
            asked += 1
            return windows[base + i]

        return key

    base = start
    for size in blocks:
        block = acts[base : base + size]
        entered = top.offer(block, base, key_at(base) if top.dedupe else None)
        assert set((base + entered).tolist()) <= set(top.ords.tolist())
        assert top.ords.size <= top.n and len(set(top.ords.tolist())) == top.ords.size
        if top.dedupe:
            # One key per kept entry and nothing else: evicted entries take their keys with them.
            assert len(top.held) == len(top.key_of) == top.ords.size
            assert sorted(ordinal for ordinal, _ in top.held.values()) == sorted(top.ords.tolist())
            assert all(windows[ordinal] == window for ordinal, window in top.key_of.items())
        base += size
    return asked


@pytest.mark.parametrize("dedupe", [True, False])
def test_streaming_top_n_matches_the_whole_stream(dedupe: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        length = int(rng.integers(1, 120))
        n = int(rng.integers(1, 10))
        # Few distinct values: ties everywhere, between copies and between distinct windows.
        acts = rng.integers(0, 6, length).astype(np.float32) / 4
        windows = [bytes([int(w)]) for w in rng.integers(0, int(rng.integers(1, 25)), length)]
        cuts = np.sort(rng.choice(np.arange(1, length), size=min(length - 1, int(rng.integers(0, 8))), replace=False))
        blocks = np.diff(np.concatenate([[0], cuts, [length]])).tolist()
        top = TopN(n, dedupe=dedupe)
        stream(top, acts, windows, blocks)
        assert sorted(top.ords.tolist()) == reference(acts, windows, n, dedupe), (acts, windows, blocks, n)
        kept = {int(o): float(a) for o, a in zip(top.ords, top.acts, strict=True)}
        assert all(kept[o] == acts[o] for o in kept)


def test_a_later_higher_copy_displaces_the_kept_one_and_a_lower_one_is_dropped() -> None:
    a, b, c, d = b"a", b"b", b"c", b"d"
    acts = np.asarray([5, 4, 3, 2, 6, 4, 9, 9], np.float32)
    windows = [a, b, c, d, b, a, d, d]
    top = TopN(3, dedupe=True)
    stream(top, acts, windows, [4])
    assert sorted(top.ords.tolist()) == [0, 1, 2]  # d (2) did not make it
    stream(top, acts, windows, [1, 1, 2], start=4)
    # b's copy at 4 (6) displaced the one at 1 (4); a's copy at 5 (4) is below the kept 0 (5):
    # dropped; d's equal copies at 6 and 7: the first seen got in, and pushed c (3) out.
    assert sorted(top.ords.tolist()) == [0, 4, 6] == reference(acts, windows, 3, True)
    assert top.held == {a: (0, 5.0), b: (4, 6.0), d: (6, 9.0)}


def test_copies_in_one_block_leave_room_for_the_next_distinct_windows() -> None:
    acts = np.asarray([9, 9, 9, 8, 8, 7, 1], np.float32)
    windows = [b"x", b"x", b"x", b"y", b"y", b"z", b"w"]
    top = TopN(3, dedupe=True)
    asked = stream(top, acts, windows, [7])
    assert sorted(top.ords.tolist()) == [0, 3, 5]  # x, y, z: the top 3 filled from distinct windows
    assert asked == 6  # the candidate below three distinct better windows is never keyed


def test_dedupe_needs_the_window_keys() -> None:
    with pytest.raises(ValueError, match="window key"):
        TopN(2, dedupe=True).offer(np.asarray([1.0], np.float32), 0)
