"""Blocked top-k cosines equal a brute-force ranking, ties to the smaller index."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.match.cosine import topk_cosines


def test_blocked_topk_equals_brute_force_in_any_block_size() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(37, 16)), rng.normal(size=(53, 16))
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    sims = a_unit @ b_unit.T
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :5]
    for budget in (53, 53 * 7, 1 << 20):  # one row per block, 7 rows, all at once
        index, cos = topk_cosines(a, b, 5, budget=budget)
        np.testing.assert_array_equal(index, expected)
        np.testing.assert_allclose(cos, np.take_along_axis(sims, expected, axis=1), atol=1e-5)


def test_ties_go_to_the_smaller_index_and_k_is_capped() -> None:
    b = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])  # rows 0, 2, 3 point the same way
    index, cos = topk_cosines(np.array([[3.0, 0.0]]), b, 2)
    assert index.tolist() == [[0, 2]]
    assert cos[0] == pytest.approx([1.0, 1.0])
    index, _ = topk_cosines(np.array([[3.0, 0.0]]), b, 10)
    assert index.tolist() == [[0, 2, 3, 1]]


def test_widths_must_agree() -> None:
    with pytest.raises(ValueError, match="different widths"):
        topk_cosines(np.ones((2, 3)), np.ones((2, 4)), 1)
