"""Layout step: UMAP of the contexts to 2-D under VISTA's distance.

Up to `precomputed_max` contexts UMAP gets the full distance matrix (metric="precomputed"),
together with its exact kNN lists (a partition per row, much faster than the full argsort
UMAP would do). Beyond, it gets only the exact kNN graph (`precomputed_knn`, built blockwise
by `vista_knn`), so memory stays O(N * n_neighbors) instead of O(N^2). Both paths see the same
neighbours, so they give the same layout unless the graph falls apart into components (UMAP
then places the components by the matrix, or by the codes' cosine distance).

Seeded: UMAP runs single-threaded with random_state=seed, so the same input gives the same
layout. About 5-10 s for N = 4000 on two cores, nearly all in UMAP's 500 epochs of SGD, plus
15-45 s of numba JIT in a fresh process (numba caches part of it on disk).

The result is normalised to the unit square keeping the aspect ratio: the longer side of the
bounding box spans exactly [0, 1], the shorter one is centred in [0, 1]. Renders and the TUI's
minimap rely on that box.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from pipeline.distance import knn_from_matrix, vista_distance_matrix, vista_knn
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import SparseCodes

STEP = "layout"
VERSION = 1
DISTRIBUTIONS = ("numpy", "scipy", "umap-learn", "pynndescent", "numba")
"""Packages whose versions shape the layout, in the order the manifest records them."""
MIN_POINTS = 3
SPECTRAL_MIN_POINTS = 10
"""Below this, UMAP's spectral initialisation is unreliable; start from a seeded random one."""


@dataclass(frozen=True)
class LayoutConfig:
    """Parameters of the 2-D layout."""

    lam: float = 1.0
    """Weight of the activation gap in the VISTA distance."""
    n_neighbors: int = 15
    """UMAP's neighbourhood size (the point itself included, as UMAP counts); clipped to N-1."""
    min_dist: float = 0.1
    seed: int = 0
    """UMAP's random_state: the same input and seed give the same layout."""
    precomputed_max: int = 20000
    """Largest N laid out from the full distance matrix; above it, from the exact kNN graph."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2, got {self.n_neighbors!r}")
        if not (math.isfinite(self.min_dist) and self.min_dist >= 0):
            raise ValueError(f"min_dist must be a finite number >= 0, got {self.min_dist!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if self.precomputed_max < MIN_POINTS:
            raise ValueError(f"precomputed_max must be >= {MIN_POINTS}, got {self.precomputed_max!r}")


Config = LayoutConfig
"""The step's config under the name every step module exports."""


def normalise_to_unit_box(xy: np.ndarray) -> np.ndarray:
    """Scale and shift into [0, 1]^2 keeping the aspect: longer side [0, 1], shorter centred."""
    points = np.asarray(xy, dtype=np.float64)
    low = points.min(axis=0)
    extent = points.max(axis=0) - low
    longest = float(extent.max())
    if longest <= 0:
        return np.full(points.shape, 0.5, dtype=np.float32)
    scaled = (points - low) / longest
    scaled += (1.0 - extent / longest) / 2.0
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


def _umap(cfg: LayoutConfig, n_points: int, n_neighbors: int, **extra: Any) -> Any:
    # umap (numba, pynndescent) takes seconds to import and JIT; only the layout step pays it.
    import umap

    return umap.UMAP(
        n_neighbors=n_neighbors,
        n_components=2,
        min_dist=cfg.min_dist,
        random_state=cfg.seed,
        init="spectral" if n_points >= SPECTRAL_MIN_POINTS else "random",
        # VISTA distances go up to 1 + lam: never cut edges for being "too far".
        disconnection_distance=float("inf"),
        **extra,
    )


def run(
    cfg: LayoutConfig,
    codes: SparseCodes | np.ndarray | sp.spmatrix,
    activations: np.ndarray,
    *,
    progress: Progress = no_progress,
) -> np.ndarray:
    """2-D layout (N x 2 float32 in the unit box, see the module doc) of the contexts' codes."""
    n_points = int(codes.n_rows if isinstance(codes, SparseCodes) else codes.shape[0])
    if n_points < MIN_POINTS:
        raise ValueError(f"a layout needs at least {MIN_POINTS} contexts, got {n_points}")
    n_neighbors = min(cfg.n_neighbors, n_points - 1)
    with warnings.catch_warnings():
        # umap warns that random_state disables parallelism and, for the kNN path, that
        # transform() is unavailable: both are the intended trade.
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
        if n_points <= cfg.precomputed_max:
            progress(0, 3, "distance matrix")
            distances = vista_distance_matrix(codes, activations, cfg.lam)
            # UMAP would argsort every row of the matrix for its kNN; a partition is much faster.
            knn = _with_self(*knn_from_matrix(distances, n_neighbors - 1))
            progress(1, 3, "umap (precomputed distances)")
            reducer = _umap(cfg, n_points, n_neighbors, metric="precomputed", precomputed_knn=knn)
            embedding = reducer.fit_transform(distances)
            del distances
        else:
            progress(0, 3, "exact kNN graph")
            knn = _with_self(*vista_knn(codes, activations, cfg.lam, n_neighbors - 1))
            progress(1, 3, "umap (kNN graph)")
            # The codes only matter to UMAP if the kNN graph falls apart into components: it then
            # places them by the cosine distance of their centroids.
            data = codes if sp.issparse(codes) else _csr(codes)
            reducer = _umap(cfg, n_points, n_neighbors, metric="cosine", precomputed_knn=knn)
            embedding = reducer.fit_transform(data)
    embedding = np.asarray(embedding)
    if not np.all(np.isfinite(embedding)):
        raise RuntimeError("UMAP left some contexts without a position (non-finite layout)")
    progress(2, 3, "normalise")
    xy = normalise_to_unit_box(embedding)
    progress(3, 3, "done")
    return xy


def _with_self(neighbours: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's kNN layout: each list starts with the point itself, at distance 0."""
    n_points = neighbours.shape[0]
    indices = np.hstack([np.arange(n_points, dtype=np.int32)[:, None], neighbours])
    return np.ascontiguousarray(indices), np.ascontiguousarray(
        np.hstack([np.zeros((n_points, 1), np.float32), distances])
    )


def _csr(codes: SparseCodes | np.ndarray) -> sp.csr_matrix:
    if isinstance(codes, SparseCodes):
        return sp.csr_matrix(
            (np.asarray(codes.values, np.float32), codes.indices, codes.indptr),
            shape=(codes.n_rows, codes.n_latents),
        )
    return sp.csr_matrix(np.asarray(codes, dtype=np.float32))
