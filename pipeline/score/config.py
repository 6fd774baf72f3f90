"""The score step's config, and the errors its modules share.

`ScoreConfig` is plain data validated without I/O. The LLM scorers take the label step's
`LabelConfig` (endpoint or local model, concurrency, retries, timeouts, prices): `vista score`
fills it from the same options and environment as `vista label`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pipeline.label.config import LabelConfig
from vista_tui.mapdata import READING_KINDS, SCORERS

Scorer = Literal["detection", "fuzzing", "embedding"]
NegativesSource = Literal["random", "siblings", "store"]
LLM_SCORERS = ("detection", "fuzzing")
"""The scorers that ask an LLM (the embedding scorer runs offline)."""
NEGATIVE_SOURCES = ("random", "siblings", "store")


class ScoreError(ValueError):
    """Scoring cannot go on; the message is one line for the user."""


@dataclass(frozen=True)
class ScoreConfig:
    """What to score, against what, and how hard to push the LLM.

    The sample sizes follow delphi where they fit: held-out activating examples drawn evenly
    across the node's activation deciles, as many non-activating ones, shown a handful per
    request. delphi draws 50 + 50; 20 + 20 here keeps an LLM run to 4 requests per node,
    reading and scorer at 10 items a request (`n_positive`, `n_negative`, `items_per_request`).
    """

    scorers: tuple[str, ...] = ("embedding",)
    negatives: str = "random"
    """Non-activating items: `random` (the harvest's all-zero windows, negatives.parquet), `siblings`
    (the parent's other contexts: hard negatives), `store` (contexts of the store's other maps)."""
    readings: tuple[str, ...] = READING_KINDS
    """Which readings of a node to score (those a node lacks are skipped)."""
    llm: LabelConfig | None = None
    """Who answers the LLM scorers (None: only the embedding scorer can run)."""
    n_positive: int = 20
    """Held-out activating contexts per node shown to the LLM scorers."""
    n_negative: int = 20
    """Non-activating items per node shown to the LLM scorers."""
    items_per_request: int = 10
    """Items quoted in one request."""
    embedding_positive: int = 500
    """Held-out contexts per node the embedding scorer compares (the root's thousands would all cost time)."""
    embedding_negative: int = 500
    """Non-activating items per node the embedding scorer compares."""
    label_contexts: int = 12
    """How many contexts the label step quoted per node (`vista label --n-contexts`): those are not held out."""
    store_per_map: int = 100
    """With `negatives="store"`: contexts drawn from each other map of the store."""
    encoder: str = "minilm"
    """The embedding scorer's sentence encoder (a `pipeline.models.load_model` name)."""
    device: str = "cpu"
    max_context_chars: int = 240
    """Longest quoted item (cut around its focus token)."""
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse a bad value with a ValueError naming it (no I/O)."""
        object.__setattr__(self, "scorers", tuple(dict.fromkeys(self.scorers)))
        object.__setattr__(self, "readings", tuple(dict.fromkeys(self.readings)))
        if not self.scorers:
            raise ValueError("scorers must name at least one of detection, fuzzing, embedding")
        for scorer in self.scorers:
            if scorer not in SCORERS:
                raise ValueError(f"scorer must be one of {', '.join(SCORERS)}, got {scorer!r}")
        for reading in self.readings:
            if reading not in READING_KINDS:
                raise ValueError(f"reading must be one of {', '.join(READING_KINDS)}, got {reading!r}")
        if self.negatives not in NEGATIVE_SOURCES:
            raise ValueError(f"negatives must be one of {', '.join(NEGATIVE_SOURCES)}, got {self.negatives!r}")
        if self.llm is None and any(scorer in LLM_SCORERS for scorer in self.scorers):
            raise ValueError(
                "the detection and fuzzing scorers need an LLM: give --base-url (or --backend transformers)"
            )
        for name in (
            "n_positive",
            "n_negative",
            "items_per_request",
            "embedding_positive",
            "embedding_negative",
            "store_per_map",
            "max_context_chars",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.label_contexts, int) or self.label_contexts < 0:
            raise ValueError(f"label_contexts must be a non-negative integer, got {self.label_contexts!r}")

    @property
    def llm_scorers(self) -> tuple[str, ...]:
        """The scorers of this run that ask the LLM."""
        return tuple(scorer for scorer in self.scorers if scorer in LLM_SCORERS)

    def params(self) -> dict[str, Any]:
        """What shapes the scores, for the manifest (never the API key)."""
        return {
            "scorers": list(self.scorers),
            "negatives": self.negatives,
            "readings": list(self.readings),
            "llm": self.llm.params() if self.llm is not None and self.llm_scorers else None,
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
            "items_per_request": self.items_per_request,
            "embedding_positive": self.embedding_positive,
            "embedding_negative": self.embedding_negative,
            "label_contexts": self.label_contexts,
            "encoder": self.encoder if "embedding" in self.scorers else None,
            "seed": self.seed,
        }
