"""Random examples of a latent from each of Q equal-width activation intervals, in one streaming pass.

The intervals cut (0, max_activation] into Q equal parts, but the maximum is known only once
the whole corpus has been read, and the windows around a firing can only be built while its
batch is at hand. So the sampler keeps, during the pass, a bounded reserve on a fine grid and
draws from it at the end.

**Keys.** Every firing (activation > 0) gets a pseudo-random 63-bit key, a hash (splitmix64)
of the latent, the token's ordinal in the harvest's token stream and a seed. The K firings of a
set with the smallest keys ("bottom-K") are a uniform random sample of K of them, and since a
key depends on nothing but the token, the sample is the same however the stream is cut into
batches and encoding blocks.

**The fine grid.** Firings are binned on the grid `FiringStats` uses: `BINS` bins over
[0, hi), `hi` the smallest power of two at or above the running maximum. Per bin the sampler
keeps, each with its window (display tokens, focus, the latent's activation on each token):
the K firings with the smallest keys, and also the K highest and the K lowest activations. When
`hi` doubles, neighbouring bins merge pairwise and each of the three selections is redone on
their union, which is exact: the best K of a union lie among the best K of its parts. Memory is
at most 3 x BINS x K windows per latent, whatever the corpus. Per batch the work is a vectorised
hash and a per-bin threshold test; only firings that get in have their window built.

**Drawing, at the end.** The edges are `edges[i] = max * i / Q` and a firing belongs to interval
i when edges[i] < a <= edges[i + 1] (so the maximum is in the last one). Candidates for an
interval are the kept firings whose activation lies in it. A fine bin wholly inside the
interval kept its K smallest keys, so the smallest keys among its candidates are those of the
whole interval. A bin cut by an interval edge (at most two per interval, since Q <= BINS / 2
makes every interval wider than a bin) may have dropped firings of this interval in favour of
smaller keys from the neighbouring one; but if it saw more than K firings, it still holds every
firing whose key is at most its own K-th smallest key. So the candidates are first restricted to
keys at or below the smallest such key of the cut bins: whatever lies below it was all kept,
and the K smallest keys there are an exactly uniform sample of the interval. Only when that
leaves fewer than K does the sampler top up from the remaining candidates, smallest keys first
(no longer exactly uniform). Because cut bins also kept their K highest and K lowest
activations, every interval gets min(K, its firings) examples.

With dedupe, an interval never shows the same window (display tokens and focus position) twice
(corpora repeat docstrings): a candidate whose window was already drawn for the interval is
skipped and the next one taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from pipeline.harvest.stats import BINS, bin_index, coarsen, power_of_two_at_least
from pipeline.harvest.windows import Windows
from vista_tui.mapdata import LatentStats
from vista_tui.mapdata.stats import QuantileExample, QuantileExamples

SEED = 0
"""Seed of the firing keys: the same corpus and latent give the same examples."""

_ALL_KEYS = np.uint64(np.iinfo(np.uint64).max)
"""A key threshold every key passes (keys are 63-bit)."""
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True, slots=True)
class KeptWindow:
    """What a kept firing shows: the window around its token, as the map's contexts show it."""

    doc_id: str
    tokens: tuple[str, ...]
    focus: int
    token_activations: np.ndarray
    """The latent's activation on every token of the window (float32)."""


def splitmix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's output function on each value (uint64, wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX_1
        z = (z ^ (z >> np.uint64(27))) * _MIX_2
        return z ^ (z >> np.uint64(31))


def key_stream(latent: int, seed: int = SEED) -> np.ndarray:
    """The salt of one latent's keys under `seed` (a one-element uint64 array)."""
    salt = splitmix64(np.asarray([latent, seed], dtype=np.uint64))
    return splitmix64(salt[:1] ^ (salt[1:] >> np.uint64(1)))


def firing_keys(latent: int, ordinals: np.ndarray, seed: int = SEED, stream: np.ndarray | None = None) -> np.ndarray:
    """The 63-bit sampling key of each token ordinal for `latent`: a hash of (latent, ordinal, seed).
    `stream` is `key_stream(latent, seed)`, when the caller has it at hand."""
    salt = key_stream(latent, seed) if stream is None else stream
    return splitmix64(ordinals.astype(np.uint64) ^ salt) >> np.uint64(1)


def window_of(windows: Windows, activations: np.ndarray, t: int) -> KeptWindow:
    """Batch token t's window (the top-N contexts' display tokens), with `activations` on each of its tokens."""
    pieces, lo, hi = windows.span(t)
    chunk = windows.batch[int(windows.rows[t])]
    return KeptWindow(
        doc_id=chunk.document.doc_id,
        tokens=tuple(pieces),
        focus=t - lo,
        token_activations=activations[lo:hi].astype(np.float32),
    )


class QuantileSampler:
    """One latent's reserve of firings on the fine grid, and the examples drawn from it at the end."""

    def __init__(
        self, quantiles: int, per_quantile: int, latent: int, *, dedupe: bool = True, seed: int = SEED, bins: int = BINS
    ) -> None:
        """An empty reserve for `per_quantile` (K) examples from each of `quantiles` (Q) intervals."""
        if not 1 <= quantiles <= bins // 2:
            raise ValueError(f"quantiles must be between 1 and {bins // 2}, got {quantiles!r}")
        if per_quantile < 1:
            raise ValueError(f"per_quantile must be a positive integer, got {per_quantile!r}")
        self.quantiles = quantiles
        self.k = per_quantile
        self.latent = latent
        self.dedupe = dedupe
        self.seed = seed
        self._stream = key_stream(latent, seed)
        self.bins = bins
        self.hi = 0.0
        self.max_activation = 0.0
        self.counts = np.zeros(bins, dtype=np.int64)
        """Firings seen per fine bin (all of them, kept or not)."""
        self.keys = np.zeros(0, dtype=np.uint64)
        self.acts = np.zeros(0, dtype=np.float32)
        self.ords = np.zeros(0, dtype=np.int64)
        self.fine = np.zeros(0, dtype=np.int64)
        """The fine bin of each kept firing."""
        self.windows: dict[int, KeptWindow] = {}
        """Kept firings' windows, by ordinal."""
        self._admit_key = np.full(bins, _ALL_KEYS, dtype=np.uint64)
        self._admit_high = np.full(bins, -np.inf, dtype=np.float32)
        self._admit_low = np.full(bins, np.inf, dtype=np.float32)

    @property
    def n_kept(self) -> int:
        """Firings held in the reserve (at most 3 x bins x K)."""
        return int(self.keys.size)

    def add(self, values: np.ndarray, base: int, window: Callable[[int], KeptWindow]) -> None:
        """Offer a block of activations (token ordinals base..base+len); `window(i)` builds block
        index i's window, and is asked only of the firings that get into the reserve."""
        fired = np.flatnonzero(values > 0)
        if fired.size == 0:
            return
        acts = values[fired].astype(np.float32)
        top = float(acts.max())
        if top > self.hi:
            self._grow(power_of_two_at_least(top))
        self.max_activation = max(self.max_activation, top)
        fine = bin_index(acts, self.hi, self.bins)
        self.counts += np.bincount(fine, minlength=self.bins)
        ords = base + fired.astype(np.int64)
        keys = firing_keys(self.latent, ords, self.seed, self._stream)
        admit = (keys <= self._admit_key[fine]) | (acts >= self._admit_high[fine]) | (acts <= self._admit_low[fine])
        if not admit.any():
            return
        touched = np.zeros(self.bins, dtype=bool)
        touched[fine[admit]] = True
        for ordinal in self._merge(touched, keys[admit], acts[admit], ords[admit], fine[admit]).tolist():
            self.windows[ordinal] = window(ordinal - base)

    def _grow(self, hi: float) -> None:
        """Double the range until it reaches `hi`, merging neighbouring bins (and their reserves) each time."""
        if self.hi == 0.0:
            self.hi = hi
            return
        while self.hi < hi:
            self.counts = coarsen(self.counts)
            self.fine = self.fine // 2
            self.hi *= 2.0
        nothing = np.zeros(0, dtype=np.int64)
        self._merge(
            np.ones(self.bins, dtype=bool), nothing.astype(np.uint64), nothing.astype(np.float32), nothing, nothing
        )

    def _merge(
        self, touched: np.ndarray, keys: np.ndarray, acts: np.ndarray, ords: np.ndarray, fine: np.ndarray
    ) -> np.ndarray:
        """Merge new firings (all in `touched` bins) into the reserve: per touched bin, keep the K
        smallest keys, K highest and K lowest activations of the kept and new firings together
        (ties: the first seen), forget the windows of the rest and renew the bin's admission
        thresholds. Returns the ordinals of the new firings kept (their windows are to be built)."""
        held = touched[self.fine]
        keys = np.concatenate([self.keys[held], keys])
        acts = np.concatenate([self.acts[held], acts])
        ords = np.concatenate([self.ords[held], ords])
        fine = np.concatenate([self.fine[held], fine])
        n_held = int(held.sum())
        keep = np.zeros(keys.size, dtype=bool)
        self._admit_key[touched] = _ALL_KEYS
        self._admit_high[touched] = -np.inf
        self._admit_low[touched] = np.inf
        for order_by, threshold, values in (
            ((ords, keys), self._admit_key, keys),
            ((ords, -acts), self._admit_high, acts),
            ((ords, acts), self._admit_low, acts),
        ):
            order, rank = _rank_in_bins(order_by, fine)
            keep[order[rank < self.k]] = True
            at_k = order[rank == self.k - 1]  # a full bin's K-th: a newcomer must reach it to get in
            threshold[fine[at_k]] = values[at_k]
        for ordinal in ords[~keep].tolist():
            self.windows.pop(ordinal, None)
        rest = ~held
        self.keys = np.concatenate([self.keys[rest], keys[keep]])
        self.acts = np.concatenate([self.acts[rest], acts[keep]])
        self.ords = np.concatenate([self.ords[rest], ords[keep]])
        self.fine = np.concatenate([self.fine[rest], fine[keep]])
        return ords[n_held:][keep[n_held:]]

    def examples(self) -> QuantileExamples:
        """The draw: up to K examples per interval, ordered by interval then activation (highest first)."""
        q, top = self.quantiles, self.max_activation
        edges = tuple([top * i / q for i in range(q)] + [top])
        if self.keys.size == 0:
            return QuantileExamples(edges=edges, per_quantile=self.k, examples=())
        interval = np.clip(np.searchsorted(np.asarray(edges), self.acts.astype(np.float64), side="left") - 1, 0, q - 1)
        limits = self._key_limits()
        examples: list[tuple[int, float, int, KeptWindow]] = []
        for i in range(q):
            members = np.flatnonzero(interval == i)
            if members.size == 0:
                continue
            # The bins cut by the interval's inner edges: the ones holding the edges themselves.
            cut = bin_index(np.asarray(edges[max(i, 1) : min(i + 2, q)]), self.hi, self.bins)
            limit = limits[cut].min() if cut.size else _ALL_KEYS
            members = members[np.lexsort((self.ords[members], self.keys[members]))]
            below = self.keys[members] <= limit
            drawn = self._draw(np.concatenate([members[below], members[~below]]))
            examples += [(i, float(self.acts[m]), int(self.keys[m]), self.windows[int(self.ords[m])]) for m in drawn]
        examples.sort(key=lambda example: (example[0], -example[1], example[2]))
        return QuantileExamples(
            edges=edges,
            per_quantile=self.k,
            examples=tuple(
                QuantileExample(
                    interval=i,
                    activation=activation,
                    doc_id=kept.doc_id,
                    tokens=kept.tokens,
                    focus=kept.focus,
                    token_activations=tuple(float(a) for a in kept.token_activations),
                )
                for i, activation, _, kept in examples
            ),
        )

    def _key_limits(self) -> np.ndarray:
        """Per fine bin, the key at or below which every firing it saw is kept: its K-th smallest
        key when it saw more than K firings, else every key."""
        limits = np.full(self.bins, _ALL_KEYS, dtype=np.uint64)
        order, rank = _rank_in_bins((self.ords, self.keys), self.fine)
        at_k = order[rank == self.k - 1]
        lossy = self.counts[self.fine[at_k]] > self.k
        limits[self.fine[at_k][lossy]] = self.keys[at_k][lossy]
        return limits

    def _draw(self, candidates: np.ndarray) -> list[int]:
        """The first K of `candidates` (reserve indices, in draw order), each window once with dedupe."""
        drawn: list[int] = []
        shown: set[tuple[tuple[str, ...], int]] = set()
        for m in candidates.tolist():
            kept = self.windows[int(self.ords[m])]
            if self.dedupe:
                if (kept.tokens, kept.focus) in shown:
                    continue
                shown.add((kept.tokens, kept.focus))
            drawn.append(m)
            if len(drawn) == self.k:
                break
        return drawn


def _rank_in_bins(order_by: tuple[np.ndarray, ...], fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items sorted by bin then by `order_by` (lexsort keys, last = primary), and each one's rank in its bin."""
    order = np.lexsort((*order_by, fine))
    sorted_bins = fine[order]
    return order, np.arange(order.size) - np.searchsorted(sorted_bins, sorted_bins, side="left")


def with_quantiles(stats: LatentStats, sampler: QuantileSampler | None) -> LatentStats:
    """`stats` with the sampler's examples (unchanged without a sampler: none were asked for)."""
    if sampler is None:
        return stats
    return replace(stats, quantiles=sampler.examples())
