"""Mutual-kNN gain: the bucketed sweep against neighbour sets built one by one."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.baselines import fidelity_dense_reference
from pipeline import fidelity
from pipeline.distance import vista_distance_matrix
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
