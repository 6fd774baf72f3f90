"""numba kernels over rows of the VISTA distance: exact kNN lists and the fidelity sweep's buckets.

Imported only through `pipeline.distance.row_kernel`, after `pipeline.jit_cache.configure_cache_dir`,
so the compiled code is cached on disk (cache=True) like UMAP's.

`nearest_keys` (for `vista_knn`) does step 1 below, then a partition of the row's keys.
`bucket_counts` (the fidelity sweep) takes one row i at a time, with O(N) scratch per thread:

1. High-D distances to every j, the very float32 numbers of `vista_distance_matrix`: the
   cosine similarity accumulates over i's latents in ascending order, adding v_il * v_jl for
   every j on latent l's posting list (the rows of the CSC copy). That is the sum scipy's
   sparse x dense product forms, term by term in the same order, float32 multiply then add;
   then 1 - s, clipped to [0, 2], plus |scaled_i - scaled_j|, as numpy does it. Latents on
   many rows (the mapped latent is on all of them) are added from a dense column instead, in
   one contiguous pass (v * 0 = 0 changes no sum); `pipeline.distance.row_engine` picks them.
2. Planar distances to every j: float32 dx*dx + dy*dy, as `planar_sq_distances`.
3. In each space, every j's bucket: the first swept k_t with rank(j) < k_t, ranks by
   (distance, index). A histogram of the distances over linear bins (monotone in the distance,
   so a bin holds a contiguous stretch of the order) finds the bin of each k_t; a bin holding no
   threshold gives its bucket to all its members at once, and only the members of threshold
   bins are ranked exactly: each bin's (distance bits, index) keys are placed at the bin's first
   rank and sorted there, on their own (a few dozen keys: insertion sort). The high-D bins span
   the range of a sample of the row (every N/SAMPLE-th j), clamped at both ends, so values
   outside it share the end bins; the planar ones [0, the farthest corner of the layout's box].
   Bins decide only how much is sorted, never a rank: any monotone binning gives the same curve.
4. count[max(bucket_hi, bucket_2d)] += 1 over j != i; the last bucket means "never". One pass
   stores max(lut_hi, lut_2d) per j (UNRESOLVED = 255 beats every bucket), a second tallies it
   and lists the j with an unresolved side; only those go to the exact ranking.
"""

from __future__ import annotations

import numba
import numpy as np

N_BINS = 4096
"""Histogram bins per row and space, at least: a few thousand keep the threshold bins small and fit
in L1/L2 (and a bin number in 16 bits)."""
MAX_BINS = 8192
"""At most this many bins: `_bin_count` doubles N_BINS while a bin still holds two rows on average.
At N = 20,000 twice the bins halve the keys sorted, a twentieth of the row's time; at N = 4,000
they cost a tenth more."""
UNRESOLVED = 255
"""lut mark of a threshold bin: its members need their exact rank (MAX_SWEEP < 255 buckets)."""
SMALL_SORT = 64
"""Threshold bins up to this many members are sorted by insertion; larger ones by numpy's sort."""
SAMPLE = 1024
"""About this many distances of a row set its high-D bins' range (the pass for the exact range cost
6 us of a row's ~150 at N = 20,000)."""


@numba.njit(cache=True, nogil=True, fastmath=True)
def _bounds(values: np.ndarray) -> tuple[float, float]:
    """The smallest and largest value (fastmath lets the reductions vectorise; neither depends on order)."""
    smallest = values[0]
    largest = values[0]
    for value in values:
        smallest = min(smallest, value)
        largest = max(largest, value)
    return smallest, largest


@numba.njit(cache=True, nogil=True)
def _bin_count(n: int) -> int:
    """Bins per row and space for rows of n: N_BINS, doubled up to MAX_BINS while at most n / 2."""
    bins = N_BINS
    while bins * 2 <= min(n // 2, MAX_BINS):
        bins *= 2
    return bins


FLOAT32_MAX = float(np.finfo(np.float32).max)


@numba.njit(cache=True, nogil=True)
def _scale(n_bins: int, lowest: float, highest: float) -> np.float32:
    """Bins per unit of distance: n_bins linear bins over [lowest, highest].

    At most float32's largest number: a range of subnormal width (a layout a trillionth of a
    trillionth wide) would make it infinite, and then 0 * inf a NaN bin. Clamped, such a row
    falls into the first bins, ranked exactly there.
    """
    if highest <= lowest:
        return np.float32(0.0)
    return np.float32(min((n_bins - 1) / (highest - lowest), FLOAT32_MAX))


@numba.njit(cache=True, nogil=True)
def _histogram(
    distances: np.ndarray,
    self_row: int,
    ks: np.ndarray,
    bins: np.ndarray,
    counts: np.ndarray,
    hist: np.ndarray,
    lut: np.ndarray,
    end: np.ndarray,
    runs: np.ndarray,
) -> int:
    """`_count` over bins linear in the distance across the range [min, max] of a sample of the row.

    Clamped (in float32, before the conversion) at both ends: still monotone in the distance.
    The row itself should hold a value of the row (it may be sampled); `_count` counts it out.
    """
    lowest, highest = _bounds(distances[:: max(1, distances.shape[0] // SAMPLE)])
    scale = _scale(hist.shape[0], lowest, highest)
    lowest = np.float32(lowest)
    zero = np.float32(0.0)
    top = np.float32(hist.shape[0] - 1)
    for j in range(distances.shape[0]):  # a loop of its own: it vectorises
        place = (distances[j] - lowest) * scale
        place = place if place > zero else zero
        place = place if place < top else top
        bins[j] = np.int32(place)
    return _count(bins, self_row, ks, counts, hist, lut, end, runs)


@numba.njit(cache=True, nogil=True)
def _count(
    bins: np.ndarray,
    self_row: int,
    ks: np.ndarray,
    counts: np.ndarray,
    hist: np.ndarray,
    lut: np.ndarray,
    end: np.ndarray,
    runs: np.ndarray,
) -> int:
    """hist[b]: how many j != self_row come before bin b; lut[b]: bin b's bucket (`counts`: scratch).

    `bins` must be monotone in the distance (clamping at either end keeps that), so a bin holds
    a stretch of the (distance, index) order. Its members share a bucket (lut) unless a swept k
    falls strictly inside its ranks (lut = UNRESOLVED). The scattered increments have a loop of
    their own, apart from the bins' stores (a third faster than one loop doing both), into one
    histogram: a 16 KB table (4,096 bins) that stays in L1 beat four interleaved ones (64 KB) by
    a tenth of the whole sweep, though members of one bin in a row then wait on each other's
    store. The lut is filled a stretch of bins per k (a binary search for the bin of each k):
    one loop over the bins that also tracked the next k was a twentieth of the row's time slower.
    Returns how many threshold bins there are: runs[:that] lists them in order, and end[b] =
    hist[b] for each, where `_rank_runs`' keys go next.
    """
    n_bins = hist.shape[0]
    n_k = ks.shape[0]
    counts[:] = 0
    for j in range(bins.shape[0]):
        counts[bins[j]] += 1
    counts[bins[self_row]] -= 1
    before = 0
    for b in range(n_bins):
        hist[b] = before
        before += counts[b]
    # Bins [first, stop) start before ks[t] and at or after ks[t-1]: bucket t. The last of them
    # holds ranks on both sides of ks[t] (a threshold bin) unless it ends exactly at ks[t].
    first = 0
    n_runs = 0
    for t in range(n_k):
        k = ks[t]
        stop = np.searchsorted(hist, k)  # the first bin with hist >= k (hist[0] = 0 < k)
        lut[first:stop] = t
        after = hist[stop] if stop < n_bins else before
        if after > k and (n_runs == 0 or runs[n_runs - 1] != stop - 1):  # two k in one bin: one run
            lut[stop - 1] = UNRESOLVED
            end[stop - 1] = hist[stop - 1]
            runs[n_runs] = stop - 1
            n_runs += 1
        first = stop
    lut[first:] = n_k
    return n_runs


@numba.njit(cache=True, nogil=True)
def _sort_small(keys: np.ndarray) -> None:
    """Sort in place: insertion sort for the few keys a bin mostly holds (few mispredicted branches)."""
    if keys.shape[0] > SMALL_SORT:
        keys.sort()
        return
    for p in range(1, keys.shape[0]):
        key = keys[p]
        q = p - 1
        while q >= 0 and keys[q] > key:
            keys[q + 1] = keys[q]
            q -= 1
        keys[q + 1] = key


@numba.njit(cache=True, nogil=True)
def _rank_runs(
    ranked: np.ndarray,
    runs: np.ndarray,
    hist: np.ndarray,
    end: np.ndarray,
    ks: np.ndarray,
    mask: int,
    buckets: np.ndarray,
) -> None:
    """Exact buckets of the members of threshold bins, from their (distance bits, j) keys.

    The keys of threshold bin b were placed (in any order) at ranked[hist[b]:end[b]], the bin's
    ranks; each such stretch is sorted on its own, so a key's place in `ranked` is its rank.
    """
    n_k = ks.shape[0]
    for run in range(runs.shape[0]):
        b = runs[run]
        start = hist[b]
        stop = end[b]
        _sort_small(ranked[start:stop])
        t = 0
        for rank in range(start, stop):
            while t < n_k and ks[t] <= rank:
                t += 1
            buckets[ranked[rank] & mask] = t


@numba.njit(cache=True, nogil=True)
def _distance_row(i: int, engine: tuple, out: np.ndarray) -> None:
    """out[j] = VISTA distance of rows i and j (float32, as `vista_distance_matrix`; see the module doc).

    `engine` is `pipeline.distance.row_engine`'s tuple: the codes by row (indptr, indices, data),
    by latent (indptr, rows, data), the dense slot of each latent, the dense columns, and the
    scaled activations.
    """
    (
        unit_indptr,
        unit_indices,
        unit_data,
        postings_indptr,
        postings_rows,
        postings_data,
        dense_slot,
        dense_columns,
        scaled_activation,
    ) = engine
    n = out.shape[0]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    two = np.float32(2.0)
    out[:] = zero  # first the cosine similarity
    for p in range(unit_indptr[i], unit_indptr[i + 1]):
        latent = unit_indices[p]
        value = unit_data[p]
        slot = dense_slot[latent]
        if slot >= 0:
            column = dense_columns[slot]
            for r in range(n):
                out[r] += value * column[r]
        else:
            for q in range(postings_indptr[latent], postings_indptr[latent + 1]):
                out[np.uint64(postings_rows[q])] += value * postings_data[q]  # unsigned: no wraparound check
    scaled_i = scaled_activation[i]
    for j in range(n):
        out[j] = min(max(one - out[j], zero), two) + abs(scaled_i - scaled_activation[j])


@numba.njit(cache=True, nogil=True)
def nearest_keys(
    row_start: int,
    row_stop: int,
    engine: tuple,
    k: int,
    index_bits: int,
) -> np.ndarray:
    """Each row's k nearest as sorted `pack_keys` keys (distance bits, j), the row itself excluded."""
    n = engine[0].shape[0] - 1
    distances = np.empty(n, dtype=np.float32)
    bits = distances.view(np.int32)  # non-negative floats order like their bit patterns
    keys = np.empty(n, dtype=np.int64)
    best = np.empty((row_stop - row_start, k), dtype=np.int64)
    for i in range(row_start, row_stop):
        _distance_row(i, engine, distances)
        for j in range(n):
            keys[j] = (np.int64(bits[j]) << index_bits) | j
        keys[i] = np.iinfo(np.int64).max
        nearest = np.partition(keys, k - 1)[:k] if k < n else keys.copy()
        best[i - row_start] = np.sort(nearest)
    return best


@numba.njit(cache=True, nogil=True)
def bucket_counts(
    row_start: int,
    row_stop: int,
    engine: tuple,
    x: np.ndarray,
    y: np.ndarray,
    ks: np.ndarray,
    index_bits: int,
    n_bins: int = 0,
) -> np.ndarray:
    """Pairs (i, j), i in [row_start, row_stop), j != i, per bucket max(bucket_hi, bucket_2d).

    `engine`: see `_distance_row`. `n_bins`: histogram bins per space (0: `_bin_count`); they
    change the time, never the counts.
    """
    n = engine[0].shape[0] - 1
    n_k = ks.shape[0]
    counts = np.zeros((4, n_k + 1), dtype=np.int64)
    tally = np.zeros((4, UNRESOLVED + 1), dtype=np.int64)  # per max(lut_hi, lut_2d), four interleaved
    combined = np.empty(n, dtype=np.uint8)
    high_d = np.empty(n, dtype=np.float32)  # first the cosine similarity, then the distance
    planar = np.empty(n, dtype=np.float32)
    bins_hi = np.empty(n, dtype=np.uint16)
    bins_2d = np.empty(n, dtype=np.uint16)
    bucket_hi = np.empty(n, dtype=np.uint8)
    bucket_2d = np.empty(n, dtype=np.uint8)
    n_bins = n_bins if n_bins > 0 else _bin_count(n)
    per_bin = np.empty(n_bins, dtype=np.int32)
    hist_hi = np.empty(n_bins, dtype=np.int64)
    hist_2d = np.empty(n_bins, dtype=np.int64)
    lut_hi = np.empty(n_bins, dtype=np.uint8)
    lut_2d = np.empty(n_bins, dtype=np.uint8)
    pending = np.empty(n, dtype=np.int64)
    ranked_hi = np.empty(n, dtype=np.int64)
    ranked_2d = np.empty(n, dtype=np.int64)
    end_hi = np.empty(n_bins, dtype=np.int64)
    end_2d = np.empty(n_bins, dtype=np.int64)
    runs_hi = np.empty(n_k, dtype=np.int64)
    runs_2d = np.empty(n_k, dtype=np.int64)
    mask = (np.int64(1) << index_bits) - 1
    high_bits = high_d.view(np.int32)  # non-negative floats order like their bit patterns
    planar_bits = planar.view(np.int32)
    x_low, x_high = _bounds(x)
    y_low, y_high = _bounds(y)
    top = np.int32(n_bins - 1)
    for i in range(row_start, row_stop):
        _distance_row(i, engine, high_d)
        high_d[i] = high_d[(i + 1) % n]  # the row itself: never ranked; a value of the row keeps the range
        n_runs_hi = _histogram(high_d, i, ks, bins_hi, per_bin, hist_hi, lut_hi, end_hi, runs_hi)
        # Planar bins over [0, the farthest corner of the layout's box]: no pass for the row's range.
        x_i = x[i]
        y_i = y[i]
        far_x = max(x_i - x_low, x_high - x_i)
        far_y = max(y_i - y_low, y_high - y_i)
        scale = _scale(n_bins, 0.0, far_x * far_x + far_y * far_y)
        for j in range(n):
            dx = x_i - x[j]
            dy = y_i - y[j]
            distance = dx * dx + dy * dy
            planar[j] = distance
            bins_2d[j] = min(np.int32(distance * scale), top)
        n_runs_2d = _count(bins_2d, i, ks, per_bin, hist_2d, lut_2d, end_2d, runs_2d)
        # Two passes, not one: a store per j, then the tally and the list of unresolved j without a
        # branch, were faster than one loop that branches on UNRESOLVED (a third of the sweep off).
        for j in range(n):
            combined[j] = max(lut_hi[bins_hi[j]], lut_2d[bins_2d[j]])
        n_pending = 0
        for j in range(n):
            b = combined[j]
            tally[j & 3, b] += 1
            pending[n_pending] = j
            n_pending += b == UNRESOLVED
        kept = 0
        for position in range(n_pending):
            j = pending[position]
            if j == i:
                continue
            pending[kept] = j
            kept += 1
            b = bins_hi[j]
            if lut_hi[b] == UNRESOLVED:
                ranked_hi[end_hi[b]] = (np.int64(high_bits[j]) << index_bits) | j
                end_hi[b] += 1
            b = bins_2d[j]
            if lut_2d[b] == UNRESOLVED:
                ranked_2d[end_2d[b]] = (np.int64(planar_bits[j]) << index_bits) | j
                end_2d[b] += 1
        n_pending = kept
        _rank_runs(ranked_hi, runs_hi[:n_runs_hi], hist_hi, end_hi, ks, mask, bucket_hi)
        _rank_runs(ranked_2d, runs_2d[:n_runs_2d], hist_2d, end_2d, ks, mask, bucket_2d)
        for position in range(n_pending):
            j = pending[position]
            b_hi = lut_hi[bins_hi[j]]
            b_2d = lut_2d[bins_2d[j]]
            if b_hi == UNRESOLVED:
                b_hi = bucket_hi[j]
            if b_2d == UNRESOLVED:
                b_2d = bucket_2d[j]
            counts[0, max(b_hi, b_2d)] += 1
        # The row itself, when its bins were resolved, was tallied above.
        b_hi = lut_hi[bins_hi[i]]
        b_2d = lut_2d[bins_2d[i]]
        if b_hi != UNRESOLVED and b_2d != UNRESOLVED:
            counts[0, max(b_hi, b_2d)] -= 1
    return counts.sum(axis=0) + tally[:, : n_k + 1].sum(axis=0)
