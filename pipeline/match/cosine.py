"""Top-k cosine neighbours between two sets of directions, blocked so that no (m x n) matrix is ever whole.

Used for decoder rows (what a latent writes) and encoder columns (what it reads) alike: `a` is
(m, d), `b` is (n, d); both are normalised here, so callers pass raw weights. A block of rows of
`a` is multiplied with all of `b` at once: memory is `block x n` floats, chosen from `budget`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BUDGET = 1 << 25
"""Most cosines (32M float32: 128 MB) held at once."""


def unit_rows(weights: Any) -> Any:
    """Rows scaled to unit length (a zero row stays zero) as float32 torch tensors."""
    import torch  # heavy; weights come from a torch SAE

    weights = torch.as_tensor(weights).float()
    return weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)


def topk_cosines(a: Any, b: Any, k: int, *, budget: int = BUDGET) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `a`, the `k` rows of `b` with the highest cosine: (indices (m, k) int64, cosines
    (m, k) float32), best first; ties go to the smaller index of `b`. `k` is capped at n."""
    import torch  # heavy; weights come from a torch SAE

    a_unit, b_unit = unit_rows(a), unit_rows(b)
    if a_unit.shape[1] != b_unit.shape[1]:
        raise ValueError(f"directions of different widths: {a_unit.shape[1]} and {b_unit.shape[1]}")
    m, n = a_unit.shape[0], b_unit.shape[0]
    k = min(k, n)
    indices = np.empty((m, k), dtype=np.int64)
    cosines = np.empty((m, k), dtype=np.float32)
    block = max(1, budget // max(1, n))
    with torch.inference_mode():
        for start in range(0, m, block):
            sims = a_unit[start : start + block] @ b_unit.T
            # topk is not stable under ties: a stable sort of the candidates puts equal cosines by index.
            values, index = torch.topk(sims, k, dim=1, sorted=True)
            cut = values[:, -1:]
            tied = ((sims >= cut).sum(dim=1) > k).nonzero().squeeze(1)
            if tied.numel():
                order = torch.sort(-sims[tied], dim=1, stable=True).indices[:, :k]
                index[tied] = order
                values[tied] = sims[tied].gather(1, order)
            # Equal cosines among the kept k in index order too: by index, then stably by cosine.
            by_index = torch.sort(index, dim=1).indices
            index, values = index.gather(1, by_index), values.gather(1, by_index)
            by_cosine = torch.sort(values, dim=1, descending=True, stable=True).indices
            index, values = index.gather(1, by_cosine), values.gather(1, by_cosine)
            indices[start : start + len(sims)] = index.cpu().numpy()
            cosines[start : start + len(sims)] = values.cpu().numpy()
    return indices, cosines
