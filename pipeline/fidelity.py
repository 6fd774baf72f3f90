"""Fidelity of the 2-D layout: the mutual-kNN gain curve against the high-D VISTA distance.

For k neighbours (the point itself excluded),

    m(k)    = mean_i |N_k^hi(i) & N_k^2d(i)| / k
    gain(k) = m(k) - k / (N - 1)            (what a random layout scores)

with N^hi by the VISTA distance (pipeline.distance) and N^2d by Euclidean distance in the
layout. k sweeps a geometric range of percentages of N (default 0.25 % ... 50 %).

Tie rule: neighbours are ranked by (distance, row index), so among equal distances the lower
index is the nearer; N_k(i) is the first k of that order. High-D distances are the float32
values of `vista_distance_matrix`; 2-D distances are compared as float32 squared distances,
`planar_sq_distances` (same order as Euclidean, one rounding fewer).

How it stays fast: every position p of a row's neighbour order belongs to the bucket t of the
first swept k_t > p; a pair (i, j) counts for every k_t at or above max(bucket_hi, bucket_2d),
so one count per bucket and a cumulative sum give m(k) for the whole sweep at once.

By default (`mutual_knn_fraction_blocked`) nothing N x N is ever held: a numba kernel
(pipeline.row_kernel) takes one row at a time on every core, forms its high-D distances
from sparse dot products (the same float32 numbers as `vista_distance_matrix`) and its planar
ones, and buckets both orders with a histogram, sorting only the few neighbours whose bin a
swept k falls in. Memory is O(nnz + N) plus O(N) per thread. A KD-tree would not help the 2-D
side: the sweep reaches k = N/2, so half of every row is needed anyway, and a row of float32
distances is what fixes the tie order.

Given the N x N matrix (`run(..., distances=...)`), `mutual_knn_fraction` does the same from it,
per chunk of rows: int64 keys (float bits, index) whose plain order is the tie rule, one
partition at the largest k and a sort of that part. Both give the same curve.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pipeline.distance import _prepare, index_bits, pack_keys, row_engine, row_kernel, worker_count
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import FidelityCurve, SparseCodes

STEP = "fidelity"
VERSION = 1
DISTRIBUTIONS = ("numpy", "scipy", "numba")
"""Packages whose versions shape the curve, in the order the manifest records them."""
MAX_SWEEP = 200
"""Most k values a sweep may hold (buckets are counted in uint8)."""
ROW_CHUNK = 128
"""Rows handled together: bounds the working memory to a few ROW_CHUNK x N arrays."""
KERNEL_ROWS = 64
"""Rows per task of the blocked kernel: enough tasks to keep every thread busy to the end."""


@dataclass(frozen=True)
class FidelityConfig:
    """Parameters of the mutual-kNN gain sweep."""

    lam: float = 1.0
    """Weight of the activation gap in the VISTA distance (as in the layout)."""
    n_k: int = 24
    """How many k values to sweep, at least (fewer only when the range has fewer integers)."""
    min_percent: float = 0.25
    max_percent: float = 50.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")
        if not 2 <= self.n_k <= MAX_SWEEP:
            raise ValueError(f"n_k must be between 2 and {MAX_SWEEP}, got {self.n_k!r}")
        if not (math.isfinite(self.min_percent) and self.min_percent > 0):
            raise ValueError(f"min_percent must be > 0, got {self.min_percent!r}")
        if not (math.isfinite(self.max_percent) and self.min_percent < self.max_percent <= 100):
            raise ValueError(
                f"max_percent must be in (min_percent, 100], got {self.max_percent!r} "
                f"with min_percent={self.min_percent!r}"
            )


Config = FidelityConfig
"""The step's config under the name every step module exports."""


def k_sweep(n: int, cfg: FidelityConfig) -> list[int]:
    """The swept k: distinct integers >= 1, geometric from min_percent to max_percent of n.

    Holds at least cfg.n_k values when [k_min, k_max] has that many integers, else all of them.
    """
    if n < 3:
        raise ValueError(f"need at least 3 points for a fidelity curve, got {n}")
    k_max = min(n - 1, max(1, round(n * cfg.max_percent / 100)))
    k_min = min(k_max, max(1, round(n * cfg.min_percent / 100)))
    wanted = min(cfg.n_k, k_max - k_min + 1)
    count = cfg.n_k
    while True:
        ks = np.unique(np.rint(np.geomspace(k_min, k_max, count)).astype(np.int64))
        if len(ks) >= wanted:
            return [int(k) for k in ks]
        count += max(1, wanted - len(ks))


def planar_sq_distances(xy: np.ndarray, rows: slice | None = None) -> np.ndarray:
    """Squared Euclidean distances (float32) of the layout's `rows` to every point."""
    points = np.asarray(xy, dtype=np.float32)
    rows = slice(0, len(points)) if rows is None else rows
    dx = np.subtract.outer(points[rows, 0], points[:, 0])
    dy = np.subtract.outer(points[rows, 1], points[:, 1])
    np.multiply(dx, dx, out=dx)
    np.multiply(dy, dy, out=dy)
    dx += dy
    return dx


def _nearest(distance_rows: np.ndarray, row_start: int, k_max: int) -> np.ndarray:
    """Each row's k_max nearest columns (int64) in (distance, index) order, itself excluded."""
    n_rows, n_cols = distance_rows.shape
    keys = pack_keys(distance_rows, 0, n_cols)
    keys[np.arange(n_rows), np.arange(row_start, row_start + n_rows)] = np.iinfo(np.int64).max
    if k_max < n_cols:
        keys.partition(k_max - 1, axis=1)
    nearest = keys[:, :k_max].copy()
    nearest.sort(axis=1)
    nearest &= (1 << index_bits(n_cols)) - 1
    return nearest


def _bucket_counts(high_d: np.ndarray, xy: np.ndarray, rows: slice, bucket_of_position: np.ndarray) -> np.ndarray:
    """Pairs of `rows` per bucket max(bucket_hi, bucket_2d); the last bucket means 'never'."""
    k_max = len(bucket_of_position)
    n_buckets = int(bucket_of_position[-1]) + 2
    n_cols = high_d.shape[1]
    near_hi = _nearest(np.ascontiguousarray(high_d[rows], dtype=np.float32), rows.start, k_max)
    near_2d = _nearest(planar_sq_distances(xy, rows), rows.start, k_max)
    # Flat indices into a rows x N table: plain take/put beat the *_along_axis helpers here.
    row_offset = (np.arange(near_2d.shape[0], dtype=np.int64) * n_cols)[:, None]
    near_hi += row_offset
    near_2d += row_offset
    bucket_2d = np.full(near_2d.shape[0] * n_cols, n_buckets - 1, dtype=np.uint8)
    bucket_2d[near_2d.ravel()] = np.broadcast_to(bucket_of_position, near_2d.shape).ravel()
    pair_bucket = bucket_2d.take(near_hi)
    np.maximum(pair_bucket, bucket_of_position[None, :], out=pair_bucket)
    return np.bincount(pair_bucket.ravel(), minlength=n_buckets)


def _checked_sweep(ks: list[int], n: int) -> np.ndarray:
    sweep = np.asarray(ks, dtype=np.int64)
    if len(sweep) == 0 or np.any(np.diff(sweep) <= 0) or sweep[0] < 1 or sweep[-1] > n - 1:
        raise ValueError(f"ks must be increasing integers in [1, {n - 1}], got {ks!r}")
    if len(sweep) > MAX_SWEEP:
        raise ValueError(f"at most {MAX_SWEEP} k values, got {len(sweep)}")
    return sweep


def mutual_knn_fraction(
    high_d: np.ndarray, xy: np.ndarray, ks: list[int], progress: Progress = no_progress
) -> np.ndarray:
    """m(k) for every k in `ks` (sorted, distinct, 1 <= k <= N-1), float64.

    `high_d` is the N x N high-D distance matrix (float32, >= 0); `xy` the N x 2 layout.
    """
    n = high_d.shape[0]
    if high_d.shape != (n, n):
        raise ValueError(f"high_d must be square, got shape {high_d.shape}")
    if np.shape(xy) != (n, 2):
        raise ValueError(f"xy must be N x 2 with N = {n}, got shape {np.shape(xy)}")
    sweep = _checked_sweep(ks, n)
    # Position p (0-based) of a neighbour order first counts for the k_t with p < k_t.
    bucket_of_position = np.searchsorted(sweep, np.arange(sweep[-1]), side="right").astype(np.uint8)
    chunks = [slice(start, min(start + ROW_CHUNK, n)) for start in range(0, n, ROW_CHUNK)]
    counts = np.zeros(len(sweep) + 1, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=worker_count()) as pool:
        futures = [pool.submit(_bucket_counts, high_d, xy, rows, bucket_of_position) for rows in chunks]
        for done, future in enumerate(futures, start=1):
            counts += future.result()
            progress(done, len(chunks), "mutual kNN")
    shared = np.cumsum(counts[:-1])
    return shared / (n * sweep.astype(np.float64))


def mutual_knn_fraction_blocked(
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    lam: float,
    xy: np.ndarray,
    ks: list[int],
    progress: Progress = no_progress,
) -> np.ndarray:
    """m(k) for every k in `ks`, like `mutual_knn_fraction` but from the codes, never an N x N array.

    Memory: O(nnz of the codes + N) plus O(N) per thread; see pipeline.row_kernel.
    """
    kernel = row_kernel()
    prep = _prepare(codes, activations, lam)
    n = prep.n_rows
    if np.shape(xy) != (n, 2):
        raise ValueError(f"xy must be N x 2 with N = {n}, got shape {np.shape(xy)}")
    sweep = _checked_sweep(ks, n)
    points = np.asarray(xy, dtype=np.float32)
    arguments = (
        row_engine(prep),
        np.ascontiguousarray(points[:, 0]),
        np.ascontiguousarray(points[:, 1]),
        sweep,
        index_bits(n),
    )
    chunks = [(start, min(start + KERNEL_ROWS, n)) for start in range(0, n, KERNEL_ROWS)]
    counts = np.zeros(len(sweep) + 1, dtype=np.int64)
    with ThreadPoolExecutor(max_workers=worker_count()) as pool:
        futures = [pool.submit(kernel.bucket_counts, start, stop, *arguments) for start, stop in chunks]
        for done, future in enumerate(futures, start=1):
            counts += future.result()
            progress(done, len(chunks), "mutual kNN")
    shared = np.cumsum(counts[:-1])
    return shared / (n * sweep.astype(np.float64))


def run(
    cfg: FidelityConfig,
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    xy: np.ndarray,
    *,
    progress: Progress = no_progress,
    distances: np.ndarray | None = None,
) -> FidelityCurve:
    """The mutual-kNN gain curve of layout `xy` against the VISTA distance of codes/activations.

    Memory O(nnz + N) (see the module doc). Given `distances` (the N x N `vista_distance_matrix`
    of the same inputs and lam), ranks from it instead: the same curve.
    """
    points = np.asarray(xy, dtype=np.float32)
    n = points.shape[0]
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"xy must be N x 2, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("xy must be finite")
    ks = k_sweep(n, cfg)
    if distances is None:
        m = mutual_knn_fraction_blocked(codes, activations, cfg.lam, points, ks, progress)
    else:
        if distances.shape != (n, n):
            raise ValueError(f"distances must be {n} x {n}, got shape {distances.shape}")
        high_d = np.asarray(distances, dtype=np.float32)
        if np.signbit(high_d).any() or not np.isfinite(high_d).all():
            raise ValueError("distances must be finite and >= +0.0")
        m = mutual_knn_fraction(high_d, points, ks, progress)
    gain = m - np.asarray(ks, dtype=np.float64) / (n - 1)
    return FidelityCurve(
        n=n,
        k=ks,
        k_percent=[100.0 * k / n for k in ks],
        m=[float(v) for v in m],
        gain=[float(v) for v in gain],
    )
