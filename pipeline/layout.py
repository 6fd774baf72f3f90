"""Layout step: UMAP of the contexts to 2-D under VISTA's distance.

UMAP gets the exact kNN graph by the VISTA distance (`precomputed_knn`, built blockwise by
`pipeline.distance.vista_knn` on all cores), never the N x N matrix: memory stays
O(N * n_neighbors) at any N. UMAP's own graph, its spectral initialisation and its SGD use only
those neighbours. The codes are handed over too (cosine metric) for the one case where UMAP
looks past the graph: a graph that falls apart into components is laid out by the cosine
distance of the components' centroids.

Seeded: UMAP runs single-threaded with random_state=seed, so the same input gives the same
layout (the kNN graph is exact, so its threads change nothing). The SGD is nearly all the time:
`n_epochs` (`default_epochs`: 300 up to N = 10,000, where UMAP would pick 500) costs about
0.9 s per 100 epochs at N = 4000 on one core. benchmarks/layout_quality.py shows the maps keep
their fidelity (maximum mutual-kNN gain) against 500 epochs on the demo and synthetic maps.
numba's compiled code is cached on disk across processes (pipeline.jit_cache).

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

from pipeline.distance import vista_knn
from pipeline.jit_cache import import_umap
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import SparseCodes

STEP = "layout"
VERSION = 2
DISTRIBUTIONS = ("numpy", "scipy", "umap-learn", "pynndescent", "numba")
"""Packages whose versions shape the layout, in the order the manifest records them."""
MIN_POINTS = 3
SPECTRAL_MIN_POINTS = 10
"""Below this, UMAP's spectral initialisation is unreliable; start from a seeded random one."""
SMALL_DATA_EPOCHS = 300
LARGE_DATA_EPOCHS = 200
LARGE_DATA = 10_000
"""UMAP's own defaults are 500 epochs up to 10,000 points and 200 beyond; see `default_epochs`."""


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
    n_epochs: int | None = None
    """Epochs of UMAP's SGD (its cost grows linearly with them); None: `default_epochs(N)`."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")
        if self.n_neighbors < 2:
            raise ValueError(f"n_neighbors must be >= 2, got {self.n_neighbors!r}")
        if not (math.isfinite(self.min_dist) and self.min_dist >= 0):
            raise ValueError(f"min_dist must be a finite number >= 0, got {self.min_dist!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if self.n_epochs is not None and self.n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {self.n_epochs!r}")


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


def default_epochs(n_points: int) -> int:
    """300 epochs up to 10,000 contexts, 200 beyond.

    UMAP's own 500 below 10,000 cost 1.7x the SGD time for a maximum mutual-kNN gain within
    0.01 of 300's on the demo and synthetic maps (benchmarks/layout_quality.py); 200 lost up
    to 0.02 on the demo maps. Beyond 10,000, UMAP's own 200.
    """
    return SMALL_DATA_EPOCHS if n_points <= LARGE_DATA else LARGE_DATA_EPOCHS


def _umap(cfg: LayoutConfig, n_points: int, n_neighbors: int, **extra: Any) -> Any:
    umap = import_umap()
    return umap.UMAP(
        n_neighbors=n_neighbors,
        n_components=2,
        min_dist=cfg.min_dist,
        n_epochs=cfg.n_epochs if cfg.n_epochs is not None else default_epochs(n_points),
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
    progress(0, 3, "exact kNN graph")
    knn = _with_self(*vista_knn(codes, activations, cfg.lam, n_neighbors - 1))
    progress(1, 3, "umap (kNN graph)")
    # The codes only matter to UMAP if the kNN graph falls apart into components: it then
    # places them by the cosine distance of their centroids.
    data = codes if sp.issparse(codes) else _csr(codes)
    with warnings.catch_warnings():
        # umap warns that random_state disables parallelism and that transform() is unavailable
        # with a precomputed kNN graph: both are the intended trade.
        warnings.filterwarnings("ignore", category=UserWarning, module="umap")
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
