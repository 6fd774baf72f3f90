"""The labelled synthetic map (tests/helpers/synthetic_map.py, `agreement=True`) with a published
explanation and a `scores.json` written through the real writer (`write_scores`).

The published explanation is "muscle-related terms": it covers the muscle sense and misses the
others, so its coverage has one high row, one mid and two near chance. The scores are fixed
numbers, not computed: what the explorer shows of them is under test, not the scorers. Fuzzing
is left out of the coverage and of some readings, so that "—" (not scored) shows too.
"""

from __future__ import annotations

import math
from pathlib import Path

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import (
    ClusterNode,
    MapReader,
    MapScores,
    NodeScores,
    PublishedExplanation,
    PublishedExplanations,
    write_published_explanations,
    write_scores,
)
from vista_tui.mapdata.scores import MIN_COVERAGE_SHARE, ClusterCoverage, Coverage, ReadingScore

PUBLISHED = "muscle-related terms"
"""The published explanation: one sense of four."""
CREATED = "2026-11-01T12:00:00+00:00"

COVERAGE = {
    "muscle": {"detection": 0.93, "embedding": 0.96},
    "mustard": {"detection": 0.52, "embedding": 0.57},
    "music": {"detection": 0.48, "embedding": 0.61},
    "museum": {"detection": 0.66, "embedding": 0.71},
}
"""The published explanation's score on each first-level cluster, per scorer."""
OVERALL = {"detection": 0.64, "embedding": 0.72}
"""Its score on all contexts."""

READING_SCORES = {
    "llm_label": {"detection": 0.82, "fuzzing": 0.71, "embedding": 0.90},
    "llm_explanation": {"detection": 0.86, "fuzzing": 0.74, "embedding": 0.88},
    "visual_prompt": {"detection": 0.58, "embedding": 0.77},
    "keywords": {"detection": 0.79, "fuzzing": 0.55, "embedding": 0.83},
}
"""Every scored node's readings, before its sense's offset (fuzzing never scored the visual prompt)."""
SENSE_OFFSET = {"root": -0.04, "muscle": 0.05, "mustard": -0.10, "music": -0.20, "museum": 0.0}


def _score(text: str, score: float, scorer: str) -> ReadingScore:
    """A reading's score as `vista score` writes it (fixed counts and time)."""
    llm = scorer != "embedding"
    return ReadingScore(
        explanation=text,
        score=round(min(1.0, max(0.0, score)), 4),
        precision=round(min(1.0, score + 0.03), 4) if llm else math.nan,
        recall=round(max(0.0, score - 0.05), 4) if llm else math.nan,
        n_positive=20,
        n_negative=20,
        negatives="random",
        backend="openai" if llm else "minilm",
        model="fixed-llm" if llm else "all-MiniLM-L6-v2",
        created=CREATED,
    )


def _sense_of(node: ClusterNode, root: ClusterNode) -> str | None:
    """The planted sense of a first-level cluster (its first keyword), 'root', or None for the rest."""
    if node.node_id == root.node_id:
        return "root"
    if node.parent_id == root.node_id and node.kind == "cluster":
        return node.labels.keywords[0]
    return None


def build_scored_map(map_dir: Path, *, coverage: bool = True, seed: int = 1, latent: int = 7) -> Path:
    """The labelled synthetic map with scores for the root and its first-level clusters (not the deeper ones).

    `coverage=False` leaves out the published explanation and its coverage (the nodes' other
    readings stay scored).
    """
    build_synthetic_map(map_dir, n=180, seed=seed, latent=latent, agreement=True)
    reader = MapReader(map_dir)
    nodes = reader.tree
    root = nodes[0]
    if coverage:
        write_published_explanations(
            map_dir,
            PublishedExplanations(
                latent=latent,
                explanations=(
                    PublishedExplanation(PUBLISHED, model_id="synthetic-model", index=str(latent), imported=CREATED),
                ),
            ),
        )
    texts = {
        "llm_label": lambda n: n.labels.llm_label,
        "llm_explanation": lambda n: n.labels.llm_explanation,
        "visual_prompt": lambda n: n.labels.visual_prompt,
        "keywords": lambda n: ", ".join(n.labels.keywords),
    }
    scored: dict[str, NodeScores] = {}
    first_level: list[tuple[ClusterNode, str]] = []
    for node in nodes:
        sense = _sense_of(node, root)
        if sense is None:
            continue
        readings: dict[str, dict[str, ReadingScore]] = {}
        for kind, by_scorer in READING_SCORES.items():
            text = texts[kind](node)
            if text:
                readings[kind] = {
                    scorer: _score(text, value + SENSE_OFFSET[sense], scorer) for scorer, value in by_scorer.items()
                }
        if coverage:
            published = OVERALL if sense == "root" else COVERAGE[sense]
            readings["published"] = {scorer: _score(PUBLISHED, value, scorer) for scorer, value in published.items()}
        scored[node.node_id] = NodeScores(readings)
        if sense != "root":
            first_level.append((node, sense))
    tables: dict[str, Coverage] = {}
    if coverage:
        first_level.sort(key=lambda pair: -pair[0].size)
        for scorer, overall in OVERALL.items():
            rows = tuple(
                ClusterCoverage(node.node_id, COVERAGE[sense][scorer], node.size, node.size / root.size)
                for node, sense in first_level
            )
            big = [row for row in rows if row.share >= MIN_COVERAGE_SHARE]
            worst = min(big, key=lambda row: row.score) if big else None
            tables[scorer] = Coverage(
                explanation=PUBLISHED,
                score=overall,
                clusters=rows,
                worst=worst.node_id if worst is not None else None,
                worst_score=worst.score if worst is not None else math.nan,
                created=CREATED,
            )
    write_scores(map_dir, MapScores(nodes=scored, coverage=tables))
    return map_dir


def corrupt_scores(map_dir: Path) -> Path:
    """Overwrite the map's `scores.json` with a torn write."""
    (map_dir / "scores.json").write_text('{"schema_version": 1, "nodes": {"abc', encoding="utf-8")
    return map_dir
