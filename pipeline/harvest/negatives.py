"""A bounded random sample of windows on which a latent never fired, drawn in the harvest's one pass.

The explanation scorers (`pipeline.score`) need non-activating examples: windows of the corpus
where the latent is 0 on every token, so that "does this text fit the explanation?" has a
right answer of no. Per latent the harvest keeps up to N of them (`HarvestConfig.negatives`).

**Which windows.** Every real token is a candidate centre; its window is the display window the
top-N contexts use (up to `window` tokens each side, inside its chunk). A window qualifies when
the latent's activation is 0 on all of its tokens: per batch a cumulative count of firings along
the batch's tokens answers that for every token at once (`clean_windows`).

**Which N.** Each candidate gets a pseudo-random 63-bit key, a hash (splitmix64) of the latent, a
seed, the token's document (a blake2b of its corpus source and document id) and its position in
that document, and the sampler keeps the N smallest keys ("bottom-N"): a uniform sample of the
qualifying windows. The key depends on the token alone, not on its ordinal in the harvest's
stream, so the sample is the same however documents are batched, sorted by length or cut into
encoding blocks. Memory is N windows per latent (2N with dedupe, whose draw skips a window the
corpus repeats); only a candidate that gets in has its window built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.harvest.quantiles import splitmix64
from pipeline.harvest.windows import Windows
from vista_tui.mapdata import context_id_for, negatives_table

SEED = 1
"""Seed of the negatives' keys (another stream than the quantile examples')."""

_ALL_KEYS = np.uint64(np.iinfo(np.uint64).max)


@dataclass(frozen=True, slots=True)
class NegativeWindow:
    """A kept window: where it is in the corpus and what it shows."""

    context_id: str
    doc_id: str
    tokens: tuple[str, ...]
    focus: int


def document_key(source: str, doc_id: str) -> int:
    """A 64-bit hash of a document's identity (its corpus source and id)."""
    digest = hashlib.blake2b(f"{source}\x00{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def token_keys(windows: Windows) -> np.ndarray:
    """Per real token of the batch (in `hidden[real]` order), a latent-independent hash of its document and position."""
    documents = np.asarray(
        [document_key(chunk.document.source, chunk.document.doc_id) for chunk in windows.batch], dtype=np.uint64
    )
    first = np.asarray([chunk.first_position for chunk in windows.batch], dtype=np.int64)
    index = np.arange(windows.rows.size, dtype=np.int64)
    positions = first[windows.rows] + index - windows.row_start[windows.rows]
    return splitmix64(documents[windows.rows] ^ splitmix64(positions.astype(np.uint64)))


def window_bounds(windows: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Per real token of the batch, its display window's bounds [lo, hi) in batch token index."""
    index = np.arange(windows.rows.size, dtype=np.int64)
    first = windows.row_start[windows.rows].astype(np.int64)
    end = first + windows.counts[windows.rows].astype(np.int64)
    return np.maximum(first, index - windows.window), np.minimum(end, index + windows.window + 1)


def clean_windows(values: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per token, whether the latent is 0 (or below) on every token of its window."""
    fired = np.concatenate([[0], np.cumsum(values > 0)])
    lo, hi = bounds
    return fired[hi] - fired[lo] == 0


def negative_window(windows: Windows, t: int) -> NegativeWindow:
    """Batch token t's window, as a negative example centred on it."""
    pieces, lo, _ = windows.span(t)
    row = int(windows.rows[t])
    chunk = windows.batch[row]
    position = chunk.first_position + (t - int(windows.row_start[row]))
    return NegativeWindow(
        context_id=context_id_for(chunk.document.source, chunk.document.doc_id, position),
        doc_id=chunk.document.doc_id,
        tokens=tuple(pieces),
        focus=t - lo,
    )


class NegativeSampler:
    """One latent's bottom-N reserve of non-activating windows."""

    def __init__(self, n: int, latent: int, *, dedupe: bool = True, seed: int = SEED) -> None:
        """An empty reserve for `n` windows (`2n` kept with dedupe, so that repeats can be skipped)."""
        if n < 1:
            raise ValueError(f"negatives must be a positive integer, got {n!r}")
        self.n = n
        self.dedupe = dedupe
        self.reserve = 2 * n if dedupe else n
        self._salt = splitmix64(np.asarray([latent ^ (seed << 32)], dtype=np.uint64))[0]
        self.keys = np.zeros(0, dtype=np.uint64)
        self.kept: list[NegativeWindow] = []
        self._threshold = _ALL_KEYS

    def keys_of(self, tokens: np.ndarray) -> np.ndarray:
        """The latent's 63-bit keys of tokens given by `token_keys`."""
        return splitmix64(tokens ^ self._salt) >> np.uint64(1)

    def add(
        self,
        values: np.ndarray,
        bounds: tuple[np.ndarray, np.ndarray],
        tokens: np.ndarray,
        window: Callable[[int], NegativeWindow],
    ) -> None:
        """Offer a batch: the latent's activation per token, the windows' bounds, the tokens' keys
        (`token_keys`); `window(t)` builds token t's window and is asked only of those that get in."""
        keys = self.keys_of(tokens)
        admit = np.flatnonzero(clean_windows(values, bounds) & (keys < self._threshold))
        if admit.size == 0:
            return
        if admit.size > self.reserve:
            admit = admit[np.argsort(keys[admit], kind="stable")[: self.reserve]]
        merged_keys = np.concatenate([self.keys, keys[admit]])
        merged = self.kept + [window(int(t)) for t in admit.tolist()]
        order = np.argsort(merged_keys, kind="stable")[: self.reserve]
        self.keys = merged_keys[order]
        self.kept = [merged[int(i)] for i in order]
        if self.keys.size == self.reserve:
            self._threshold = self.keys[-1]

    def examples(self) -> list[NegativeWindow]:
        """The draw: up to N windows, smallest keys first (each shown window once with dedupe)."""
        drawn: list[NegativeWindow] = []
        shown: set[tuple[tuple[str, ...], int]] = set()
        for kept in self.kept:
            if self.dedupe:
                if (kept.tokens, kept.focus) in shown:
                    continue
                shown.add((kept.tokens, kept.focus))
            drawn.append(kept)
            if len(drawn) == self.n:
                break
        return drawn

    def table(self) -> pa.Table:
        """The draw in `negatives.parquet`'s schema."""
        drawn = self.examples()
        return negatives_table(
            context_ids=[kept.context_id for kept in drawn],
            doc_ids=[kept.doc_id for kept in drawn],
            tokens=[list(kept.tokens) for kept in drawn],
            focus=[kept.focus for kept in drawn],
        )
