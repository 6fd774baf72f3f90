"""The statistics view's figures, headless: the map's `stats.json` read once, and the numbers and
sparklines that the explorer's statistics screen draws from it.

No textual and no rich here: strings and numbers only, so the figures are testable on their own
and any front end (the TUI, a CLI) can lay them out. Corpus-derived text (tokens) is not
handled here; the screen sanitises it where it draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vista_tui.core.sanitize import sanitize
from vista_tui.mapdata import LatentStats, MapError, read_latent_stats
from vista_tui.mapdata.stats import regrid

NOT_RECORDED = "statistics were not recorded for this map: rebuild it (vista build …)"
"""What a map built before `stats.json` existed shows instead of its statistics."""
NO_QUANTILES = "no quantile examples: rebuild with --quantiles Q"
"""What a map whose harvest drew no quantile examples shows in their place."""
NO_UNEMBEDDING = "no unembedding"
"""What stands for the logits when there are none and no note says why."""

SPARK = "▁▂▃▄▅▆▇█"
"""Eighths of a cell, lowest first."""


@dataclass(frozen=True)
class StatsReading:
    """The outcome of reading a map's `stats.json`: the statistics, or why there are none."""

    stats: LatentStats | None
    """None when the map has no statistics, or when they could not be read (see `error`)."""
    error: str = ""
    """The reader's one line when the file is unreadable; empty otherwise."""

    @property
    def message(self) -> str:
        """The one line shown in place of the statistics; empty when there are statistics."""
        if self.error:
            return f"statistics are unreadable: {self.error}"
        return NOT_RECORDED if self.stats is None else ""


def read_stats(map_dir: Path) -> StatsReading:
    """Read `<map>/stats.json`; an unreadable file becomes a one-line error, never an exception."""
    try:
        return StatsReading(read_latent_stats(map_dir))
    except MapError as error:
        return StatsReading(None, sanitize(str(error), 400))


def format_share(fraction: float) -> str:
    """A fraction as a percentage with three significant digits: '40.0%', '0.152%', '0.000123%'."""
    if not math.isfinite(fraction) or fraction <= 0:
        return "0%"
    percent = fraction * 100
    decimals = max(0, min(8, 2 - math.floor(math.log10(percent))))
    return f"{percent:.{decimals}f}%"


def density_line(stats: LatentStats) -> str:
    """'density 0.152% (1,520 of 1,000,000 tokens) · max activation 12.3'."""
    return (
        f"density {format_share(stats.density)} ({stats.n_fired:,} of {stats.n_tokens_seen:,} tokens)"
        f" · max activation {stats.max_activation:.3g}"
    )


def spark_cells(counts: Sequence[int], width: int) -> list[float]:
    """Counts laid out on `width` cells: neighbouring bins averaged (never summed, so a cell that
    holds three bins stands no taller than one holding two), or each bin repeated across
    `width // len(counts)` cells when there are fewer bins than cells."""
    if width <= 0 or not counts:
        return []
    if len(counts) > width:
        sums = regrid(counts, width)
        sizes = regrid([1] * len(counts), width)
        return [total / size for total, size in zip(sums, sizes, strict=True)]
    repeat = width // len(counts)
    return [float(count) for count in counts for _ in range(repeat)]


def spark_blocks(values: Sequence[float], height: int = 1) -> list[str]:
    """Values as columns of block characters `height` lines tall (top line first), scaled to their
    largest: nothing is blank, anything else at least the lowest eighth, the largest a full column."""
    top = max(values, default=0.0)
    height = max(1, height)
    if not top > 0:
        return [" " * len(values)] * height
    steps = len(SPARK) * height
    # Eighths of a cell each column fills, from the bottom line up.
    filled = [0 if not value > 0 else min(steps, max(1, math.ceil(value / top * steps))) for value in values]
    lines = []
    for line in reversed(range(height)):
        floor = line * len(SPARK)
        lines.append("".join(" " if f <= floor else SPARK[min(len(SPARK), f - floor) - 1] for f in filled))
    return lines


def last_position(*profiles: Sequence[int]) -> int:
    """The last input position any of the profiles counts a firing at (-1 when none does)."""
    return max((i for profile in profiles for i, count in enumerate(profile) if count), default=-1)


def format_activation_range(lo: float, hi: float) -> str:
    """An activation interval as its heading shows it: '0.41–0.82'."""
    return f"{lo:.2f}–{hi:.2f}"


def format_axis(value: float) -> str:
    """An axis end: '16', '0.5', '1.2e+03'."""
    return f"{value:.3g}"


def logits_message(stats: LatentStats) -> str:
    """What stands for the logits when there are none: the build's note, else 'no unembedding'; empty when there are."""
    if stats.logits is not None and (stats.logits.positive or stats.logits.negative):
        return ""
    if stats.logits is not None:
        return "no logits recorded"
    return sanitize(stats.logits_note, 300) if stats.logits_note.strip() else NO_UNEMBEDDING
