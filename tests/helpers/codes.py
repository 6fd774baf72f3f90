"""Random sparse SAE-like codes for distance, layout and fidelity tests."""

from __future__ import annotations

import numpy as np

from vista_tui.mapdata import SparseCodes


def make_codes(n_rows: int, n_latents: int, per_row: int, seed: int, zero_rows: tuple[int, ...] = ()) -> SparseCodes:
    """Random non-negative sparse codes; `zero_rows` get an empty code."""
    rng = np.random.default_rng(seed)
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for row in range(n_rows):
        count = 0 if row in zero_rows else int(rng.integers(1, per_row + 1))
        latents = np.sort(rng.choice(n_latents, size=count, replace=False))
        indices.append(latents.astype(np.int32))
        values.append(rng.exponential(1.0, size=count).astype(np.float32))
        indptr.append(indptr[-1] + count)
    return SparseCodes(
        indptr=np.asarray(indptr, dtype=np.int64),
        indices=np.concatenate(indices),
        values=np.concatenate(values),
        n_latents=n_latents,
    )
