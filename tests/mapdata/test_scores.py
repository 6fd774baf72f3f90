"""The score side files: scores.json (typed, merged, one-line errors), negatives.parquet, scores_cache.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vista_tui.mapdata import (
    NEGATIVES_FILE,
    SCORE_CACHE_FILE,
    SCORES_FILE,
    CachedAnswer,
    ClusterCoverage,
    Coverage,
    MapCorruptError,
    MapScores,
    NodeScores,
    ReadingScore,
    ScoreCacheWriter,
    map_scores,
    negatives_table,
    read_negatives,
    read_score_cache,
    read_scores,
    write_negatives,
    write_scores,
)


def _score(text: str, value: float, **more: object) -> ReadingScore:
    """A ReadingScore with the given text and score."""
    return ReadingScore(explanation=text, score=value, n_positive=20, n_negative=20, created="2026-01-01", **more)  # type: ignore[arg-type]


def test_scores_round_trip_with_nan_as_null(tmp_path: Path) -> None:
    assert read_scores(tmp_path) is None and map_scores(tmp_path) == MapScores()
    scores = MapScores(
        nodes={
            "n1": NodeScores(
                {
                    "llm_label": {"detection": _score("mustard", 0.85, precision=0.9, recall=0.8, backend="openai")},
                    "keywords": {"embedding": _score("seed, sauce", math.nan, backend="minilm")},
                }
            )
        },
        coverage={
            "embedding": Coverage(
                explanation="muscle-related terms",
                score=0.7,
                clusters=(ClusterCoverage("c1", 0.95, 60, 0.5), ClusterCoverage("c2", 0.51, 40, 0.33)),
                worst="c2",
                worst_score=0.51,
            )
        },
    )
    write_scores(tmp_path, scores)
    raw = json.loads((tmp_path / SCORES_FILE).read_text(encoding="utf-8"))
    assert raw["schema_version"] == 1
    assert raw["nodes"]["n1"]["keywords"]["embedding"]["score"] is None
    assert raw["nodes"]["n1"]["keywords"]["embedding"]["precision"] is None
    read = read_scores(tmp_path)
    assert read is not None
    assert read.get("n1", "llm_label", "detection") == scores.nodes["n1"].get("llm_label", "detection")
    assert math.isnan(read.get("n1", "keywords", "embedding").score)  # type: ignore[union-attr]
    assert read.coverage == scores.coverage
    assert read.get("n1", "published", "detection") is None and read.get("nope", "llm_label", "detection") is None


def test_write_merges_so_scorers_accumulate(tmp_path: Path) -> None:
    write_scores(tmp_path, MapScores(nodes={"n1": NodeScores({"llm_label": {"detection": _score("a", 0.6)}})}))
    merged = write_scores(
        tmp_path,
        MapScores(
            nodes={
                "n1": NodeScores(
                    {"llm_label": {"embedding": _score("a", 0.9)}, "keywords": {"embedding": _score("k", 0.7)}}
                ),
                "n2": NodeScores({"llm_label": {"detection": _score("b", 0.55)}}),
            },
            coverage={"embedding": Coverage("p", 0.8)},
        ),
    )
    write_scores(tmp_path, MapScores(nodes={"n1": NodeScores({"llm_label": {"detection": _score("a2", 0.75)}})}))
    read = read_scores(tmp_path)
    assert read is not None and merged.get("n1", "llm_label", "detection").score == 0.6  # type: ignore[union-attr]
    assert read.get("n1", "llm_label", "detection").score == 0.75  # type: ignore[union-attr]
    assert read.get("n1", "llm_label", "detection").explanation == "a2"  # type: ignore[union-attr]
    assert read.get("n1", "llm_label", "embedding").score == 0.9  # type: ignore[union-attr]
    assert read.get("n1", "keywords", "embedding").score == 0.7  # type: ignore[union-attr]
    assert read.get("n2", "llm_label", "detection").score == 0.55  # type: ignore[union-attr]
    assert read.coverage["embedding"].score == 0.8


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "is unreadable"),
        ('{"schema_version": 1, "nodes": {"n": {"llm_label": {"detection": {"score": 1}}}}}', "KeyError"),
        ('{"schema_version": 9, "nodes": {}}', "scores version 9"),
        ("[1, 2]", "is unreadable"),
    ],
)
def test_corrupt_scores_are_one_line(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / SCORES_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(MapCorruptError, match=expected) as caught:
        read_scores(tmp_path)
    assert "\n" not in str(caught.value) and SCORES_FILE in str(caught.value)
    assert map_scores(tmp_path) == MapScores()  # the explorer opens the map without them
    write_scores(tmp_path, MapScores(nodes={"n": NodeScores({"keywords": {"embedding": _score("k", 0.6)}})}))
    assert read_scores(tmp_path).get("n", "keywords", "embedding").score == 0.6  # type: ignore[union-attr]


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    write_scores(tmp_path, MapScores(nodes={"n": NodeScores({"keywords": {"embedding": _score("k", 0.6)}})}))
    raw = json.loads((tmp_path / SCORES_FILE).read_text(encoding="utf-8"))
    raw["future"] = 1
    raw["nodes"]["n"]["keywords"]["embedding"]["future"] = 2
    (tmp_path / SCORES_FILE).write_text(json.dumps(raw), encoding="utf-8")
    assert read_scores(tmp_path).get("n", "keywords", "embedding").score == 0.6  # type: ignore[union-attr]


def test_negatives_round_trip_and_corrupt(tmp_path: Path) -> None:
    assert read_negatives(tmp_path) is None
    table = negatives_table(context_ids=["a", "b"], doc_ids=["d1", "d2"], tokens=[["x", " y"], [" z"]], focus=[1, 0])
    write_negatives(tmp_path, table)
    read = read_negatives(tmp_path)
    assert read is not None and read.column("text").to_pylist() == ["x y", " z"]
    assert read.column("token_activations").to_pylist() == [[0.0, 0.0], [0.0]]
    (tmp_path / NEGATIVES_FILE).write_bytes(b"PAR1 torn")
    with pytest.raises(MapCorruptError, match=r"negatives\.parquet is unreadable") as caught:
        read_negatives(tmp_path)
    assert "\n" not in str(caught.value)


def test_score_cache_skips_torn_and_foreign_lines(tmp_path: Path) -> None:
    assert read_score_cache(tmp_path) == {}
    writer = ScoreCacheWriter(tmp_path)
    writer.append(CachedAnswer("k1", "detection", (True, False), "m", "t"))
    with (tmp_path / SCORE_CACHE_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"key": "k9", "scorer": "detection", "answers": [1, "x"]}\n{"key": "k2", "scor')
    writer.append(CachedAnswer("k3", "fuzzing", (False,), "m", "t"))
    cache = read_score_cache(tmp_path)
    assert set(cache) == {"k1", "k3"} and cache["k1"].answers == (True, False)
