"""The one-to-one matching of two SAEs' latents that maximises the total decoder cosine (Hungarian).

Two ways, by size:

- **dense** (m x n <= `DENSE_LIMIT`, 2^24 cosines: 64 MB as float32): the whole cosine matrix and
  `scipy.optimize.linear_sum_assignment(maximize=True)`. Exact.
- **top-k candidates** (wider pairs, e.g. 16k x 16k): the matrix is never whole. Each latent of A
  keeps its `candidates` best latents of B and each latent of B its best of A (blocked,
  `topk_cosines`); the union of those edges is a sparse bipartite graph, solved exactly by
  `scipy.sparse.csgraph.min_weight_full_bipartite_matching` (LAPJVsp) on the weights 2 - cosine
  (positive, so no edge weighs 0, which sparse matrices cannot tell from no edge). The result is
  the best matching among the candidate edges. Against the best over the full matrix it is checked
  with an upper bound that needs no matrix: no matching beats the sum, over the smaller side, of
  each latent's best cosine. When the matching reaches that bound it is exact (`exact=True`);
  otherwise the note says by how much, at most, its mean cosine falls short of the exact one.
  When the candidate graph has no matching covering the smaller side, the largest one is taken
  (dummy edges, so "largest" comes before "heaviest"), and the latents it leaves out are matched
  among themselves densely when that block is small, else get -1.

Rows are normalised here (callers pass raw decoder rows); the solver sees float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.match.cosine import BUDGET, topk_cosines, unit_rows

DENSE_LIMIT = 1 << 24
"""Largest m x n solved on the full cosine matrix (2^24: 2k x 8k; 64 MB float32, 128 MB for the solver)."""
CANDIDATES = 32
"""Candidate partners kept per latent, in each direction, when the matrix is too big to hold."""
EXACT_TOLERANCE = 1e-6
"""Mean cosine by which a sparse matching may miss the upper bound and still count as exact (float32 sums)."""

Neighbours = tuple[np.ndarray, np.ndarray]
"""(indices (m, k) int64, cosines (m, k) float32), best first, as `topk_cosines` returns them."""


@dataclass(frozen=True)
class Assignment:
    """A one-to-one matching of A's latents to B's, and how it was found."""

    partner: np.ndarray
    """(m,) int64: each latent of A's partner in B, -1 when it has none."""
    cosine: np.ndarray
    """(m,) float32: the partner's decoder cosine, NaN when none."""
    method: str
    """"dense" or "top-K candidates" (with " + dense leftovers" when some latents were matched outside them)."""
    exact: bool
    """Whether this is a maximum-total-cosine matching over the full matrix (proved, not assumed)."""
    note: str
    """One line: why it is exact, or how far from exact it can be."""
    total: float
    """Sum of the matched cosines."""
    upper_bound: float
    """No matching of min(m, n) pairs sums to more (sum of the smaller side's best cosines; the
    dense path's own optimum)."""

    gap: float
    """(upper_bound - total) / min(m, n): how much higher the exact matching's mean cosine can be, at most."""

    @property
    def n_matched(self) -> int:
        return int((self.partner >= 0).sum())


def best_sum(best: np.ndarray, pairs: int) -> float:
    """The largest sum of `pairs` of the given best cosines: what `pairs` matched latents can reach at most."""
    if pairs <= 0:
        return 0.0
    return float(np.sort(best.astype(np.float64))[::-1][:pairs].sum())


def dense_assignment(a: Any, b: Any) -> Assignment:
    """The exact matching on the full (m, n) cosine matrix: for m x n up to `DENSE_LIMIT`."""
    import torch  # heavy; the weights are torch tensors
    from scipy.optimize import linear_sum_assignment

    with torch.inference_mode():
        sims = (unit_rows(a) @ unit_rows(b).T).cpu().numpy().astype(np.float64)
    rows, cols = linear_sum_assignment(sims, maximize=True)
    partner = np.full(sims.shape[0], -1, dtype=np.int64)
    cosine = np.full(sims.shape[0], np.nan, dtype=np.float32)
    partner[rows] = cols
    cosine[rows] = sims[rows, cols]
    total = float(sims[rows, cols].sum())
    m, n = sims.shape
    return Assignment(
        partner=partner,
        cosine=cosine,
        method="dense",
        exact=True,
        note=f"exact: linear_sum_assignment (maximize) on the full {m}x{n} decoder-cosine matrix",
        total=total,
        upper_bound=total,
        gap=0.0,
    )


def sparse_assignment(
    a: Any,
    b: Any,
    forward: Neighbours,
    backward: Neighbours,
    *,
    dense_limit: int = DENSE_LIMIT,
) -> Assignment:
    """The best matching among candidate edges: `forward` holds each latent of A's best latents of B,
    `backward` each latent of B's best of A (both from `topk_cosines`, any k). See the module docstring."""
    m, n = forward[0].shape[0], backward[0].shape[0]
    candidates = max(forward[0].shape[1], backward[0].shape[1])
    rows = np.concatenate([np.repeat(np.arange(m), forward[0].shape[1]), backward[0].ravel()])
    cols = np.concatenate([forward[0].ravel(), np.repeat(np.arange(n), backward[0].shape[1])])
    cos = np.concatenate([forward[1].ravel(), backward[1].ravel()]).astype(np.float64)
    # An edge found from both sides once (csr would sum duplicates).
    _, first = np.unique(rows * n + cols, return_index=True)
    rows, cols, cos = rows[first], cols[first], cos[first]
    transposed = m > n  # the solver's rows are the smaller side
    if transposed:
        rows, cols = cols, rows
    p, q = (n, m) if transposed else (m, n)
    col_of = _solve(rows, cols, cos, p, q)
    leftover = np.flatnonzero(col_of < 0)
    method = f"top-{candidates} candidates"
    if len(leftover) > 0:
        free = np.setdiff1d(np.arange(q), col_of[col_of >= 0])
        if len(leftover) * len(free) <= dense_limit:
            a_rows, b_rows = (b, a) if transposed else (a, b)
            sub = dense_assignment(_rows(a_rows, leftover), _rows(b_rows, free))
            col_of[leftover] = np.where(sub.partner >= 0, free[np.maximum(sub.partner, 0)], -1)
            method += " + dense leftovers"
    partner = np.full(m, -1, dtype=np.int64)
    matched = np.flatnonzero(col_of >= 0)
    if transposed:
        partner[col_of[matched]] = matched
    else:
        partner[matched] = col_of[matched]
    cosine = _pair_cosines(a, b, partner)
    total = float(np.nansum(cosine.astype(np.float64)))
    pairs = min(m, n)
    bound = min(best_sum(forward[1][:, 0], pairs), best_sum(backward[1][:, 0], pairs))
    unmatched = int((col_of < 0).sum())
    gap = max(0.0, bound - total) / max(1, pairs)
    # With every latent of one side a candidate of each of the other, the graph is the full matrix.
    complete = forward[0].shape[1] >= n or backward[0].shape[1] >= m
    exact = unmatched == 0 and (complete or gap <= EXACT_TOLERANCE)
    if exact and complete:
        note = f"exact: every latent's top-{candidates} candidates are all of the other SAE (the full matrix)"
    elif exact:
        note = (
            f"exact: the best matching among each latent's top-{candidates} candidates (both directions) reaches "
            "the upper bound (the sum of each latent's best cosine), so no matching over the full matrix beats it"
        )
    else:
        note = (
            f"best matching among each latent's top-{candidates} candidates (both directions); its mean matched "
            f"cosine is at most {gap:.4f} below the exact one (upper bound: each latent's best cosine)"
        )
    if len(leftover):
        done = len(leftover) - unmatched
        note += f"; {len(leftover)} latents had no candidate partner left"
        note += f", {done} matched among the leftovers" if done else ""
        note += f", {unmatched} unmatched (-1)" if unmatched else ""
    return Assignment(partner, cosine, method, exact, note, total, bound, gap)


def _solve(rows: np.ndarray, cols: np.ndarray, cos: np.ndarray, p: int, q: int) -> np.ndarray:
    """For each of the p (<= q) rows its column in the heaviest largest matching of the sparse graph, -1 for
    none: a full matching when the graph has one, else the largest one (dummy edges), heaviest among those."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    weights = 2.0 - cos  # in [1, 3]: positive, and smaller for a higher cosine
    try:
        graph = csr_matrix((weights, (rows, cols)), shape=(p, q))
        row_ind, col_ind = min_weight_full_bipartite_matching(graph)
    except ValueError:  # no matching covers every row: each row may take its own dummy column instead
        # A dummy costs more than any 3p of real edges: fewer dummies (a larger matching) always wins.
        dummy = 3.0 * p + 3.0
        graph = csr_matrix(
            (
                np.concatenate([weights, np.full(p, dummy)]),
                (np.concatenate([rows, np.arange(p)]), np.concatenate([cols, q + np.arange(p)])),
            ),
            shape=(p, q + p),
        )
        row_ind, col_ind = min_weight_full_bipartite_matching(graph)
        real = col_ind < q
        row_ind, col_ind = row_ind[real], col_ind[real]
    col_of = np.full(p, -1, dtype=np.int64)
    col_of[row_ind] = col_ind
    return col_of


def _rows(weights: Any, index: np.ndarray) -> Any:
    import torch  # heavy; the weights are torch tensors

    weights = torch.as_tensor(weights)
    return weights[torch.as_tensor(index, device=weights.device)]


def _pair_cosines(a: Any, b: Any, partner: np.ndarray) -> np.ndarray:
    """(m,) float32: the cosine of each latent of A with its partner, NaN where it has none."""
    import torch  # heavy; the weights are torch tensors

    cosine = np.full(len(partner), np.nan, dtype=np.float32)
    matched = np.flatnonzero(partner >= 0)
    if len(matched):
        with torch.inference_mode():
            pairs = (unit_rows(_rows(a, matched)) * unit_rows(_rows(b, partner[matched]))).sum(dim=1)
        cosine[matched] = pairs.cpu().numpy()
    return cosine


def one_to_one(
    a: Any,
    b: Any,
    *,
    forward: Neighbours | None = None,
    candidates: int = CANDIDATES,
    dense_limit: int = DENSE_LIMIT,
    budget: int = BUDGET,
    progress: Callable[[int, int], None] | None = None,
) -> Assignment:
    """The one-to-one matching of the rows of `a` (m, d) to the rows of `b` (n, d) by cosine: dense when
    m x n <= `dense_limit`, else among top-`candidates` edges. `forward` may pass A's top neighbours in B
    already computed (at least `candidates` of them, or all of B); `progress(done, total)` hears the
    backward pass's blocks of B."""
    m, n = len(a), len(b)
    if m == 0 or n == 0:
        raise ValueError(f"cannot match an SAE without latents ({m} and {n} latents)")
    if m * n <= dense_limit:
        return dense_assignment(a, b)
    kc = min(candidates, n)
    if forward is None or forward[0].shape[1] < kc:
        forward = topk_cosines(a, b, kc, budget=budget)
    forward = (forward[0][:, :kc], forward[1][:, :kc])
    backward = blocked_topk(b, a, min(candidates, m), budget=budget, progress=progress)
    return sparse_assignment(a, b, forward, backward, dense_limit=dense_limit)


def blocked_topk(
    a: Any, b: Any, k: int, *, budget: int = BUDGET, progress: Callable[[int, int], None] | None = None
) -> Neighbours:
    """`topk_cosines(a, b, k)` in about 20 slices of `a`'s rows, telling `progress(done, total)` after each
    (the same result: each row's neighbours depend on that row alone)."""
    a_unit, b_unit = unit_rows(a), unit_rows(b)
    m = len(a_unit)
    step = max(1, -(-m // 20))
    parts = []
    for start in range(0, m, step):
        parts.append(topk_cosines(a_unit[start : start + step], b_unit, k, budget=budget))
        if progress is not None:
            progress(min(m, start + step), m)
    if not parts:
        return np.empty((0, min(k, len(b_unit))), dtype=np.int64), np.empty((0, min(k, len(b_unit))), np.float32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
