"""The embedding scorer: offline, always available. How far an explanation's embedding tells a node's
contexts from non-activating text.

MiniLM (the demo's encoder, mean-pooled and L2-normalised as `pipeline.agreement.Encoder` does)
embeds the explanation and every item's window; each item's score is its cosine to the
explanation, and the reading's score is the exact ROC AUC of those cosines separating the node's
held-out contexts from the negatives (`metrics.roc_auc`: 0.5 is chance, ties count half). It
needs no LLM, so it scores every reading of every node in one pass: items are embedded once per
run (the encoder caches by text) and shared by all the readings of a node and by its ancestors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.agreement import AgreementConfig, Encoder
from pipeline.score.config import ScoreConfig
from pipeline.score.metrics import roc_auc
from pipeline.score.sampling import Item


class EmbeddingScorer:
    """Scores explanations against items by the AUC of their cosines; the encoder loads on first use."""

    def __init__(self, cfg: ScoreConfig, encoder: Encoder | None = None) -> None:
        """Use `encoder` when given (tests, benchmarks), else load `cfg.encoder` when first needed."""
        self.cfg = cfg
        self._encoder = encoder

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder (loaded on first use: torch takes seconds)."""
        if self._encoder is None:
            self._encoder = Encoder(AgreementConfig(model=self.cfg.encoder, device=self.cfg.device))
        return self._encoder

    @property
    def model(self) -> str:
        """The encoder's name, as scores record it."""
        return self._encoder.name if self._encoder is not None else self.cfg.encoder

    def cosines(self, explanation: str, items: Sequence[Item]) -> np.ndarray:
        """Each item's cosine to the explanation (unit vectors: a dot product)."""
        if not items:
            return np.zeros(0, dtype=np.float32)
        vectors = self.encoder.encode([item.text for item in items])
        return vectors @ self.encoder.encode([explanation])[0]

    def score(self, explanation: str, positives: Sequence[Item], negatives: Sequence[Item]) -> float:
        """ROC AUC of the explanation's cosine separating `positives` from `negatives` (NaN without both)."""
        return roc_auc(self.cosines(explanation, positives), self.cosines(explanation, negatives))
