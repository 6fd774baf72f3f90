"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Before torch is imported anywhere: spinning OpenMP threads starve each other on shared cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session", autouse=True)
def numba_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One numba disk cache for the whole test session, shared with every process it starts.

    pipeline.jit_cache caches UMAP's compiled code under $NUMBA_CACHE_DIR: the first process
    that lays out compiles (15-45 s), the CLI subprocesses and Ray workers started afterwards
    load it. Set before any test runs (and before Ray starts its workers); a $NUMBA_CACHE_DIR
    given from outside (a CI cache kept between runs) is used as it is.
    """
    from pipeline.jit_cache import ENV, configure_cache_dir

    if not os.environ.get(ENV):
        os.environ[ENV] = str(tmp_path_factory.getbasetemp() / "numba-cache")
    directory = configure_cache_dir()
    assert directory is not None, f"the test session's numba cache {os.environ[ENV]} is not writable"
    return directory


@pytest.fixture(scope="session")
def umap_warm() -> None:
    """Fit UMAP once on tiny data, so numba's JIT is paid (or loaded from the cache) once per session.

    Request it in any test that runs UMAP.
    """
    # umap (numba, pynndescent) is heavy to import: only sessions that lay out pay for it.
    import warnings

    from pipeline.jit_cache import import_umap

    umap = import_umap()

    rng = np.random.default_rng(0)
    points = rng.random((24, 3))
    distances = np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # seeded => single-threaded; precomputed => no inverse
        umap.UMAP(n_neighbors=5, metric="precomputed", random_state=0, n_epochs=20).fit(distances)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with two deterministic synthetic maps (plain, and LLM-labelled) and one broken map."""
    from tests.helpers.synthetic_map import build_synthetic_map

    root = tmp_path_factory.mktemp("store")
    build_synthetic_map(root / "maps" / "syn-plain", n=240, seed=0, latent=42)
    build_synthetic_map(root / "maps" / "syn-labelled", n=180, seed=1, latent=7, llm_labels=True)
    (root / "maps" / "syn-broken").mkdir()
    return root


@pytest.fixture(scope="session")
def snapshot_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like synthetic_store (without the broken map), in a folder of a fixed name: the picker's title names it.

    The picker snapshot opens it by that name from its parent folder, so the title reads the same
    on every run and machine; everything else shown comes from the maps (their `created` is pinned).
    """
    from tests.helpers.synthetic_map import build_synthetic_map

    root = tmp_path_factory.mktemp("snapshots") / "vista-snapshot-store"
    build_synthetic_map(root / "maps" / "syn-plain", n=240, seed=0, latent=42)
    build_synthetic_map(root / "maps" / "syn-labelled", n=180, seed=1, latent=7, llm_labels=True)
    return root


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray instance with 2 CPUs, started once per test session (about 6 s) and shut down at its end.

    Engines opened while it runs join it instead of starting their own. Its worker processes inherit
    this environment (PYTHONPATH, HF_HUB_OFFLINE) from the moment it starts.
    """
    ray = pytest.importorskip("ray")
    import logging

    logging.getLogger("ray").setLevel(logging.ERROR)
    ray.init(num_cpus=2, log_to_driver=False, logging_level=logging.WARNING, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()
