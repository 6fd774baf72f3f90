"""VISTA's distance between contexts: cosine distance of SAE codes plus the gap along the latent.

    d(i, j) = (1 - cos(s_i, s_j)) + lam * |a_i - a_j| / max(a)

`s_i` is context i's code row, `a_i` the latent's activation on its focus token. A row whose
code is all zero has cosine distance 1 to every other row. `max(a)` is the largest |a| (the
same thing for the non-negative activations of an SAE latent); when every activation is 0
the activation term vanishes. Cosine distances are clipped to [0, 2] against rounding.

The codes' rows are L2-normalised once and the latents no row uses are dropped (`_prepare`).
`vista_distance_matrix` computes square blocks of the similarity matrix as a sparse x dense
product against a densified block of columns; only the blocks on and above the diagonal, the
others are their transposes, so the matrix is exactly symmetric. `vista_knn` (and the fidelity
sweep) never hold N x N: numba kernels (pipeline.row_kernel) form one row at a time from the
codes by latent, adding the very terms scipy's product adds, in its order, so every entry is
the same float32 number as in the matrix (the tests check it bit for bit).

Neighbour order everywhere is by (distance, index): among equal distances the lower row
index comes first. `pack_keys` makes that order a plain integer sort.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import scipy.sparse as sp

from vista_tui.mapdata import SparseCodes

DENSE_BLOCK_BYTES = 128 * 2**20
"""Budget for one densified block of code columns (n_used_latents x block floats)."""
MAX_WORKERS = 4
"""At most this many threads, whatever the machine has."""
KNN_CHUNK_ROWS = 256
"""Rows per task of `vista_knn`."""


@dataclass(frozen=True)
class _Prepared:
    """Codes and activations in the form the block engine multiplies."""

    unit: sp.csr_matrix
    """float32 rows L2-normalised (all-zero rows stay zero), columns = used latents only."""
    scaled_activation: np.ndarray
    """float32 lam * a / max|a|: the activation term is |scaled_i - scaled_j|."""

    @property
    def n_rows(self) -> int:
        return int(self.unit.shape[0])


def _as_csr(codes: SparseCodes | np.ndarray | sp.spmatrix) -> sp.csr_matrix:
    if isinstance(codes, SparseCodes):
        return sp.csr_matrix(
            (
                np.asarray(codes.values, dtype=np.float32),
                np.asarray(codes.indices),
                np.asarray(codes.indptr),
            ),
            shape=(codes.n_rows, codes.n_latents),
        )
    if sp.issparse(codes):
        return sp.csr_matrix(codes, dtype=np.float32)
    dense = np.asarray(codes, dtype=np.float32)
    if dense.ndim != 2:
        raise ValueError(f"codes must be 2-D (rows x latents), got shape {dense.shape}")
    return sp.csr_matrix(dense)


def _prepare(codes: SparseCodes | np.ndarray | sp.spmatrix, activations: np.ndarray, lam: float) -> _Prepared:
    matrix = _as_csr(codes)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    n_rows = int(matrix.shape[0])
    activation = np.asarray(activations, dtype=np.float64).reshape(-1)
    if activation.shape[0] != n_rows:
        raise ValueError(f"activations has {activation.shape[0]} entries but codes have {n_rows} rows")
    if not np.all(np.isfinite(activation)):
        raise ValueError("activations must be finite")
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError("codes must be finite")
    if not (np.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")

    # Drop latents no row uses, so a densified block is n_used x block, not n_latents x block.
    # (np.unique's return_inverse would sort all nnz indices: a mask and a running count are O(nnz).)
    present = np.zeros(matrix.shape[1], dtype=bool)
    present[matrix.indices] = True
    used = np.flatnonzero(present)
    remapped = (np.cumsum(present, dtype=np.int64) - 1)[matrix.indices]
    row_of = np.repeat(np.arange(n_rows), np.diff(matrix.indptr))
    sq_norm = np.bincount(row_of, weights=matrix.data.astype(np.float64) ** 2, minlength=n_rows)
    inv_norm = np.zeros(n_rows)
    nonzero = sq_norm > 0
    inv_norm[nonzero] = 1.0 / np.sqrt(sq_norm[nonzero])
    unit = sp.csr_matrix(
        ((matrix.data * inv_norm[row_of]).astype(np.float32), remapped.astype(np.int32), matrix.indptr.copy()),
        shape=(n_rows, max(len(used), 1)),
    )
    scale = float(np.max(np.abs(activation))) if n_rows else 0.0
    scaled = activation * (lam / scale) if scale > 0 else np.zeros(n_rows)
    return _Prepared(unit=unit, scaled_activation=scaled.astype(np.float32))


def _block_size(prep: _Prepared, block: int | None) -> int:
    if block is None:
        by_memory = DENSE_BLOCK_BYTES // (4 * max(prep.unit.shape[1], 1))
        block = int(np.clip(by_memory, 64, 512))
        # Even blocks: a ragged last one costs a copy of the densified columns.
        n_blocks = max(1, -(-prep.n_rows // block))
        block = max(1, -(-prep.n_rows // n_blocks))
    if block < 1:
        raise ValueError(f"block size must be >= 1, got {block}")
    return block


def _distance_block(prep: _Prepared, rows: slice, cols: slice, dense_t: np.ndarray) -> np.ndarray:
    """VISTA distances of `rows` against `cols` (float32, C-contiguous)."""
    block = np.asarray(prep.unit[rows] @ dense_t, dtype=np.float32)
    np.subtract(np.float32(1.0), block, out=block)
    np.clip(block, 0.0, 2.0, out=block)
    gap = np.subtract.outer(prep.scaled_activation[rows], prep.scaled_activation[cols])
    np.abs(gap, out=gap)
    block += gap
    return block


def worker_count() -> int:
    """Threads for the heavy loops: scipy's sparse products and numpy's sorts release the GIL."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(available, MAX_WORKERS))


def _upper_block(prep: _Prepared, rows: slice, cols: slice, dense_t: np.ndarray) -> tuple[slice, slice, np.ndarray]:
    distances = _distance_block(prep, rows, cols, dense_t)
    if rows.start == cols.start:
        distances += distances.T
        distances *= np.float32(0.5)
        np.fill_diagonal(distances, 0.0)
    return rows, cols, distances


def _iter_upper_blocks(prep: _Prepared, block: int) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Blocks (rows, cols, distances) with rows.start <= cols.start covering the upper triangle.

    Diagonal blocks are made exactly symmetric, with a zero diagonal. Blocks are computed on a
    few threads, a bounded number ahead of the consumer, and yielded in a fixed order.
    """
    n_rows = prep.n_rows
    starts = range(0, n_rows, block)
    workers = worker_count()
    # unit[cols].T densified, in two reused buffers: a fresh n_used x block array per column
    # block costs more in zeroing and page faults than the product it feeds.
    buffers = [np.zeros((prep.unit.shape[1], block), dtype=np.float32) for _ in range(min(2, len(starts)))]
    filled: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(buffers)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[int, Future[tuple[slice, slice, np.ndarray]]]] = deque()
        for col_block, col_start in enumerate(starts):
            cols = slice(col_start, min(col_start + block, n_rows))
            slot = col_block % len(buffers)
            while pending and pending[0][0] <= col_block - len(buffers):  # the buffer's last user
                yield pending.popleft()[1].result()
            dense_t = buffers[slot]
            if filled[slot] is not None:
                dense_t[filled[slot]] = 0.0
            part = prep.unit[cols]
            filled[slot] = (part.indices, np.repeat(np.arange(part.shape[0]), np.diff(part.indptr)))
            dense_t[filled[slot]] = part.data
            # A ragged last block: one contiguous copy here, not one per product in scipy.
            view = dense_t if part.shape[0] == block else np.ascontiguousarray(dense_t[:, : part.shape[0]])
            for row_start in starts:
                if row_start > col_start:
                    break
                rows = slice(row_start, min(row_start + block, n_rows))
                pending.append((col_block, pool.submit(_upper_block, prep, rows, cols, view)))
                while len(pending) > 2 * workers:
                    yield pending.popleft()[1].result()
        while pending:
            yield pending.popleft()[1].result()


def vista_distance_matrix(
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    lam: float = 1.0,
    *,
    block: int | None = None,
) -> np.ndarray:
    """The full N x N VISTA distance matrix: float32, exactly symmetric, zero diagonal.

    Memory is the N^2 * 4 bytes of the result plus one block of densified columns.
    """
    prep = _prepare(codes, activations, lam)
    n_rows = prep.n_rows
    distances = np.empty((n_rows, n_rows), dtype=np.float32)
    for rows, cols, values in _iter_upper_blocks(prep, _block_size(prep, block)):
        distances[rows, cols] = values
        if rows.start != cols.start:
            distances[cols, rows] = values.T
    return distances


def index_bits(n: int) -> int:
    """How many low bits `pack_keys` reserves for a column index below n."""
    return max(int(n - 1).bit_length(), 1)


def pack_keys(distances: np.ndarray, col_offset: int = 0, n_cols_total: int | None = None) -> np.ndarray:
    """int64 keys whose order is (distance, column index): sort them to rank neighbours exactly.

    `distances` must be float32 and >= +0.0 (a non-negative float's bit pattern orders like the
    float). The column index (plus `col_offset`) sits in the low `index_bits(n_cols_total)` bits.
    """
    if distances.dtype != np.float32:
        raise ValueError(f"pack_keys needs float32 distances, got {distances.dtype}")
    n_total = distances.shape[-1] + col_offset if n_cols_total is None else n_cols_total
    shift = index_bits(n_total)
    if shift > 32:
        raise ValueError(f"too many columns to pack: {n_total}")
    keys = np.left_shift(distances.view(np.int32), shift, dtype=np.int64)
    keys |= np.arange(col_offset, col_offset + distances.shape[-1], dtype=np.int64)
    return keys


def unpack_keys(keys: np.ndarray, n_cols_total: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `pack_keys`: (column indices int32, distances float32)."""
    shift = index_bits(n_cols_total)
    indices = (keys & ((1 << shift) - 1)).astype(np.int32)
    distances = (keys >> shift).astype(np.int32).view(np.float32)
    return indices, distances


def knn_from_matrix(distances: np.ndarray, k: int, chunk_rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours from a full distance matrix (float32, >= 0), the row excluded.

    Same output and tie rule as `vista_knn`: (indices int32 N x k, distances float32 N x k),
    rows sorted by (distance, index).
    """
    n_rows = distances.shape[0]
    if distances.shape != (n_rows, n_rows) or distances.dtype != np.float32:
        raise ValueError(f"distances must be a square float32 matrix, got {distances.shape} {distances.dtype}")
    if not 1 <= k <= n_rows - 1:
        raise ValueError(f"k must be between 1 and N-1 = {n_rows - 1}, got {k}")
    best = np.empty((n_rows, k), dtype=np.int64)
    for start in range(0, n_rows, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n_rows))
        keys = pack_keys(np.ascontiguousarray(distances[rows]), 0, n_rows)
        keys[np.arange(keys.shape[0]), np.arange(rows.start, rows.stop)] = np.iinfo(np.int64).max
        if k < n_rows - 1:
            keys.partition(k - 1, axis=1)
        best[rows] = keys[:, :k]
    best.sort(axis=1)
    return unpack_keys(best, n_rows)


DENSE_SHARE = 8
"""Row kernels add latents on at least 1/DENSE_SHARE of the rows from dense columns (at most
DENSE_SHARE * nnz / N of them: at most DENSE_SHARE times the codes' own memory)."""


def row_kernel() -> ModuleType:
    """pipeline.row_kernel, its numba code cached on disk (numba takes a second to import: only callers pay)."""
    from pipeline.jit_cache import configure_cache_dir

    configure_cache_dir()  # before numba is imported
    from pipeline import row_kernel as kernel

    return kernel


def row_engine(prep: _Prepared) -> tuple[np.ndarray, ...]:
    """The row kernels' `engine` argument: the codes by row and by latent, the dense columns, the activations."""
    unit = prep.unit
    n_rows = prep.n_rows
    postings = unit.tocsc()  # by latent: the rows on each latent, in row order
    postings.sort_indices()
    dense = np.flatnonzero(np.diff(postings.indptr) * DENSE_SHARE >= n_rows)
    dense_slot = np.full(unit.shape[1], -1, dtype=np.int64)
    dense_slot[dense] = np.arange(len(dense))
    dense_columns = np.zeros((len(dense), n_rows), dtype=np.float32)
    for slot, latent in enumerate(dense):
        window = slice(postings.indptr[latent], postings.indptr[latent + 1])
        dense_columns[slot, postings.indices[window]] = postings.data[window]
    return (
        unit.indptr.astype(np.int64),
        unit.indices.astype(np.int64),
        unit.data,
        postings.indptr.astype(np.int64),
        postings.indices.astype(np.int64),
        postings.data,
        dense_slot,
        dense_columns,
        prep.scaled_activation,
    )


def vista_knn(
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    lam: float,
    k: int,
    chunk_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of every row by VISTA distance, the row itself excluded.

    Returns (indices int32 N x k, distances float32 N x k), each row sorted by (distance, index).
    One row at a time on every core (pipeline.row_kernel): memory O(nnz + N * k), and the
    distances equal those of `vista_distance_matrix` bit for bit.
    """
    prep = _prepare(codes, activations, lam)
    n_rows = prep.n_rows
    if not 1 <= k <= n_rows - 1:
        raise ValueError(f"k must be between 1 and N-1 = {n_rows - 1}, got {k}")
    chunk = chunk_rows or KNN_CHUNK_ROWS
    if chunk < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk}")
    kernel = row_kernel()
    arguments = (row_engine(prep), k, index_bits(n_rows))
    with ThreadPoolExecutor(max_workers=worker_count()) as pool:
        parts = pool.map(
            lambda start: kernel.nearest_keys(start, min(start + chunk, n_rows), *arguments), range(0, n_rows, chunk)
        )
        best = np.concatenate(list(parts))
    return unpack_keys(best, n_rows)
