"""Score every reading of a node the same way: how well it predicts where the latent fires.

A node's readings (its LLM label and explanation, its visual prompt, its keywords, its
focus-token summary, the latent's published explanation) are each scored against the node's
held-out contexts and non-activating items, by up to three scorers:

- `detection` (an LLM): does each text fit the explanation? Balanced accuracy.
- `fuzzing` (an LLM): is the marked token in each text the one the explanation describes?
  Balanced accuracy.
- `embedding` (MiniLM, offline): the ROC AUC of the explanation-to-text cosine.

The published explanation is also scored on each first-level cluster, so one sees which
sub-senses it covers (`coverage`). Everything lands in `<map>/scores.json`
(`vista_tui.mapdata.scores`); the LLM answers are cached in `<map>/scores_cache.jsonl` as they
arrive, so a rerun asks only for what is missing. The LLM scorers use the label step's backends
(`pipeline.label`): an OpenAI-compatible endpoint or a local transformers model, with its
concurrency, retries, token and cost counter.

The modules, in the order a score is made:
- `config`: `ScoreConfig` (validated without I/O) and `ScoreError`;
- `sampling`: held-out contexts and negatives (`random`, `siblings`, `store`);
- `detection`, `fuzzing`: the LLM scorers' prompts, and the strict reading of their replies;
- `embedding`: the offline scorer;
- `metrics`: balanced accuracy, precision, recall, exact ROC AUC;
- `runner`: the resumable, concurrent run over the map.
"""

from __future__ import annotations

from pipeline.score.config import LLM_SCORERS, NEGATIVE_SOURCES, ScoreConfig, ScoreError
from pipeline.score.metrics import Verdicts, roc_auc
from pipeline.score.runner import (
    DISTRIBUTIONS,
    STEP,
    VERSION,
    ScoreReport,
    coverage_of,
    focus_summary,
    node_readings,
    run,
)

Config = ScoreConfig
"""The step's config under the name every step uses."""

__all__ = [
    "DISTRIBUTIONS",
    "LLM_SCORERS",
    "NEGATIVE_SOURCES",
    "STEP",
    "VERSION",
    "Config",
    "ScoreConfig",
    "ScoreError",
    "ScoreReport",
    "Verdicts",
    "coverage_of",
    "focus_summary",
    "node_readings",
    "roc_auc",
    "run",
]
