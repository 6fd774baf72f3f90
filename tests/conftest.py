"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os

import numpy as np
import pytest

# Before torch is imported anywhere: spinning OpenMP threads starve each other on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def umap_warm() -> None:
    """Fit UMAP once on tiny data, so numba's JIT (15-45 s per process) is paid once per session.

    Request it in any test that runs UMAP; it also covers pipeline.layout's kNN-graph path,
    which compiles nothing the precomputed path has not.
    """
    # umap (numba, pynndescent) is heavy to import: only sessions that lay out pay for it.
    import warnings

    import umap

    rng = np.random.default_rng(0)
    points = rng.random((24, 3))
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # seeded => single-threaded; precomputed => no inverse
        umap.UMAP(n_neighbors=5, metric="precomputed", random_state=0, n_epochs=20).fit(distances)
