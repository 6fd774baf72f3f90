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


def layout_dense_reference(
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    *,
    lam: float = 1.0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """The layout as pipeline.layout made it before version 2: UMAP on the dense N x N matrix.

    metric="precomputed" with its exact kNN lists, UMAP's default epochs (500 below N = 10,000,
    200 above), seeded and single-threaded; normalised to the unit box like pipeline.layout.
    """
    import warnings

    from pipeline.distance import knn_from_matrix
    from pipeline.jit_cache import import_umap
    from pipeline.layout import SPECTRAL_MIN_POINTS, _with_self, normalise_to_unit_box

    umap = import_umap()
    distances = vista_distance_matrix(codes, activations, lam)
    n_points = distances.shape[0]
    k = min(n_neighbors, n_points - 1)
    knn = _with_self(*knn_from_matrix(distances, k - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(
            n_neighbors=k,
            n_components=2,
            min_dist=min_dist,
            random_state=seed,
            init="spectral" if n_points >= SPECTRAL_MIN_POINTS else "random",
            disconnection_distance=float("inf"),
            metric="precomputed",
            precomputed_knn=knn,
        )
        embedding = reducer.fit_transform(distances)
    return normalise_to_unit_box(np.asarray(embedding))
