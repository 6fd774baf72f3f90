"""Mutual-kNN gain: the blocked sweep against neighbour sets built one by one and the dense path."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from benchmarks.baselines import fidelity_dense_reference
from pipeline import fidelity
from pipeline.distance import _prepare, index_bits, row_engine, row_kernel, vista_distance_matrix
from pipeline.fidelity import FidelityConfig, k_sweep, planar_sq_distances
from tests.helpers.codes import make_codes
from vista_tui.mapdata import FidelityCurve, SparseCodes


def brute_force(codes: SparseCodes, activations: np.ndarray, xy: np.ndarray, cfg: FidelityConfig) -> FidelityCurve:
    """m(k) and gain(k) with Python sets: N_k(i) = first k of j != i ordered by (distance, j)."""
    n = len(xy)
    high_d = vista_distance_matrix(codes, activations, cfg.lam).tolist()
    planar = planar_sq_distances(xy).tolist()

    def neighbours(dist: list[list[float]], i: int) -> list[int]:
        return sorted((j for j in range(n) if j != i), key=lambda j: (dist[i][j], j))

    order_hi = [neighbours(high_d, i) for i in range(n)]
    order_2d = [neighbours(planar, i) for i in range(n)]
    ks = k_sweep(n, cfg)
    m = []
    for k in ks:
        shared = sum(len(set(order_hi[i][:k]) & set(order_2d[i][:k])) for i in range(n))
        m.append(shared / (n * k))
    gain = [value - k / (n - 1) for value, k in zip(m, ks, strict=True)]
    return FidelityCurve(n=n, k=ks, k_percent=[100.0 * k / n for k in ks], m=m, gain=gain)


def related_map(n: int, seed: int, tie_grid: float = 0.0) -> tuple[SparseCodes, np.ndarray, np.ndarray]:
    """Codes, activations and a layout that keeps part of their structure (so m is not trivial)."""
    rng = np.random.default_rng(seed)
    codes = make_codes(n, 30, 4, seed=seed)
    activations = rng.gamma(2.0, 1.0, size=n).astype(np.float32)
    dense = codes.to_dense()
    xy = np.stack([activations, dense[:, :3].sum(axis=1)], axis=1) + rng.normal(0, 0.5, size=(n, 2))
    if tie_grid:
        xy = np.round(xy / tie_grid) * tie_grid  # many equal distances
    return codes, activations, xy.astype(np.float32)


@pytest.mark.parametrize(("n", "seed", "tie_grid"), [(60, 0, 0.0), (97, 1, 0.0), (150, 2, 0.0), (120, 3, 1.0)])
def test_sweep_equals_brute_force(n: int, seed: int, tie_grid: float) -> None:
    codes, activations, xy = related_map(n, seed, tie_grid)
    cfg = FidelityConfig()
    curve = fidelity.run(cfg, codes, activations, xy)
    expected = brute_force(codes, activations, xy, cfg)
    assert curve.n == n
    assert curve.k == expected.k
    assert curve.m == expected.m
    assert curve.gain == expected.gain
    assert curve.best_k == expected.best_k
    assert curve.best_k == expected.k[int(np.argmax(expected.gain))]
    assert curve.k_percent == expected.k_percent


def test_dense_reference_gives_identical_numbers() -> None:
    codes, activations, xy = related_map(200, 4, 0.5)
    cfg = FidelityConfig(lam=0.5)
    assert fidelity.run(cfg, codes, activations, xy) == fidelity_dense_reference(cfg, codes, activations, xy)


def test_precomputed_distances_are_used_as_given() -> None:
    codes, activations, xy = related_map(80, 5)
    cfg = FidelityConfig()
    distances = vista_distance_matrix(codes, activations, cfg.lam)
    assert fidelity.run(cfg, codes, activations, xy, distances=distances) == fidelity.run(cfg, codes, activations, xy)


def tied_map(n: int, seed: int) -> tuple[SparseCodes, np.ndarray, np.ndarray]:
    """A map full of exact ties in both spaces: repeated code rows, repeated activations, points on a grid.

    The blocked kernel ranks most neighbours by histogram bin and sorts only the bins a swept k
    falls in; ties sit in one bin, so they exercise the (distance, index) rule there.
    """
    rng = np.random.default_rng(seed)
    distinct = make_codes(n // 6, 12, 3, seed=seed)
    codes = distinct.take(rng.integers(0, n // 6, size=n))
    activations = rng.integers(1, 5, size=n).astype(np.float32)
    xy = rng.integers(0, 7, size=(n, 2)).astype(np.float32) / 8
    return codes, activations, xy


@pytest.mark.parametrize(("n", "seed", "lam"), [(300, 10, 1.0), (451, 11, 0.0), (600, 12, 2.5)])
def test_blocked_sweep_equals_the_dense_path_with_ties(n: int, seed: int, lam: float) -> None:
    # Both rank the same float32 distances by (distance, index): equal curves, ties or not.
    codes, activations, xy = tied_map(n, seed)
    cfg = FidelityConfig(lam=lam)
    dense = fidelity.run(cfg, codes, activations, xy, distances=vista_distance_matrix(codes, activations, lam))
    assert fidelity.run(cfg, codes, activations, xy) == dense
    assert fidelity.run(cfg, codes, activations, xy) == fidelity_dense_reference(cfg, codes, activations, xy)


def test_high_d_bins_from_a_sample_of_the_row_rank_like_the_dense_path() -> None:
    # From 2 x row_kernel.SAMPLE rows on, the high-D bins span only a sample of each row (every
    # other j here): the distances outside it share the two end bins, and still rank exactly.
    codes, activations, xy = tied_map(2300, 14)
    cfg = FidelityConfig()
    dense = fidelity.run(cfg, codes, activations, xy, distances=vista_distance_matrix(codes, activations, cfg.lam))
    assert fidelity.run(cfg, codes, activations, xy) == dense


def test_a_sample_of_equal_distances_puts_the_row_in_one_bin() -> None:
    # Every even row has the same code and activation, so for an odd row i the sampled j (the even
    # ones) are all equally far: the sampled range is empty, and all of row i shares bin 0.
    n = 2100
    assert n // row_kernel().SAMPLE == 2
    varied = make_codes(n, 40, 5, seed=15)
    rows = np.where(np.arange(n) % 2 == 0, 0, np.arange(n))
    codes = varied.take(rows)
    activations = np.where(rows == 0, 1.0, np.random.default_rng(15).gamma(2.0, 1.0, size=n)).astype(np.float32)
    xy = np.random.default_rng(16).random((n, 2)).astype(np.float32)
    cfg = FidelityConfig()
    dense = fidelity.run(cfg, codes, activations, xy, distances=vista_distance_matrix(codes, activations, cfg.lam))
    assert fidelity.run(cfg, codes, activations, xy) == dense


def test_the_number_of_bins_decides_no_count() -> None:
    # From N = 16,384 on the kernel uses 8,192 bins (row_kernel.MAX_BINS), below 4,096: any number
    # of bins, fewer or more than the rows, gives the same counts.
    codes, activations, xy = tied_map(900, 17)
    cfg = FidelityConfig()
    kernel = row_kernel()
    prep = _prepare(codes, activations, cfg.lam)
    arguments = (
        row_engine(prep),
        np.ascontiguousarray(xy[:, 0]),
        np.ascontiguousarray(xy[:, 1]),
        np.asarray(k_sweep(900, cfg), dtype=np.int64),
        index_bits(900),
    )
    default = kernel.bucket_counts(0, 900, *arguments)
    for n_bins in (1, 64, kernel.MAX_BINS):
        assert np.array_equal(kernel.bucket_counts(0, 900, *arguments, n_bins), default), n_bins


def test_a_layout_of_subnormal_extent_ranks_like_the_dense_path() -> None:
    # Squared distances ~1e-42 (below float32's smallest normal): the planar bins' scale would be infinite.
    codes, activations, xy = related_map(120, 5)
    tiny = (xy * np.float32(1e-21)).astype(np.float32)
    assert 0 < planar_sq_distances(tiny).max() < np.finfo(np.float32).tiny
    cfg = FidelityConfig()
    assert fidelity.run(cfg, codes, activations, tiny) == fidelity_dense_reference(cfg, codes, activations, tiny)
    # What kept the bins in range (an infinite scale gave every j the bin int32(inf), out of the table):
    scale = row_kernel()._scale(8192, 0.0, float(planar_sq_distances(tiny).max()))
    assert np.isfinite(scale) and scale > 0


def test_blocked_sweep_has_no_n_by_n_array() -> None:
    n = 3000
    codes, activations, xy = related_map(n, 13)
    cfg = FidelityConfig()
    fidelity.run(cfg, codes.take(np.arange(50)), activations[:50], xy[:50])  # compile (or load) the kernel first
    tracemalloc.start()
    try:
        curve = fidelity.run(cfg, codes, activations, xy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert curve.n == n
    assert peak < n * n * 4 / 8  # an N x N float32 matrix would be 36 MB


def test_a_layout_equal_to_the_data_scores_one() -> None:
    # One shared code, so the VISTA distance is lam * |a_i - a_j| / max(a); the layout puts each
    # context at (a_i, 0). Integer activations with a power-of-two maximum keep both exact.
    n = 90
    rng = np.random.default_rng(6)
    activations = np.concatenate([[128.0], rng.choice(np.arange(1, 128), size=n - 1, replace=False)]).astype(np.float32)
    codes = SparseCodes(np.arange(n + 1, dtype=np.int64), np.zeros(n, np.int32), np.ones(n, np.float32), 4)
    xy = np.stack([activations, np.zeros(n, np.float32)], axis=1)
    curve = fidelity.run(FidelityConfig(), codes, activations, xy)
    assert curve.m == [1.0] * len(curve.k)
    np.testing.assert_allclose(curve.gain, [1.0 - k / (n - 1) for k in curve.k])
    assert curve.best_k == curve.k[0]


def test_sweep_spans_the_percent_range_with_twenty_or_more_k() -> None:
    for n in (60, 150, 4000):
        ks = k_sweep(n, FidelityConfig())
        assert len(ks) >= 20
        assert ks == sorted(set(ks))
        assert ks[0] >= 1 and ks[-1] <= n - 1
        assert ks[-1] == round(n * 0.5)
    assert k_sweep(4000, FidelityConfig())[0] == 10  # 0.25 % of 4000
    assert k_sweep(3, FidelityConfig()) == [1, 2]


def test_curve_round_trips_and_reports_its_maximum() -> None:
    codes, activations, xy = related_map(100, 7)
    curve = fidelity.run(FidelityConfig(), codes, activations, xy)
    assert FidelityCurve.from_dict(curve.to_dict()) == curve
    assert curve.best_gain == max(curve.gain)
    assert curve.to_dict()["argmax"]["k"] == curve.best_k


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lam": -1.0}, "lam"),
        ({"n_k": 1}, "n_k"),
        ({"min_percent": 0.0}, "min_percent"),
        ({"max_percent": 0.1}, "max_percent"),
    ],
)
def test_config_names_the_bad_value(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FidelityConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_refused() -> None:
    codes, activations, xy = related_map(40, 8)
    with pytest.raises(ValueError, match="at least 3"):
        fidelity.run(FidelityConfig(), codes.take(np.arange(2)), activations[:2], xy[:2])
    with pytest.raises(ValueError, match="xy"):
        fidelity.run(FidelityConfig(), codes, activations, xy[:, :1])
    with pytest.raises(ValueError, match="distances"):
        fidelity.run(FidelityConfig(), codes, activations, xy, distances=np.zeros((3, 3), np.float32))
