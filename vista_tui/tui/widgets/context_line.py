"""One context as one line, independent of any widget: tokens sanitised and shaded once, then laid out
at any width with the focus token at a fixed column (what `ContextList` draws, a line at a time).

Pure functions of the context and the width, safe to call from the list's reading thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.cells import cell_len, get_character_cell_size

from vista_tui.core.sanitize import MAX_TOKEN_CHARS, sanitize, sanitize_token
from vista_tui.mapdata import Context

ACTIVATION_WIDTH = 6
"""Cells of the activation column (right-aligned, two decimals)."""

PREFIX_WIDTH = 1 + ACTIVATION_WIDTH + 1
"""Cursor marker, activation, one space: where the token window starts."""

FOCUS_FRACTION = 0.4
"""Where the focus token starts, as a fraction of the token window's width."""

SHADE_STEPS = (0.0, 0.12, 0.25, 0.42, 0.62)
"""How much of the shade hue each step mixes into the background (step 0: none)."""

ELLIPSIS = "…"


def format_activation(value: float) -> str:
    """An activation in exactly ACTIVATION_WIDTH cells."""
    if not math.isfinite(value):
        text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    elif abs(value) < 999.995:
        text = f"{value:.2f}"
    elif abs(value) < 999_999.5:
        text = f"{value:.0f}"
    else:
        text = f"{value:.0e}"
    return text.rjust(ACTIVATION_WIDTH)[-ACTIVATION_WIDTH:]


def shade_step(value: float, max_activation: float) -> int:
    """Shade step (0 = none … len(SHADE_STEPS)-1) of a token's activation relative to the map's maximum."""
    if not value > 0 or not max_activation > 0:
        return 0
    steps = len(SHADE_STEPS) - 1
    return max(1, min(steps, math.ceil(value / max_activation * steps)))


def focus_column(width: int) -> int:
    """The column (from the line's left edge) where the focus token starts, for a line `width` cells wide."""
    window = max(0, width - PREFIX_WIDTH)
    return PREFIX_WIDTH + int(window * FOCUS_FRACTION)


def _clean_token(token: str) -> str:
    # Sanitising is linear in the token: cut a 100 kB token before, not after.
    # sanitize maps characters one to one, so this draws exactly what sanitize_token(token) would.
    return sanitize_token(token[: MAX_TOKEN_CHARS + 1])


@dataclass(frozen=True, slots=True)
class PreparedContext:
    """A context made ready to draw, independent of width: tokens sanitised and cut, shade steps set."""

    row: int
    activation: float
    left: tuple[tuple[str, int], ...]
    """Tokens before the focus token, as (text, shade step); the focus token's leading spaces last."""
    focus: str
    """The focus token without its leading whitespace (empty when the context has none)."""
    right: tuple[tuple[str, int], ...]
    """Tokens after the focus token, as (text, shade step)."""


def prepare_context(row: int, context: Context, max_activation: float) -> PreparedContext:
    """Sanitise and shade a context once, so that laying it out at any width is cheap (thread-safe)."""
    tokens = [_clean_token(token) for token in context.tokens]
    shades = [
        shade_step(context.token_activations[i] if i < len(context.token_activations) else 0.0, max_activation)
        for i in range(len(tokens))
    ]
    pairs = list(zip(tokens, shades, strict=True))
    if not tokens:
        return PreparedContext(row, context.activation, (), "", ((sanitize(context.text[:4096], 512), 0),))
    if not 0 <= context.focus < len(tokens):
        return PreparedContext(row, context.activation, (), "", tuple(pairs))
    focus = tokens[context.focus]
    core = focus.lstrip()
    left = pairs[: context.focus]
    if core and len(core) < len(focus):
        left.append((focus[: len(focus) - len(core)], 0))
    return PreparedContext(row, context.activation, tuple(left), core or focus, tuple(pairs[context.focus + 1 :]))


def _head(text: str, cells: int) -> str:
    """The longest prefix of `text` at most `cells` wide."""
    used = 0
    for index, char in enumerate(text):
        used += get_character_cell_size(char)
        if used > cells:
            return text[:index]
    return text


def _tail(text: str, cells: int) -> str:
    """The longest suffix of `text` at most `cells` wide."""
    used = 0
    for index in range(len(text) - 1, -1, -1):
        used += get_character_cell_size(text[index])
        if used > cells:
            return text[index + 1 :]
    return text


def layout_window(context: PreparedContext, width: int, focus_at: int) -> list[tuple[str, int]]:
    """Lay out a context's tokens in `width` cells with the focus token starting at cell `focus_at`.

    Returns (text, kind) pieces exactly `width` cells wide in all: kind is a shade step (0 for
    plain text and padding), or -1 for the focus token. Context cut at an edge ends in '…'.
    """
    focus_at = max(0, min(focus_at, width))
    pieces_left: list[tuple[str, int]] = []
    room = focus_at
    for text, shade in reversed(context.left):
        size = cell_len(text)
        if size <= room:
            pieces_left.append((text, shade))
            room -= size
            continue
        if room > 0:
            cut = _tail(text, room - 1)
            pieces_left.append((cut, shade))
            pieces_left.append((ELLIPSIS, 0))
            room -= cell_len(cut) + 1
        break
    pieces: list[tuple[str, int]] = []
    if room > 0:
        pieces.append((" " * room, 0))
    pieces.extend(reversed(pieces_left))

    room = width - focus_at
    focus = context.focus
    if focus:
        size = cell_len(focus)
        if size > room:
            focus = _head(focus, room - 1) + ELLIPSIS if room > 0 else ""
            size = cell_len(focus)
        pieces.append((focus, -1))
        room -= size
    for text, shade in context.right:
        size = cell_len(text)
        if size <= room:
            pieces.append((text, shade))
            room -= size
            continue
        if room > 0:
            cut = _head(text, room - 1)
            pieces.append((cut, shade))
            pieces.append((ELLIPSIS, 0))
            room -= cell_len(cut) + 1
        break
    if room > 0:
        pieces.append((" " * room, 0))
    return pieces


def merge_pieces(pieces: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """`layout_window`'s pieces with neighbours of the same kind joined (and empty ones dropped)."""
    merged: list[tuple[str, int]] = []
    for text, kind in pieces:
        if not text:
            continue
        if merged and merged[-1][1] == kind:
            merged[-1] = (merged[-1][0] + text, kind)
        else:
            merged.append((text, kind))
    return merged
