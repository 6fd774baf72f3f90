"""The harvest's streaming top-N on its own (no model): with dedupe, the N best distinct windows.

Streams of activations whose windows repeat, fed in blocks of random sizes, against a plain
reference over the whole stream: per window its best copy (the smaller tie key on a tie), then
the N best of those (the smaller tie key on a tie). Tie keys are the ordinals (the default) or
a shuffle of them, as the harvest's corpus keys are where length-sorting reorders chunks. The end-to-end checks with MiniLM and a
corpus of real repeated docstrings are in test_harvest.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.harvest.topn import TopN


def reference(
    acts: np.ndarray, windows: list[bytes], n: int, dedupe: bool, ties: np.ndarray | None = None
) -> list[int]:
    """Ordinals of the N best (distinct, with dedupe) positive activations; ties: the smaller tie key
    (default: the ordinal, the first seen)."""
    tie = np.arange(acts.size) if ties is None else ties
    order = sorted(np.flatnonzero(acts > 0).tolist(), key=lambda i: (-acts[i], tie[i]))
    if dedupe:
        firsts: dict[bytes, int] = {}
        for i in order:
            firsts.setdefault(windows[i], i)
        order = sorted(firsts.values(), key=lambda i: (-acts[i], tie[i]))
    return sorted(order[:n])


def stream(
    top: TopN,
    acts: np.ndarray,
    windows: list[bytes],
    blocks: list[int],
    start: int = 0,
    ties: np.ndarray | None = None,
) -> int:
    """Offer `acts` from ordinal `start` on in blocks (with `ties`, their tie keys); check the bounded
    memory after each; return how many window keys were asked for."""
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
        block_ties = None if ties is None else ties[base : base + size]
        entered = top.offer(block, base, key_at(base) if top.dedupe else None, block_ties)
        assert set((base + entered).tolist()) <= set(top.ords.tolist())
        assert top.ords.size <= top.n and len(set(top.ords.tolist())) == top.ords.size
        if top.dedupe:
            # One key per kept entry and nothing else: evicted entries take their keys with them.
            assert len(top.held) == len(top.key_of) == top.ords.size
            assert sorted(ordinal for ordinal, _, _ in top.held.values()) == sorted(top.ords.tolist())
            assert all(top.ties[top.ords == ordinal][0] == tie for ordinal, _, tie in top.held.values())
            assert all(windows[ordinal] == window for ordinal, window in top.key_of.items())
        base += size
    return asked


@pytest.mark.parametrize("shuffled", [False, True], ids=["ties-by-ordinal", "ties-by-shuffled-key"])
@pytest.mark.parametrize("dedupe", [True, False])
def test_streaming_top_n_matches_the_whole_stream(dedupe: bool, shuffled: bool) -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        length = int(rng.integers(1, 120))
        n = int(rng.integers(1, 10))
        # Few distinct values: ties everywhere, between copies and between distinct windows.
        acts = rng.integers(0, 6, length).astype(np.float32) / 4
        windows = [bytes([int(w)]) for w in rng.integers(0, int(rng.integers(1, 25)), length)]
        cuts = np.sort(rng.choice(np.arange(1, length), size=min(length - 1, int(rng.integers(0, 8))), replace=False))
        blocks = np.diff(np.concatenate([[0], cuts, [length]])).tolist()
        ties = rng.permutation(length).astype(np.int64) * 3 + 7 if shuffled else None
        top = TopN(n, dedupe=dedupe)
        stream(top, acts, windows, blocks, ties=ties)
        expected = reference(acts, windows, n, dedupe, ties)
        assert sorted(top.ords.tolist()) == expected, (acts, windows, blocks, n, ties)
        kept = {int(o): float(a) for o, a in zip(top.ords, top.acts, strict=True)}
        assert all(kept[o] == acts[o] for o in kept)
        assert top.ties.tolist() == (top.ords if ties is None else ties[top.ords]).tolist()


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
    assert top.held == {a: (0, 5.0, 0), b: (4, 6.0, 4), d: (6, 9.0, 6)}


def test_an_equal_copy_with_a_smaller_tie_key_displaces_the_kept_one() -> None:
    # Processing order is not corpus order (length-sorted batches): the tie keys say which copy is first.
    acts = np.asarray([4, 3, 4, 3, 2], np.float32)
    windows = [b"a", b"b", b"a", b"c", b"d"]
    ties = np.asarray([50, 40, 10, 30, 20], np.int64)
    top = TopN(2, dedupe=True)
    stream(top, acts, windows, [2], ties=ties)
    assert top.held == {b"a": (0, 4.0, 50), b"b": (1, 3.0, 40)}
    stream(top, acts, windows, [1, 2], start=2, ties=ties)
    # a's equal copy at 2 comes first in corpus order: it displaces 0; c (3, key 30) beats b (3, key 40) at the cut.
    assert top.held == {b"a": (2, 4.0, 10), b"c": (3, 3.0, 30)}
    assert sorted(top.ords.tolist()) == [2, 3] == reference(acts, windows, 2, True, ties)
    assert top.ranked().tolist() == [int(np.flatnonzero(top.ords == 2)[0]), int(np.flatnonzero(top.ords == 3)[0])]


def test_an_equal_activation_at_the_cut_enters_by_its_tie_key() -> None:
    top = TopN(2)
    top.offer(np.asarray([5, 2, 2], np.float32), 0, ties=np.asarray([9, 8, 7], np.int64))
    assert sorted(top.ords.tolist()) == [0, 2] and top.threshold == 2.0
    entered = top.offer(np.asarray([2, 2], np.float32), 3, ties=np.asarray([3, 12], np.int64))
    assert entered.tolist() == [0] and sorted(top.ords.tolist()) == [0, 3]  # key 3 beats key 7; key 12 does not


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
