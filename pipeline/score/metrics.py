"""The scores themselves: balanced accuracy, precision and recall of yes/no verdicts, and ROC AUC.

numpy only. AUC is exact, ties counted half (the Mann-Whitney U statistic over average ranks),
so a scorer that cannot tell two items apart is credited with chance for that pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Verdicts:
    """Counts of yes/no verdicts against the truth."""

    true_positive: int = 0
    false_negative: int = 0
    false_positive: int = 0
    true_negative: int = 0

    @classmethod
    def of(cls, truth: Sequence[bool], said: Sequence[bool]) -> Verdicts:
        """Count verdicts `said` (True: activating) against `truth`."""
        pairs = list(zip(truth, said, strict=True))
        return cls(
            true_positive=sum(t and s for t, s in pairs),
            false_negative=sum(t and not s for t, s in pairs),
            false_positive=sum(s and not t for t, s in pairs),
            true_negative=sum(not t and not s for t, s in pairs),
        )

    @property
    def n_positive(self) -> int:
        """Activating items judged."""
        return self.true_positive + self.false_negative

    @property
    def n_negative(self) -> int:
        """Non-activating items judged."""
        return self.false_positive + self.true_negative

    @property
    def recall(self) -> float:
        """Activating items called activating, as a share (NaN without any)."""
        return self.true_positive / self.n_positive if self.n_positive else math.nan

    @property
    def specificity(self) -> float:
        """Non-activating items called so, as a share (NaN without any)."""
        return self.true_negative / self.n_negative if self.n_negative else math.nan

    @property
    def precision(self) -> float:
        """Items called activating that are, as a share (NaN when none was called activating)."""
        called = self.true_positive + self.false_positive
        return self.true_positive / called if called else math.nan

    @property
    def balanced_accuracy(self) -> float:
        """The mean of recall and specificity: 0.5 is chance whatever the class balance (NaN without both)."""
        return (self.recall + self.specificity) / 2


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # Runs of equal values: each gets the mean of the ranks it spans.
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.concatenate([starts[1:], [len(values)]])
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative) + P(tie) / 2: the exact ROC AUC; NaN without both classes."""
    positive = np.asarray(positive, dtype=np.float64)
    negative = np.asarray(negative, dtype=np.float64)
    if positive.size == 0 or negative.size == 0:
        return math.nan
    ranks = average_ranks(np.concatenate([positive, negative]))
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u / (positive.size * negative.size))
