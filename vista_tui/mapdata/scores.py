"""`<map>/scores.json`: how well each reading of a node predicts where the latent fires.

Written by the score step (`pipeline.score`, `vista score`), read by the explorer and by
`vista export`. Per node id, per reading kind (`READING_KINDS`: the LLM label, its explanation,
the visual prompt, the keywords, the focus-token summary, the published explanation), per
scorer (`SCORERS`: detection, fuzzing, embedding) one `ReadingScore`: the text scored, its score
(balanced accuracy for the LLM scorers, ROC AUC for the embedding scorer), and what it was
computed from. Beside the nodes, `coverage`: per scorer, the published explanation's score on
every first-level cluster and on all contexts, and the worst-covered cluster that holds at least
`MIN_COVERAGE_SHARE` of the contexts.

`write_scores` merges into what is there (a score replaces the one of the same node, reading and
scorer; coverage replaces that of the same scorer), so scorers run one at a time accumulate. The
standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vista_tui.mapdata.atomic import atomic_write_json
from vista_tui.mapdata.errors import MapCorruptError

SCORES_FILE = "scores.json"
"""Written by `pipeline.score`: each reading of each node scored against the contexts."""
SCORES_SCHEMA_VERSION = 1
READING_KINDS = ("llm_label", "llm_explanation", "visual_prompt", "keywords", "focus_tokens", "published")
"""What is scored per node, in the order tables show it."""
SCORERS = ("detection", "fuzzing", "embedding")
"""How a reading is scored: two LLM scorers (balanced accuracy) and one offline (ROC AUC)."""
MIN_COVERAGE_SHARE = 0.10
"""A cluster takes part in the worst-covered summary only when it holds at least this share of the contexts."""


def _number(value: Any) -> float:
    """A score from the file: null (or a missing key) reads as NaN."""
    return math.nan if value is None else float(value)


def _json_number(value: float) -> float | None:
    """A score for the file: NaN (nothing to compute it from) is written as null."""
    return None if not math.isfinite(value) else value


@dataclass(frozen=True)
class ReadingScore:
    """One reading of one node, scored by one scorer."""

    explanation: str
    """The text scored (the reading as it was when scored: a relabelled node's old score names its old text)."""
    score: float
    """Balanced accuracy (detection, fuzzing: 0.5 is chance) or ROC AUC (embedding); NaN without both classes."""
    precision: float = math.nan
    """Of the items called activating, the share that were (LLM scorers; NaN for embedding or none called)."""
    recall: float = math.nan
    """Of the activating items, the share called activating (LLM scorers; NaN for embedding)."""
    n_positive: int = 0
    """Activating items scored (the node's held-out contexts)."""
    n_negative: int = 0
    """Non-activating items scored."""
    n_failed: int = 0
    """Items left unscored: their request failed (a malformed reply, an endpoint error)."""
    negatives: str = ""
    """Where the non-activating items came from: `random`, `siblings` or `store`."""
    backend: str = ""
    """`openai`, `transformers` or `minilm` (the embedding scorer's encoder family)."""
    model: str = ""
    """The model that answered, or the encoder."""
    created: str = ""
    """ISO-8601 UTC time it was scored."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "explanation": self.explanation,
            "score": _json_number(self.score),
            "precision": _json_number(self.precision),
            "recall": _json_number(self.recall),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "n_failed": self.n_failed,
            "negatives": self.negatives,
            "backend": self.backend,
            "model": self.model,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ReadingScore:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(
            explanation=str(raw["explanation"]),
            score=_number(raw.get("score")),
            precision=_number(raw.get("precision")),
            recall=_number(raw.get("recall")),
            n_positive=int(raw.get("n_positive", 0)),
            n_negative=int(raw.get("n_negative", 0)),
            n_failed=int(raw.get("n_failed", 0)),
            negatives=str(raw.get("negatives", "")),
            backend=str(raw.get("backend", "")),
            model=str(raw.get("model", "")),
            created=str(raw.get("created", "")),
        )


@dataclass(frozen=True)
class NodeScores:
    """Every score of one node: reading kind -> scorer -> score."""

    readings: Mapping[str, Mapping[str, ReadingScore]] = field(default_factory=dict)

    def get(self, reading: str, scorer: str) -> ReadingScore | None:
        """The score of `reading` by `scorer`, None when it was not scored."""
        return self.readings.get(reading, {}).get(scorer)

    def merged(self, newer: NodeScores) -> NodeScores:
        """These scores with `newer`'s on top (same reading and scorer: newer wins)."""
        readings = {kind: dict(by_scorer) for kind, by_scorer in self.readings.items()}
        for kind, by_scorer in newer.readings.items():
            readings.setdefault(kind, {}).update(by_scorer)
        return NodeScores(readings)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            kind: {scorer: score.to_dict() for scorer, score in by_scorer.items()}
            for kind, by_scorer in self.readings.items()
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NodeScores:
        """Read `to_dict`'s object."""
        return cls(
            {
                str(kind): {str(scorer): ReadingScore.from_dict(score) for scorer, score in by_scorer.items()}
                for kind, by_scorer in raw.items()
            }
        )


@dataclass(frozen=True)
class ClusterCoverage:
    """The published explanation's score on one first-level cluster."""

    node_id: str
    score: float
    """As the node's `published` score by the same scorer; NaN when it could not be scored."""
    n_contexts: int
    """The cluster's contexts."""
    share: float
    """Its share of all the map's contexts."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "node_id": self.node_id,
            "score": _json_number(self.score),
            "n_contexts": self.n_contexts,
            "share": self.share,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ClusterCoverage:
        """Read `to_dict`'s object."""
        return cls(str(raw["node_id"]), _number(raw.get("score")), int(raw["n_contexts"]), float(raw["share"]))


@dataclass(frozen=True)
class Coverage:
    """Which sub-senses the published explanation covers, by one scorer."""

    explanation: str
    """The published explanation scored (the first one imported)."""
    score: float
    """Its score on all of the map's contexts (the root's `published` score)."""
    clusters: tuple[ClusterCoverage, ...] = ()
    """Every first-level cluster (noise left out), largest first."""
    worst: str | None = None
    """The worst-covered cluster holding at least `MIN_COVERAGE_SHARE` of the contexts (None: none does)."""
    worst_score: float = math.nan
    """Its score."""
    created: str = ""

    def cluster(self, node_id: str) -> ClusterCoverage | None:
        """The coverage row of one first-level cluster, None when it is not one."""
        return next((row for row in self.clusters if row.node_id == node_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "explanation": self.explanation,
            "score": _json_number(self.score),
            "clusters": [row.to_dict() for row in self.clusters],
            "worst": self.worst,
            "worst_score": _json_number(self.worst_score),
            "min_share": MIN_COVERAGE_SHARE,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Coverage:
        """Read `to_dict`'s object (unknown keys ignored)."""
        worst = raw.get("worst")
        return cls(
            explanation=str(raw["explanation"]),
            score=_number(raw.get("score")),
            clusters=tuple(ClusterCoverage.from_dict(row) for row in raw.get("clusters", [])),
            worst=None if worst is None else str(worst),
            worst_score=_number(raw.get("worst_score")),
            created=str(raw.get("created", "")),
        )


@dataclass(frozen=True)
class MapScores:
    """The whole file: node id -> its scores, and the published explanation's coverage per scorer."""

    nodes: Mapping[str, NodeScores] = field(default_factory=dict)
    coverage: Mapping[str, Coverage] = field(default_factory=dict)
    """Scorer -> the published explanation's coverage (absent: no published explanation was scored)."""
    schema_version: int = SCORES_SCHEMA_VERSION

    def get(self, node_id: str, reading: str, scorer: str) -> ReadingScore | None:
        """One score, None when it was not computed."""
        node = self.nodes.get(node_id)
        return None if node is None else node.get(reading, scorer)

    def merged(self, newer: MapScores) -> MapScores:
        """These scores with `newer`'s on top: per node, reading and scorer, and coverage per scorer."""
        nodes = dict(self.nodes)
        for node_id, scores in newer.nodes.items():
            nodes[node_id] = nodes[node_id].merged(scores) if node_id in nodes else scores
        return replace(self, nodes=nodes, coverage={**self.coverage, **newer.coverage})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "schema_version": self.schema_version,
            "nodes": {node_id: scores.to_dict() for node_id, scores in self.nodes.items()},
            "coverage": {scorer: coverage.to_dict() for scorer, coverage in self.coverage.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MapScores:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(
            nodes={str(node_id): NodeScores.from_dict(scores) for node_id, scores in raw.get("nodes", {}).items()},
            coverage={str(scorer): Coverage.from_dict(cov) for scorer, cov in raw.get("coverage", {}).items()},
        )


def read_scores(map_dir: Path) -> MapScores | None:
    """The map's scores; None when it has none; MapCorruptError (one line) when the file is unreadable
    or of another schema version."""
    path = Path(map_dir) / SCORES_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        version = raw.get("schema_version")
    except (OSError, ValueError, AttributeError) as error:
        raise MapCorruptError(
            f"{path} is unreadable ({_first_line(error)}): run `vista score` again, or delete it"
        ) from None
    if version != SCORES_SCHEMA_VERSION:
        raise MapCorruptError(
            f"{path} is scores version {version!r}, this vista reads {SCORES_SCHEMA_VERSION}: run `vista score` again"
        )
    try:
        return MapScores.from_dict(raw)
    except (KeyError, ValueError, AttributeError, TypeError) as error:
        raise MapCorruptError(
            f"{path} is unreadable ({type(error).__name__}: {_first_line(error)}): run `vista score` again, or delete it"
        ) from None


def write_scores(map_dir: Path, scores: MapScores) -> MapScores:
    """Merge `scores` into `<map>/scores.json` and write it atomically; returns what the file now holds.

    An unreadable file is replaced (scores are recomputed, never typed in: nothing is lost that a
    rerun does not give back).
    """
    try:
        present = read_scores(map_dir)
    except MapCorruptError:
        present = None
    merged = present.merged(scores) if present is not None else scores
    atomic_write_json(Path(map_dir) / SCORES_FILE, merged.to_dict())
    return merged


def map_scores(map_dir: Path) -> MapScores:
    """The map's scores, empty when there are none or the file is unreadable.

    For the explorer: a broken side file must not stop a map from opening.
    """
    try:
        return read_scores(map_dir) or MapScores()
    except MapCorruptError:
        return MapScores()


def _first_line(error: BaseException) -> str:
    """An error's message as one line."""
    return " ".join(str(error).split()) or type(error).__name__
