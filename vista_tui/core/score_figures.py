"""What the explorer shows of a map's `scores.json`, headless: the file read once, each reading's
scores as short figures with a quality, and the published explanation's coverage as rows.

No textual and no rich here: strings, numbers and small records, so that the figures are
testable on their own; the labels panel and the coverage screen colour and lay them out. Text
from the map (explanations, node ids) is not sanitised here except in the one-line messages;
the screens sanitise what they draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from vista_tui.core.sanitize import sanitize
from vista_tui.mapdata import MapError, MapScores, read_scores
from vista_tui.mapdata.scores import MIN_COVERAGE_SHARE, SCORERS, SCORES_FILE

Quality = Literal["low", "mid", "high", "none"]
"""How a score reads: near chance, fair, good; `none` when there is no score."""

LOW_BELOW = 0.60
"""A score below this is barely above chance (0.5): it is shown as low."""
HIGH_FROM = 0.75
"""A score from this on is shown as high; between the two, as mid."""

SCORER_ABBREVIATIONS = {"detection": "det", "fuzzing": "fuzz", "embedding": "emb"}
"""How the panels name a scorer."""
COMPACT_ABBREVIATIONS = {"detection": "d", "fuzzing": "f", "embedding": "e"}
"""The names in the narrowest format."""
SCORER_MEANINGS = {
    "detection": "detection: an LLM tells the node's contexts from non-activating ones by the reading (balanced accuracy)",
    "fuzzing": "fuzzing: an LLM judges whether highlighted tokens are the ones the latent fired on (balanced accuracy)",
    "embedding": "embedding: MiniLM cosine of the reading to the node's contexts vs non-activating ones (ROC AUC)",
}
"""One line per scorer: what its score measures."""
SCORES_LEGEND = (
    "scores: det detection · fuzz fuzzing (an LLM, balanced accuracy) · emb embedding (ROC AUC);"
    " 0.5 is chance, 1 perfect; — not scored"
)
"""The one line that says what the labels panel's scores mean (help, tooltip)."""

READING_NAMES = {
    "llm_label": "label",
    "llm_explanation": "explanation",
    "visual_prompt": "visual",
    "keywords": "keywords",
    "focus_tokens": "focus tokens",
    "published": "Neuronpedia",
}
"""How the labels panel names each reading kind of `scores.json`."""

NOT_SCORED = "—"


def no_scores_hint(map_id: str) -> str:
    """What stands for scores that were never computed: the command that computes them."""
    return f"no scores for this map: run `vista score {sanitize(map_id, 40)}`"


def no_coverage_hint(map_id: str, has_published: bool) -> str:
    """What stands for a missing coverage table: the commands that make one."""
    name = sanitize(map_id, 40)
    if not has_published:
        return (
            f"no coverage: import the latent's published explanation, `vista import-explanations {name} FILE`,"
            f" then run `vista score {name}`"
        )
    return f"no coverage: the published explanation is not scored yet, run `vista score {name}`"


@dataclass(frozen=True)
class ScoresReading:
    """The outcome of reading a map's `scores.json`: the scores, or why there are none."""

    scores: MapScores | None
    """None when the map has no scores file, or when it could not be read (see `error`)."""
    error: str = ""
    """The reader's one line when the file is unreadable; empty otherwise."""
    signature: tuple[int, int] | None = None
    """The file's (mtime in ns, size) when it was read; None when there was no file."""

    @property
    def message(self) -> str:
        """The one line shown when the scores are unreadable; empty otherwise."""
        return f"scores are unreadable: {self.error}" if self.error else ""

    @cached_property
    def scorers(self) -> tuple[str, ...]:
        """The scorers that scored anything in this map, in `SCORERS` order."""
        if self.scores is None:
            return ()
        used = set(self.scores.coverage)
        for node in self.scores.nodes.values():
            for by_scorer in node.readings.values():
                used.update(by_scorer)
        return tuple(scorer for scorer in SCORERS if scorer in used)

    @cached_property
    def coverage_scorers(self) -> tuple[str, ...]:
        """The scorers with a coverage table, in `SCORERS` order."""
        coverage = self.scores.coverage if self.scores is not None else {}
        return tuple(scorer for scorer in SCORERS if scorer in coverage)

    @property
    def primary_scorer(self) -> str | None:
        """The scorer the coverage is sorted by: the first of `SCORERS` with a coverage table."""
        return self.coverage_scorers[0] if self.coverage_scorers else None

    def score(self, node_id: str, reading: str, scorer: str) -> float:
        """One score, NaN when it was not computed."""
        if self.scores is None:
            return math.nan
        found = self.scores.get(node_id, reading, scorer)
        return math.nan if found is None else found.score

    def has_node(self, node_id: str) -> bool:
        """Whether any reading of the node was scored."""
        return self.scores is not None and node_id in self.scores.nodes

    def scored_readings(self, node_id: str) -> tuple[str, ...]:
        """The reading kinds of the node with at least one score."""
        if self.scores is None or node_id not in self.scores.nodes:
            return ()
        return tuple(kind for kind, by_scorer in self.scores.nodes[node_id].readings.items() if by_scorer)


def scores_signature(map_dir: Path) -> tuple[int, int] | None:
    """The scores file's (mtime in ns, size), None without one: a changed value means `vista score` wrote it."""
    try:
        status = (Path(map_dir) / SCORES_FILE).stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size)


def read_score_reading(map_dir: Path) -> ScoresReading:
    """Read `<map>/scores.json`; an unreadable file becomes a one-line error, never an exception."""
    signature = scores_signature(map_dir)
    try:
        return ScoresReading(read_scores(map_dir), signature=signature)
    except MapError as error:
        return ScoresReading(None, sanitize(" ".join(str(error).split()), 400), signature=signature)


def quality(score: float) -> Quality:
    """Low (near chance), mid or high; `none` for NaN."""
    if not math.isfinite(score):
        return "none"
    if score < LOW_BELOW:
        return "low"
    return "mid" if score < HIGH_FROM else "high"


def format_score(score: float, *, compact: bool = False) -> str:
    """'0.82' ('.82' compact), '1.00' ('1.0'), or '—' for no score."""
    if not math.isfinite(score):
        return NOT_SCORED
    text = f"{score:.2f}"
    if compact:
        text = "1.0" if text == "1.00" else text.lstrip("0") or "0"
    return text


@dataclass(frozen=True)
class ScoreFigure:
    """One scorer's score of one reading, as shown: the scorer's short name, the figure, its quality."""

    scorer: str
    name: str
    """`det`, `fuzz`, `emb` (or `d`, `f`, `e` compact)."""
    figure: str
    quality: Quality


def score_figures(reading: ScoresReading, node_id: str, kind: str, *, compact: bool = False) -> list[ScoreFigure]:
    """The scores of one reading of a node by every scorer the map used, `—` where it is not scored."""
    names = COMPACT_ABBREVIATIONS if compact else SCORER_ABBREVIATIONS
    figures = []
    for scorer in reading.scorers:
        score = reading.score(node_id, kind, scorer)
        figures.append(ScoreFigure(scorer, names[scorer], format_score(score, compact=compact), quality(score)))
    return figures


def score_text(figures: list[ScoreFigure], *, compact: bool = False) -> str:
    """'det 0.82 · fuzz 0.71 · emb 0.90' ('d.82 f.71 e.90' compact): the figures as plain text."""
    if compact:
        return " ".join(f"{figure.name}{figure.figure}" for figure in figures)
    return " · ".join(f"{figure.name} {figure.figure}" for figure in figures)


# -- coverage ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoverageRow:
    """One first-level cluster in the coverage table: its size and the published explanation's scores."""

    node_id: str
    n_contexts: int
    share: float
    """Of all the map's contexts."""
    scores: Mapping[str, float]
    """Scorer -> the published explanation's score on this cluster (NaN: not scored)."""

    def score(self, scorer: str | None) -> float:
        """The score by `scorer`, NaN when there is none."""
        return math.nan if scorer is None else self.scores.get(scorer, math.nan)


def coverage_rows(reading: ScoresReading) -> list[CoverageRow]:
    """Every first-level cluster of any coverage table, worst covered first by the primary scorer.

    Unscored clusters come last; ties keep the larger cluster first.
    """
    if reading.scores is None:
        return []
    primary = reading.primary_scorer
    rows: dict[str, CoverageRow] = {}
    for scorer in reading.coverage_scorers:
        for cluster in reading.scores.coverage[scorer].clusters:
            row = rows.get(cluster.node_id)
            scores = dict(row.scores) if row is not None else {}
            scores[scorer] = cluster.score
            rows[cluster.node_id] = CoverageRow(cluster.node_id, cluster.n_contexts, cluster.share, scores)

    def key(row: CoverageRow) -> tuple[bool, float, float]:
        """Scored before unscored, then the score ascending, then the larger cluster first."""
        score = row.score(primary)
        return (not math.isfinite(score), score if math.isfinite(score) else 0.0, -row.share)

    return sorted(rows.values(), key=key)


def worst_covered_order(reading: ScoresReading) -> dict[str, float]:
    """First-level cluster id -> the published explanation's score by the primary scorer (the tree's `w` order)."""
    primary = reading.primary_scorer
    if reading.scores is None or primary is None:
        return {}
    return {cluster.node_id: cluster.score for cluster in reading.scores.coverage[primary].clusters}


@dataclass(frozen=True)
class CoverageSummary:
    """The latent-level summary: the published explanation, its scores on all contexts, the worst-covered cluster."""

    explanation: str
    """As scored (not sanitised)."""
    overall: list[ScoreFigure]
    """Its score on all contexts, per scorer with a coverage table."""
    worst: str | None
    """The worst-covered cluster holding at least `MIN_COVERAGE_SHARE` of the contexts (primary scorer)."""
    worst_figure: ScoreFigure | None
    worst_share: float


def coverage_summary(reading: ScoresReading) -> CoverageSummary | None:
    """The summary of the primary scorer's coverage (and the others' overall scores); None without coverage."""
    primary = reading.primary_scorer
    if reading.scores is None or primary is None:
        return None
    tables = reading.scores.coverage
    overall = [
        ScoreFigure(
            scorer, SCORER_ABBREVIATIONS[scorer], format_score(tables[scorer].score), quality(tables[scorer].score)
        )
        for scorer in reading.coverage_scorers
    ]
    table = tables[primary]
    worst_row = table.cluster(table.worst) if table.worst is not None else None
    worst_figure = None
    if table.worst is not None:
        worst_figure = ScoreFigure(
            primary, SCORER_ABBREVIATIONS[primary], format_score(table.worst_score), quality(table.worst_score)
        )
    return CoverageSummary(
        explanation=table.explanation,
        overall=overall,
        worst=table.worst,
        worst_figure=worst_figure,
        worst_share=worst_row.share if worst_row is not None else math.nan,
    )


MIN_SHARE_TEXT = f"≥{MIN_COVERAGE_SHARE:.0%}"
"""The summary's threshold as it is shown: '≥10%'."""

BAR_CELLS = "▏▎▍▌▋▊▉█"
"""Eighths of a cell, smallest first."""


def score_bar(score: float, width: int) -> str:
    """A score in [0, 1] as a bar `width` cells wide (eighths of a cell); blank for NaN."""
    if not math.isfinite(score) or width <= 0:
        return ""
    eighths = round(max(0.0, min(1.0, score)) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (BAR_CELLS[rest - 1] if rest else "")).ljust(width)
