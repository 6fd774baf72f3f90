"""Plain reference implementations the benchmarks race the pipeline's fast ones against.

Written for obviousness, not speed; each must give the same numbers as its fast twin.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from pipeline.distance import vista_distance_matrix
from pipeline.fidelity import FidelityConfig, k_sweep, planar_sq_distances
from vista_tui.mapdata import FidelityCurve, SparseCodes


def fidelity_dense_reference(
    cfg: FidelityConfig,
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    xy: np.ndarray,
) -> FidelityCurve:
    """Mutual-kNN gain the obvious way: per k, N x N top-k masks in both spaces and their overlap.

    Same distances and tie rule as pipeline.fidelity.run: a stable argsort ranks by (distance,
    index); the point itself is pushed last with an infinite distance.
    """
    points = np.asarray(xy, dtype=np.float32)
    n = len(points)
    ks = k_sweep(n, cfg)
    high_d = vista_distance_matrix(codes, activations, cfg.lam)
    planar = planar_sq_distances(points)
    np.fill_diagonal(high_d, np.inf)
    np.fill_diagonal(planar, np.inf)
    order_hi = np.argsort(high_d, axis=1, kind="stable")
    order_2d = np.argsort(planar, axis=1, kind="stable")
    rows = np.arange(n)[:, None]
    m = []
    for k in ks:
        mask_hi = np.zeros((n, n), dtype=bool)
        mask_2d = np.zeros((n, n), dtype=bool)
        mask_hi[rows, order_hi[:, :k]] = True
        mask_2d[rows, order_2d[:, :k]] = True
        shared = int(np.logical_and(mask_hi, mask_2d).sum())
        m.append(shared / (n * k))
    gain = [value - k / (n - 1) for value, k in zip(m, ks, strict=True)]
    return FidelityCurve(n=n, k=ks, k_percent=[100.0 * k / n for k in ks], m=m, gain=gain)
