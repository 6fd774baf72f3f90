"""A shorter way through Textual's per-line styling for the lines of a bordered list.

Every line a widget repaints goes through `StylesCache.render_line`, which works out the border,
padding, outline, hatch, tint and opacity of that line afresh: about a tenth of a millisecond a
line, more than drawing the line costs. A change of node repaints some sixty lines of the
explorer (the contexts, the minimap), so that was a third of a key's time. For a widget with a
border all round and nothing else (no padding above or below, no outline, hatch, tint or
opacity), a content line is only the border's left cell, the line (padded left and right), and
the border's right cell; those two cells are
the same on every content line. `BorderedLines` takes them from the first content line Textual
styles in full, and builds the other lines from them; anything else (the border rows with their
titles, or a widget styled otherwise) goes Textual's own way. The lines are the same segments
either way (tests/tui/test_line_styles.py compares them).

A content line drawn again from the very same strip (the widgets keep their lines: a context
list shown again, the tree's rows) gets back the very same bordered strip, so the work Textual
keeps on each strip (the line filters, the compositor's cuts) is not done again either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.segment import Segment
from textual._segment_tools import line_pad
from textual._styles_cache import StylesCache
from textual.cache import LRUCache
from textual.strip import Strip

if TYPE_CHECKING:
    from textual.color import Color
    from textual.css.styles import StylesBase
    from textual.geometry import Region, Size, Spacing
    from textual.widget import Widget


def plain_bordered(styles: StylesBase, padding: Spacing, opacity: float) -> bool:
    """Whether a content line of a widget so styled is its left border cell, the line (padded left and
    right), its right border cell."""
    (top, _), (right, _), (bottom, _), (left, _) = styles.border
    return (
        bool(left and right and top and bottom)
        and padding.height == 0
        and opacity == 1.0
        and not any(edge for edge, _ in styles.outline)
        and styles.tint.a == 0
        and styles.text_opacity == 1.0
        and not (styles.has_rule("hatch") and styles.hatch != "none")
    )


BORDERED_LINES = 1024
"""Bordered lines kept per widget (a 160x48 context list shows 45; its own cache keeps 1024)."""


class BorderedLines(StylesCache):
    """Textual's StylesCache, with content lines of a plainly bordered widget built from cached border cells."""

    def __init__(self) -> None:
        super().__init__()
        self._edges: dict[tuple[Any, ...], tuple[Segment, Segment]] = {}
        """(border types and colours, backgrounds, widths) → the left and right border cells of a content line.

        The key holds all that those cells are made from, so the cells outlive a repaint of the
        whole widget (a change of node); a new focus or theme makes a new key."""
        self._plain = False
        """Whether the widget being drawn is plainly bordered (`plain_bordered`), worked out once a frame."""
        self._bordered: LRUCache[int, tuple[Strip, tuple[Any, ...], Strip]] = LRUCache(BORDERED_LINES)
        """id of a content line → (that line, the key of its border and padding, the line bordered).

        The entry holds the line itself, so its id is not another object's while the entry lasts."""

    def render_widget(self, widget: Widget, crop: Region) -> list[Strip]:
        """Draw the widget's lines in `crop`, its styles checked once rather than on every line."""
        self._plain = plain_bordered(widget.styles, widget.styles.padding, widget.opacity)
        return super().render_widget(widget, crop)

    def render_line(
        self,
        styles: StylesBase,
        y: int,
        size: Size,
        content_size: Size,
        padding: Spacing,
        base_background: Color,
        background: Color,
        render_content_line: Callable[[int], Strip],
        *rest: Any,
    ) -> Strip:
        """A styled line; a content line of a plainly bordered widget as its border cells around the line."""
        width, height = size
        if not (self._plain and 0 < y < min(height - 1, content_size.height + 1)):
            return super().render_line(
                styles, y, size, content_size, padding, base_background, background, render_content_line, *rest
            )
        key = (styles.border, base_background, background, width, content_size.width)
        edges = self._edges.get(key)
        if edges is None:
            strip = super().render_line(
                styles, y, size, content_size, padding, base_background, background, render_content_line, *rest
            )
            segments = list(strip)
            left, right = segments[0], segments[-1]
            if left.cell_length == 1 and right.cell_length == 1 and not left.control and not right.control:
                if len(self._edges) >= 16:
                    self._edges.clear()
                self._edges[key] = (left, right)
            return strip
        content = render_content_line(y - 1)
        line_key = (*key, padding.left, padding.right)
        drawn = self._bordered.get(id(content))
        if drawn is not None and drawn[0] is content and drawn[1] == line_key:
            return drawn[2]
        inner = self.get_inner_outer(base_background, background)[0].rich_style
        line = content.adjust_cell_length(content_size.width, inner)
        if padding.width:
            bordered = Strip([edges[0], *line_pad(line, padding.left, padding.right, inner), edges[1]], width)
        else:
            bordered = Strip([edges[0], *line, edges[1]], width)
        self._bordered[id(content)] = (content, line_key, bordered)
        return bordered
