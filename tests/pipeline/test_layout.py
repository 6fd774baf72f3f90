"""Layout: seeded UMAP on the exact kNN graph of the VISTA distance.

UMAP is slow to JIT: every test here requests the session's `umap_warm` and stays tiny.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from benchmarks.baselines import layout_dense_reference
from pipeline import fidelity, layout
from pipeline.layout import LayoutConfig, normalise_to_unit_box
from vista_tui.mapdata import SparseCodes


def grouped_codes(per_group: int = 25, groups: int = 3, seed: int = 0) -> tuple[SparseCodes, np.ndarray, np.ndarray]:
    """Codes whose groups use disjoint latents: cosine distance 1 across groups."""
    rng = np.random.default_rng(seed)
    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    group_of = np.repeat(np.arange(groups), per_group)
    for group in group_of:
        latents = 10 * group + np.sort(rng.choice(10, size=4, replace=False))
        indices.append(latents.astype(np.int32))
        values.append(rng.uniform(0.5, 1.5, size=4).astype(np.float32))
        indptr.append(indptr[-1] + 4)
    codes = SparseCodes(np.asarray(indptr, np.int64), np.concatenate(indices), np.concatenate(values), 10 * groups)
    activations = rng.uniform(1.0, 2.0, size=len(group_of)).astype(np.float32)
    return codes, activations, group_of


def nearest_in_same_group(xy: np.ndarray, group_of: np.ndarray) -> float:
    distances = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(group_of[np.argmin(distances, axis=1)] == group_of))


def assert_in_unit_box(xy: np.ndarray, n: int) -> None:
    assert xy.shape == (n, 2) and xy.dtype == np.float32
    assert np.all(np.isfinite(xy))
    assert xy.min() >= 0.0 and xy.max() <= 1.0
    extent = xy.max(axis=0) - xy.min(axis=0)
    assert extent.max() == pytest.approx(1.0)


@pytest.mark.usefixtures("umap_warm")
def test_seeded_layout_is_reproducible_and_separates_groups() -> None:
    codes, activations, group_of = grouped_codes()
    cfg = LayoutConfig(n_neighbors=8, seed=3)
    first = layout.run(cfg, codes, activations)
    second = layout.run(cfg, codes, activations)
    np.testing.assert_array_equal(first, second)
    assert_in_unit_box(first, len(group_of))
    assert nearest_in_same_group(first, group_of) >= 0.95
    centres = np.array([first[group_of == g].mean(axis=0) for g in range(3)])
    spread = max(np.linalg.norm(first[group_of == g] - centres[g], axis=1).mean() for g in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


def connected_groups(per_group: int, groups: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like `grouped_codes` (dense), plus the mapped latent on every row, as in a real map: one connected graph."""
    codes, activations, group_of = grouped_codes(per_group, groups, seed)
    dense = np.hstack([np.full((len(group_of), 1), 0.3, np.float32), codes.to_dense()])
    return dense, activations, group_of


@pytest.mark.usefixtures("umap_warm")
def test_knn_graph_layout_matches_the_dense_matrix_layout() -> None:
    # Before version 2, UMAP got the N x N matrix and 500 epochs. Given the same epochs the graph
    # alone gives the same map; with the default (fewer) epochs, no worse a fidelity.
    codes, activations, group_of = connected_groups(per_group=60, groups=4, seed=2)
    dense = layout_dense_reference(codes, activations, n_neighbors=10, seed=4)
    same_epochs = layout.run(LayoutConfig(n_neighbors=10, seed=4, n_epochs=500), codes, activations)
    np.testing.assert_allclose(same_epochs, dense, atol=1e-4)
    default = layout.run(LayoutConfig(n_neighbors=10, seed=4), codes, activations)
    assert_in_unit_box(default, len(group_of))
    assert nearest_in_same_group(default, group_of) >= 0.95
    fid = fidelity.FidelityConfig()
    gain_dense = fidelity.run(fid, codes, activations, dense).best_gain
    assert fidelity.run(fid, codes, activations, default).best_gain >= gain_dense - 0.01


@pytest.mark.usefixtures("umap_warm")
def test_layout_never_holds_an_n_by_n_matrix() -> None:
    codes, activations, group_of = connected_groups(per_group=1000, groups=4, seed=5)
    n = len(group_of)
    tracemalloc.start()
    try:
        xy = layout.run(LayoutConfig(n_epochs=5), codes, activations)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_in_unit_box(xy, n)
    # A float32 N x N matrix alone is 64 MB; the kNN graph and the distance blocks take about 14.
    assert peak < n * n * 4 / 2


@pytest.mark.usefixtures("umap_warm")
@pytest.mark.parametrize("n", [3, 6])
def test_tiny_maps_still_lay_out(n: int) -> None:
    codes, activations, _ = grouped_codes(per_group=n, groups=1)
    xy = layout.run(LayoutConfig(), codes, activations)  # n_neighbors clipped to n - 1
    assert xy.shape == (n, 2)
    assert np.all(np.isfinite(xy)) and xy.min() >= 0 and xy.max() <= 1


def test_fewer_than_three_contexts_are_refused() -> None:
    codes, activations, _ = grouped_codes(per_group=2, groups=1)
    with pytest.raises(ValueError, match="at least 3"):
        layout.run(LayoutConfig(), codes, activations)


def test_unit_box_keeps_the_aspect() -> None:
    xy = normalise_to_unit_box(np.array([[10.0, 5.0], [14.0, 5.0], [12.0, 7.0]]))
    np.testing.assert_allclose(xy, [[0.0, 0.25], [1.0, 0.25], [0.5, 0.75]])
    np.testing.assert_array_equal(normalise_to_unit_box(np.ones((4, 2))), np.full((4, 2), 0.5, np.float32))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lam": -0.5}, "lam"),
        ({"n_neighbors": 1}, "n_neighbors"),
        ({"min_dist": -1.0}, "min_dist"),
        ({"seed": -2}, "seed"),
        ({"n_epochs": 0}, "n_epochs"),
    ],
)
def test_config_names_the_bad_value(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        LayoutConfig(**kwargs)  # type: ignore[arg-type]
