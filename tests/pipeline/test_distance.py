"""VISTA distance: the block engine against the formula written out pair by pair."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.distance import pack_keys, unpack_keys, vista_distance_matrix, vista_knn
from tests.helpers.codes import make_codes
from vista_tui.mapdata import SparseCodes


def plain_distance(codes: SparseCodes, activations: np.ndarray, lam: float, i: int, j: int) -> float:
    """d(i, j) = (1 - cos(s_i, s_j)) + lam * |a_i - a_j| / max(a), straight from the definition."""
    if i == j:
        return 0.0
    dense = codes.to_dense().astype(np.float64)
    s_i, s_j = dense[i], dense[j]
    norm = math.sqrt(float(s_i @ s_i)) * math.sqrt(float(s_j @ s_j))
    cosine = float(s_i @ s_j) / norm if norm > 0 else 0.0
    return (1.0 - cosine) + lam * abs(float(activations[i] - activations[j])) / float(np.max(activations))


@pytest.fixture
def small_map() -> tuple[SparseCodes, np.ndarray]:
    codes = make_codes(37, 40, 6, seed=1, zero_rows=(5, 20))
    activations = np.random.default_rng(2).gamma(2.0, 1.0, size=37).astype(np.float32)
    return codes, activations


@pytest.mark.parametrize("lam", [0.0, 1.0, 2.5])
def test_matrix_matches_the_pairwise_formula(small_map: tuple[SparseCodes, np.ndarray], lam: float) -> None:
    codes, activations = small_map
    # block=8 leaves a ragged last block and many off-diagonal ones.
    matrix = vista_distance_matrix(codes, activations, lam, block=8)
    expected = np.array(
        [[plain_distance(codes, activations, lam, i, j) for j in range(codes.n_rows)] for i in range(codes.n_rows)]
    )
    assert matrix.dtype == np.float32
    assert matrix.shape == (37, 37)
    np.testing.assert_allclose(matrix, expected, atol=2e-6)
    assert np.array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0)


def test_all_zero_codes_are_at_cosine_distance_one(small_map: tuple[SparseCodes, np.ndarray]) -> None:
    codes, activations = small_map
    matrix = vista_distance_matrix(codes, activations, lam=0.0)
    others = [j for j in range(codes.n_rows) if j != 5]
    np.testing.assert_array_equal(matrix[5, others], 1.0)
    assert matrix[5, 20] == 1.0  # two empty codes are not alike either


def test_block_size_does_not_change_the_numbers(small_map: tuple[SparseCodes, np.ndarray]) -> None:
    codes, activations = small_map
    reference = vista_distance_matrix(codes, activations, 1.0, block=1000)
    for block in (1, 5, 16):
        np.testing.assert_allclose(vista_distance_matrix(codes, activations, 1.0, block=block), reference, atol=1e-6)


def test_dense_codes_give_the_same_matrix(small_map: tuple[SparseCodes, np.ndarray]) -> None:
    codes, activations = small_map
    np.testing.assert_allclose(
        vista_distance_matrix(codes.to_dense(), activations, 1.0),
        vista_distance_matrix(codes, activations, 1.0),
        atol=1e-6,
    )


@pytest.mark.parametrize(("k", "chunk_rows"), [(1, 4), (6, 8), (36, 7), (10, None)])
def test_knn_matches_the_full_matrix(small_map: tuple[SparseCodes, np.ndarray], k: int, chunk_rows: int | None) -> None:
    codes, activations = small_map
    indices, distances = vista_knn(codes, activations, 1.0, k, chunk_rows=chunk_rows)
    matrix = vista_distance_matrix(codes, activations, 1.0, block=chunk_rows)
    np.fill_diagonal(matrix, np.inf)
    order = np.argsort(matrix, axis=1, kind="stable")[:, :k]  # ties: lower index first
    assert indices.dtype == np.int32 and distances.dtype == np.float32
    assert indices.shape == distances.shape == (37, k)
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(distances, np.take_along_axis(matrix, order, axis=1))
    assert not np.any(indices == np.arange(37)[:, None])


def test_knn_breaks_ties_by_index() -> None:
    # Every row holds the same code and activation: all distances are 0.
    codes = SparseCodes(np.arange(7, dtype=np.int64), np.zeros(6, np.int32), np.ones(6, np.float32), 3)
    indices, distances = vista_knn(codes, np.ones(6, np.float32), 1.0, 3, chunk_rows=2)
    np.testing.assert_array_equal(indices[0], [1, 2, 3])
    np.testing.assert_array_equal(indices[4], [0, 1, 2])
    assert np.all(distances == 0)


def test_pack_keys_round_trip() -> None:
    distances = np.array([[0.0, 0.5, 0.5, 2.25]], dtype=np.float32)
    keys = pack_keys(distances)
    assert list(np.argsort(keys[0])) == [0, 1, 2, 3]
    indices, back = unpack_keys(np.sort(keys), 4)
    np.testing.assert_array_equal(indices[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(back, distances)


def test_bad_inputs_are_refused(small_map: tuple[SparseCodes, np.ndarray]) -> None:
    codes, activations = small_map
    with pytest.raises(ValueError, match="lam"):
        vista_distance_matrix(codes, activations, -1.0)
    with pytest.raises(ValueError, match="activations"):
        vista_distance_matrix(codes, activations[:-1], 1.0)
    with pytest.raises(ValueError, match="k must be"):
        vista_knn(codes, activations, 1.0, 37)
    with pytest.raises(ValueError, match="k must be"):
        vista_knn(codes, activations, 1.0, 0)
