"""Fitting lines of text into a box: cut to its height, the last line ending in … when some were cut."""

from __future__ import annotations

from textual.content import Content


def fit_lines(lines: list[Content], height: int, width: int) -> list[Content]:
    """At most `height` lines, the last one ending in … when some were cut."""
    if len(lines) <= height:
        return lines
    if height <= 0:
        return []
    last = lines[height - 1]
    return [*lines[: height - 1], last.truncate(max(1, min(last.cell_length, width - 1))) + "…"]
