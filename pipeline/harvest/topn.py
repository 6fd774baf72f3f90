"""Streaming top-N per latent: each batch's candidates merged with the best N so far.

Merging is by `argpartition` over the kept N plus the block's candidates, never a heap push
per token, so memory stays bounded by N per latent whatever the corpus. Entries are named by
their processing ordinal (what materialisation, quantiles and negatives use), but exact ties
go to the smaller tie key: the token's corpus key (`ordinals`, corpus order), which the harvest
passes with each block, or the ordinal itself when none is given. Corpus order does not depend
on how the corpus is cut into batches and encoding blocks, nor on the length-sorting of chunks
within a batch window, so the same tokens are kept as the atlas keeps (`pipeline.atlas`).

Corpora repeat themselves (the same docstring in two modules, a sentence shared by many), so
by default a latent keeps each shown window (its display tokens and the focus position in
them) once: the copy with the highest activation, the first in corpus order on a tie. The best
N are then N distinct windows; a per-latent dict from window digest to kept entry, trimmed as
entries are pushed out, keeps that in bounded memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class TokenContext:
    """What a kept context shows, shared by every latent that keeps the same token."""

    context_id: str
    doc_id: str
    text: str
    tokens: list[str]
    focus: int
    code_indices: np.ndarray
    code_values: np.ndarray
    input_position: int = -1
    """The focus token's position in its model input (0 = the first input token)."""
    children: tuple[np.ndarray, np.ndarray] | None = None
    """`--also-sae`: the latents of SAE B (int32) that fire on the focus token among the harvest's wanted
    neighbours, with their activations (float32); None without a second SAE."""


@dataclass
class TopN:
    """The best N activations of one latent so far; `ords` are global token ordinals (unique), `ties` their tie keys."""

    n: int
    dedupe: bool = False
    """At most one kept entry per window key (the keys `offer` is given)."""
    acts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ords: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ties: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Tie key of each kept entry (unique): among equal activations the smaller wins."""
    threshold: float = 0.0
    """A token must reach this to get in: 0 until N are kept (and then only positive ones), then the N-th best
    (equal to it, the smaller tie key wins)."""
    entries: dict[int, tuple[TokenContext, np.ndarray]] = field(default_factory=dict)
    """Materialised contexts by ordinal (token context, token activations of the window)."""
    n_fired: int = 0
    held: dict[bytes, tuple[int, float, int]] = field(default_factory=dict)
    """With dedupe: window key → (ordinal, activation, tie key) of the kept entry showing that window."""
    key_of: dict[int, bytes] = field(default_factory=dict)
    """With dedupe: kept ordinal → its window key (to forget the key when the entry is pushed out)."""

    def offer(
        self,
        values: np.ndarray,
        base: int,
        key: Callable[[int], bytes] | None = None,
        ties: np.ndarray | None = None,
    ) -> np.ndarray:
        """Merge a block of activations (ordinals base..base+len) into the best N; return the block
        indices that got in (they may still be pushed out by a later block).

        `ties` are the block's tie keys (int64, unique across the stream; default: the ordinals, so
        the first offered wins a tie). With dedupe, `key(i)` is the window key of block index i: it
        is asked only of candidates that could get in, best first.
        """
        fires = values > self.threshold
        if self.n > 0 and self.acts.size >= self.n:
            fires |= values == self.threshold  # the N-th best (> 0): a smaller tie key displaces it
        candidates = np.flatnonzero(fires)
        if candidates.size == 0:
            return candidates
        candidate_acts = values[candidates]
        candidate_ties = base + candidates.astype(np.int64) if ties is None else np.asarray(ties, np.int64)[candidates]
        windows: list[bytes] = []
        if self.dedupe:
            if key is None:
                raise ValueError("a deduplicating top-N needs the window key of each candidate")
            picked, windows = self._distinct(candidates, candidate_acts, candidate_ties, key)
            candidates, candidate_acts, candidate_ties = (
                candidates[picked],
                candidate_acts[picked],
                candidate_ties[picked],
            )
            if candidates.size == 0:
                return candidates
        elif candidates.size > self.n:
            best = _best(candidate_acts, candidate_ties, self.n)
            candidates, candidate_acts, candidate_ties = candidates[best], candidate_acts[best], candidate_ties[best]
        acts = np.concatenate([self.acts, candidate_acts])
        ords = np.concatenate([self.ords, base + candidates.astype(np.int64)])
        ties_all = np.concatenate([self.ties, candidate_ties])
        n_old = self.acts.size
        if windows:
            for ordinal, act, tie, window in zip(
                ords[n_old:].tolist(), acts[n_old:].tolist(), candidate_ties.tolist(), windows, strict=True
            ):
                self.held[window] = (ordinal, act, tie)
                self.key_of[ordinal] = window
        if acts.size > self.n:
            keep = _best(acts, ties_all, self.n)
            kept = np.zeros(acts.size, dtype=bool)
            kept[keep] = True
            for ordinal in ords[~kept].tolist():
                self._forget(ordinal)
            entered = candidates[kept[n_old:]]
            acts, ords, ties_all = acts[keep], ords[keep], ties_all[keep]
        else:
            entered = candidates
        self.acts, self.ords, self.ties = acts, ords, ties_all
        self.threshold = float(acts.min()) if acts.size >= self.n else 0.0
        return entered

    def _distinct(
        self,
        candidates: np.ndarray,
        candidate_acts: np.ndarray,
        candidate_ties: np.ndarray,
        key: Callable[[int], bytes],
    ) -> tuple[np.ndarray, list[bytes]]:
        """The candidates (indices into the given arrays) that may enter with dedupe, and their window keys:
        the best copy of each window, if it beats the copy already kept (a higher activation, or an equal
        one with a smaller tie key). The kept copies they displace are dropped here."""
        order = np.lexsort((candidate_ties, -candidate_acts))  # best first: activation desc, tie key asc
        # The kept entries sorted by (activation, tie key): those that beat a candidate are found by two searches.
        held_order = np.lexsort((self.ties, self.acts))
        held_acts, held_ties = self.acts[held_order], self.ties[held_order]
        chosen: list[int] = []
        keys: list[bytes] = []
        displaced: list[int] = []
        seen: set[bytes] = set()
        n_new = 0
        for i in order.tolist():
            act, tie = float(candidate_acts[i]), int(candidate_ties[i])
            # Distinct windows already ahead of this candidate: kept ones that beat it, and new ones from this
            # block (taken in order, so all ahead). N of them, and nothing after it can get in either.
            lo = int(np.searchsorted(held_acts, act, side="left"))
            hi = int(np.searchsorted(held_acts, act, side="right"))
            beaten_by = held_acts.size - hi + int(np.searchsorted(held_ties[lo:hi], tie, side="left"))
            if n_new + beaten_by >= self.n:
                break
            window = key(int(candidates[i]))
            if window in seen:
                continue  # a better copy of it in this block was already weighed
            seen.add(window)
            held = self.held.get(window)
            if held is None:
                n_new += 1
            elif act > held[1] or (act == held[1] and tie < held[2]):
                displaced.append(held[0])
            else:
                continue
            chosen.append(i)
            keys.append(window)
        if displaced:
            stay = ~np.isin(self.ords, np.asarray(displaced, dtype=np.int64))
            self.acts, self.ords, self.ties = self.acts[stay], self.ords[stay], self.ties[stay]
            for ordinal in displaced:
                self._forget(ordinal)
        return np.asarray(chosen, dtype=np.int64), keys

    def _forget(self, ordinal: int) -> None:
        """Drop a kept entry's context and (with dedupe) its window key."""
        self.entries.pop(ordinal, None)
        window = self.key_of.pop(ordinal, None)
        if window is not None:
            del self.held[window]

    def pending(self, base: int) -> np.ndarray:
        """Ordinals kept from the current batch (from `base` on), not yet materialised."""
        return self.ords[self.ords >= base]

    def ranked(self) -> np.ndarray:
        """Indices of the kept entries, best first: activation descending, tie key ascending."""
        return np.lexsort((self.ties, -self.acts))


def _best(acts: np.ndarray, ties: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest of `acts` (more than n), a tie going to the smaller of `ties`
    (corpus order, or the first seen): whatever the batches, the same tokens are kept."""
    nth = acts[np.argpartition(acts, acts.size - n)[acts.size - n]]
    above = np.flatnonzero(acts > nth)
    tied = np.flatnonzero(acts == nth)
    if above.size + tied.size > n:
        tied = tied[np.argsort(ties[tied], kind="stable")[: n - above.size]]
    return np.concatenate([above, tied])
