"""Maps ready to score: a planted map with non-activating windows, and a published explanation.

`neutral_windows` are windows of everyday words from none of the planted senses (the latent's
non-activating examples); `prepare_for_scoring` writes them as the map's negatives.parquet and,
when asked, a published explanation into explanations.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vista_tui.mapdata import (
    PublishedExplanation,
    PublishedExplanations,
    negatives_table,
    write_negatives,
    write_published_explanations,
)

NEUTRAL = [
    "train", "station", "ticket", "weather", "rain", "morning", "coffee", "computer", "keyboard", "window",
    "street", "car", "city", "river", "bridge", "meeting", "email", "report", "holiday", "beach",
    "phone", "battery", "garden", "letter", "office", "road", "school", "teacher", "paper", "market",
]  # fmt: skip
FILLER = ["the", "a", "of", "and", "in", "with", "for", "was", "is", "to", "on", "that"]


def neutral_windows(n: int = 120, width: int = 13, seed: int = 0) -> list[list[str]]:
    """`n` windows of everyday words and filler, in the synthetic maps' token style (" word")."""
    rng = np.random.default_rng(seed)
    return [[" " + str(rng.choice(FILLER if rng.random() < 0.5 else NEUTRAL)) for _ in range(width)] for _ in range(n)]


def prepare_for_scoring(map_dir: Path, published: str | None = None, windows: list[list[str]] | None = None) -> Path:
    """Give a map negatives (default: `neutral_windows()`) and, when given, a published explanation."""
    windows = neutral_windows() if windows is None else windows
    write_negatives(
        map_dir,
        negatives_table(
            context_ids=[f"negative-{i}" for i in range(len(windows))],
            doc_ids=[f"negatives/doc{i}" for i in range(len(windows))],
            tokens=windows,
            focus=[len(window) // 2 for window in windows],
        ),
    )
    if published is not None:
        write_published_explanations(
            map_dir, PublishedExplanations(latent=None, explanations=(PublishedExplanation(published),))
        )
    return map_dir
