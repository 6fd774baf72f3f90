"""Streaming top-N per latent: each batch's candidates merged with the best N so far.

Merging is by `argpartition` over the kept N plus the block's candidates, never a heap push
per token, so memory stays bounded by N per latent whatever the corpus. Exact ties go to the
token seen first (the smaller global ordinal), so the same tokens are kept however the corpus
is cut into batches and encoding blocks.

Corpora repeat themselves (the same docstring in two modules, a sentence shared by many), so
by default a latent keeps each shown window (its display tokens and the focus position in
them) once: the copy with the highest activation, the first seen on a tie. The best N are
then N distinct windows; a per-latent dict from window digest to kept entry, trimmed as
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
    """The best N activations of one latent so far; `ords` are global token ordinals (unique)."""

    n: int
    dedupe: bool = False
    """At most one kept entry per window key (the keys `offer` is given)."""
    acts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    ords: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    threshold: float = 0.0
    """A token must beat this to get in: 0 until N are kept, then the N-th best."""
    entries: dict[int, tuple[TokenContext, np.ndarray]] = field(default_factory=dict)
    """Materialised contexts by ordinal (token context, token activations of the window)."""
    n_fired: int = 0
    held: dict[bytes, tuple[int, float]] = field(default_factory=dict)
    """With dedupe: window key → (ordinal, activation) of the kept entry showing that window."""
    key_of: dict[int, bytes] = field(default_factory=dict)
    """With dedupe: kept ordinal → its window key (to forget the key when the entry is pushed out)."""

    def offer(self, values: np.ndarray, base: int, key: Callable[[int], bytes] | None = None) -> np.ndarray:
        """Merge a block of activations (ordinals base..base+len) into the best N; return the block
        indices that got in (they may still be pushed out by a later block).

        With dedupe, `key(i)` is the window key of block index i: it is asked only of candidates
        that could get in, highest activation first.
        """
        candidates = np.flatnonzero(values > self.threshold)
        if candidates.size == 0:
            return candidates
        candidate_acts = values[candidates]
        windows: list[bytes] = []
        if self.dedupe:
            if key is None:
                raise ValueError("a deduplicating top-N needs the window key of each candidate")
            candidates, candidate_acts, windows = self._distinct(candidates, candidate_acts, key)
            if candidates.size == 0:
                return candidates
        elif candidates.size > self.n:
            best = _best(candidate_acts, candidates, self.n)
            candidates, candidate_acts = candidates[best], candidate_acts[best]
        acts = np.concatenate([self.acts, candidate_acts])
        ords = np.concatenate([self.ords, base + candidates.astype(np.int64)])
        n_old = self.acts.size
        if windows:
            for ordinal, act, window in zip(ords[n_old:].tolist(), acts[n_old:].tolist(), windows, strict=True):
                self.held[window] = (ordinal, act)
                self.key_of[ordinal] = window
        if acts.size > self.n:
            keep = _best(acts, ords, self.n)
            kept = np.zeros(acts.size, dtype=bool)
            kept[keep] = True
            for ordinal in ords[~kept].tolist():
                self._forget(ordinal)
            entered = candidates[kept[n_old:]]
            acts, ords = acts[keep], ords[keep]
        else:
            entered = candidates
        self.acts, self.ords = acts, ords
        self.threshold = float(acts.min()) if acts.size >= self.n else 0.0
        return entered

    def _distinct(
        self, candidates: np.ndarray, candidate_acts: np.ndarray, key: Callable[[int], bytes]
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """The candidates that may enter with dedupe, and their window keys: the best copy of each
        window, if it beats the copy already kept. The kept copies they displace are dropped here."""
        order = np.argsort(-candidate_acts, kind="stable")  # highest first; a tie: the first seen first
        held_acts = np.sort(self.acts)
        chosen: list[int] = []
        keys: list[bytes] = []
        displaced: list[int] = []
        seen: set[bytes] = set()
        n_new = 0
        for i in order.tolist():
            act = float(candidate_acts[i])
            # Distinct windows already at least this high: kept ones (ties go to them, seen
            # first) and new ones from this block. N of them and nothing lower can get in.
            if n_new + held_acts.size - int(np.searchsorted(held_acts, act, side="left")) >= self.n:
                break
            window = key(int(candidates[i]))
            if window in seen:
                continue  # a copy as high or higher, seen first, was already weighed
            seen.add(window)
            held = self.held.get(window)
            if held is None:
                n_new += 1
            elif act > held[1]:
                displaced.append(held[0])
            else:
                continue
            chosen.append(i)
            keys.append(window)
        if displaced:
            stay = ~np.isin(self.ords, np.asarray(displaced, dtype=np.int64))
            self.acts, self.ords = self.acts[stay], self.ords[stay]
            for ordinal in displaced:
                self._forget(ordinal)
        picked = np.asarray(chosen, dtype=np.int64)
        return candidates[picked], candidate_acts[picked], keys

    def _forget(self, ordinal: int) -> None:
        """Drop a kept entry's context and (with dedupe) its window key."""
        self.entries.pop(ordinal, None)
        window = self.key_of.pop(ordinal, None)
        if window is not None:
            del self.held[window]

    def pending(self, base: int) -> np.ndarray:
        """Ordinals kept from the current batch (from `base` on), not yet materialised."""
        return self.ords[self.ords >= base]


def _best(acts: np.ndarray, ords: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest of `acts` (more than n), a tie going to the smaller of `ords`
    (the first seen): whatever the batches, the same tokens are kept."""
    nth = acts[np.argpartition(acts, acts.size - n)[acts.size - n]]
    above = np.flatnonzero(acts > nth)
    tied = np.flatnonzero(acts == nth)
    if above.size + tied.size > n:
        tied = tied[np.argsort(ords[tied], kind="stable")[: n - above.size]]
    return np.concatenate([above, tied])
