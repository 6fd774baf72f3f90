"""Streaming statistics of a latent over every real token: density, all firings, positions.

Memory is fixed per latent (a histogram of `BINS` counts and one count per input position),
whatever the corpus. The activation histogram covers [0, hi) with `hi` the smallest power of
two at or above the running maximum: when a larger activation arrives, `hi` doubles (as often
as needed) and neighbouring bins are summed pairwise. Since the coarser grid's edges are edges
of the finer one, the result is exactly the histogram of all firings on the final grid, however
the corpus was cut into batches (see `vista_tui.mapdata.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vista_tui.mapdata.stats import Histogram, LatentStats, NodeStats

BINS = 128
"""Bins of the activation histogram (a power of two is not needed; an even number is)."""


def power_of_two_at_least(value: float) -> float:
    """The smallest power of two >= value (value > 0)."""
    return float(2.0 ** math.ceil(math.log2(value)))


def bin_index(values: np.ndarray, hi: float, bins: int) -> np.ndarray:
    """Bin of each value in `bins` equal bins over [0, hi), the last bin closed."""
    return np.minimum((values.astype(np.float64) * (bins / hi)).astype(np.int64), bins - 1)


def coarsen(counts: np.ndarray) -> np.ndarray:
    """Bin counts on the grid of twice the range: neighbouring bins summed pairwise, the upper half empty."""
    return np.concatenate([counts.reshape(-1, 2).sum(axis=1), np.zeros(counts.size // 2, dtype=counts.dtype)])


class FiringStats:
    """One latent's running figures: tokens fired on, all firings binned, positions fired at."""

    def __init__(self, max_length: int, bins: int = BINS) -> None:
        """Empty counts for inputs of at most `max_length` tokens."""
        if bins < 2 or bins % 2:
            raise ValueError(f"bins must be an even number >= 2, got {bins!r}")
        self.bins = bins
        self.hi = 0.0
        self.max_activation = 0.0
        self.n_fired = 0
        self.counts = np.zeros(bins, dtype=np.int64)
        self.positions = np.zeros(max_length, dtype=np.int64)

    def add(self, values: np.ndarray, positions: np.ndarray) -> None:
        """Count a block of activations (one per real token) and each token's input position."""
        fired = values > 0
        firing = values[fired]
        if firing.size == 0:
            return
        top = float(firing.max())
        if top > self.hi:
            self._grow(power_of_two_at_least(top))
        self.max_activation = max(self.max_activation, top)
        self.n_fired += int(firing.size)
        self.counts += np.bincount(bin_index(firing, self.hi, self.bins), minlength=self.bins)
        where = positions[fired].astype(np.int64)
        if where.size and int(where.max()) >= self.positions.size:  # never with inputs of max_length
            self.positions = np.concatenate(
                [self.positions, np.zeros(int(where.max()) + 1 - self.positions.size, np.int64)]
            )
        self.positions += np.bincount(where, minlength=self.positions.size)

    def _grow(self, hi: float) -> None:
        """Double the range until it reaches `hi`, summing neighbouring bins each time."""
        if self.hi == 0.0:
            self.hi = hi
            return
        while self.hi < hi:
            self.counts = coarsen(self.counts)
            self.hi *= 2.0

    def result(self, latent: int, n_tokens_seen: int) -> LatentStats:
        """The figures as the map stores them (no nodes yet)."""
        return LatentStats(
            latent=latent,
            n_tokens_seen=n_tokens_seen,
            n_fired=self.n_fired,
            max_activation=self.max_activation,
            activations=Histogram(lo=0.0, hi=self.hi, counts=tuple(int(c) for c in self.counts)),
            positions=tuple(int(c) for c in self.positions),
        )


def node_stats(
    stats: LatentStats, members: Sequence[Sequence[int]], activations: np.ndarray, focus_positions: np.ndarray
) -> list[NodeStats]:
    """Per node (its member context rows), the members' activations on the latent's grid and
    their focus positions, counted over as many positions as the latent's profile."""
    bins = len(stats.activations.counts)
    n_positions = max(len(stats.positions), int(focus_positions.max()) + 1 if focus_positions.size else 0)
    out = []
    for rows in members:
        index = np.asarray(rows, dtype=np.int64)
        acts = activations[index]
        acts = acts[acts > 0]
        counts = (
            np.bincount(bin_index(acts, stats.activations.hi, bins), minlength=bins)
            if acts.size and stats.activations.hi > 0
            else np.zeros(bins, np.int64)
        )
        where = focus_positions[index]
        where = where[where >= 0]
        positions = np.bincount(where, minlength=n_positions) if where.size else np.zeros(n_positions, np.int64)
        out.append(
            NodeStats(
                activations=Histogram(lo=0.0, hi=stats.activations.hi, counts=tuple(int(c) for c in counts)),
                positions=tuple(int(c) for c in positions),
            )
        )
    return out
