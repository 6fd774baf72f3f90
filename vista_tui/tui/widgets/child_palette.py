"""Colours of a map's children in a second SAE (`C`): one per child rank, the same in the minimap, the
contexts and the legend.

Okabe–Ito's colour-blind-safe hues first; ranks past the palette share its last colour (the
legend says "+N more children").
"""

from __future__ import annotations

from rich.style import Style

CHILD_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#CC79A7", "#D55E00", "#0072B2", "#B0B0B0")
"""By child rank: the root's most dominant child first."""

SWATCH = "■"
"""The legend's colour sample."""


def child_colour(rank: int) -> str:
    """The colour of a child rank (ranks past the palette share its last colour)."""
    return CHILD_COLOURS[min(max(rank, 0), len(CHILD_COLOURS) - 1)]


def child_style(rank: int) -> Style:
    """The bold foreground of a child rank."""
    return Style(color=child_colour(rank), bold=True)
