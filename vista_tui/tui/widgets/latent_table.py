"""The latents of an atlas, one line each, in fixed columns: a virtual list for 16k rows.

Built on the Line API (`ScrollView.render_line`) like the contexts list: a frame costs what the
visible lines cost, whatever the atlas's size, and a cursor move repaints two lines. The rows'
cells come from the view model (`AtlasView.cells`), sanitised there; this widget only lays them
out. `column_layout` is shared with the screen's heading line, so both line up at any width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from vista_tui.core.atlas_view import UNREVIEWED, AtlasView
from vista_tui.tui.widgets.virtual_size import virtual_size_without_relayout

CURSOR_MARKER = "▸"
HIT_MARKER = "•"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: its key in `LatentCells`, heading, width and alignment."""

    key: str
    heading: str
    width: int
    right: bool = False
    sort: str | None = None
    """The sort (`SORTS` key) that orders by this column, if any."""


@lru_cache(maxsize=8)
def column_layout(width: int) -> tuple[Column, ...]:
    """The columns for a line `width` cells wide (a marker cell first, one space between columns).

    The figures keep fixed widths; the top tokens and the label share what is left, the label
    the larger part.
    """
    triage = 13 if width >= 110 else 9
    fixed = [
        Column("latent", "latent", 6, right=True, sort="latent"),
        Column("density", "density", 7, right=True, sort="density"),
        Column("max_activation", "max", 6, right=True, sort="max_activation"),
        Column("contexts", "ctx", 6, right=True),
    ]
    tail = [
        Column("fidelity", "fid", 4, right=True, sort="fidelity"),
        Column("triage", "triage", triage, sort="triage"),
    ]
    n_columns = len(fixed) + 2 + len(tail)
    used = 1 + sum(c.width for c in fixed + tail) + (n_columns - 1)
    room = max(2, width - used)
    tokens = max(1, room * 2 // 5)
    label = max(1, room - tokens)
    middle = [Column("top_tokens", "top tokens", tokens), Column("label", "label", label, sort="agreement")]
    return (*fixed, *middle, *tail)


def _fit(text: str, width: int, right: bool) -> str:
    """`text` in exactly `width` cells: cut with an ellipsis, padded on the left or the right."""
    cells = Text(text).cell_len
    if cells > width:
        text = Text(text)
        text.truncate(width, overflow="ellipsis")
        return text.plain + " " * (width - text.cell_len)
    pad = " " * (width - cells)
    return pad + text if right else text + pad


def heading_text(width: int, sort_key: str) -> Text:
    """The heading line over the table: column names, the sorted one in bold reverse video."""
    text = Text(" ", no_wrap=True, overflow="crop")
    for index, column in enumerate(column_layout(width)):
        if index:
            text.append(" ")
        # The sorted column's heading in reverse video: an arrow would not fit the narrow columns.
        text.append(_fit(column.heading, column.width, column.right), "bold reverse" if column.sort == sort_key else "")
    return text


class LatentTable(ScrollView, can_focus=True):
    """The atlas's latents in display order (`AtlasView.order`), one line each."""

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open map", tooltip="Open the latent's map (Backspace there comes back here)"),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "latent-table--cursor",
        "latent-table--muted",
        "latent-table--hit",
        "latent-table--triaged",
    }
    """
    | Class | Description |
    | :- | :- |
    | `latent-table--cursor` | The cursor line. |
    | `latent-table--muted` | Figures, a published explanation shown as the label, an unbuilt latent. |
    | `latent-table--hit` | The marker of a search hit. |
    | `latent-table--triaged` | The triage cell of a triaged latent. |
    """

    DEFAULT_CSS = """
    LatentTable {
        scrollbar-size-vertical: 0;
        & > .latent-table--cursor { background: $block-cursor-blurred-background; }
        &:focus > .latent-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
        }
        & > .latent-table--muted { color: $text-muted; }
        & > .latent-table--hit { color: $warning; text-style: bold; }
        & > .latent-table--triaged { color: $success; text-style: bold; }
    }
    """

    virtual_size = virtual_size_without_relayout()
    """Lines of the table; a new length moves the scroll position without re-laying out the screen."""
    cursor: Reactive[int] = reactive(0, init=False, repaint=False)
    """Index of the highlighted line (a position in the display order, not a row of the atlas)."""

    class Opened(Message):
        """Enter (or a double click) on a latent: open its map."""

        def __init__(self, row: int) -> None:
            self.row = row
            """The latent's row in the atlas table."""
            super().__init__()

    def __init__(self, view: AtlasView, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = view
        self.hits: np.ndarray = np.zeros(0, dtype=np.int64)
        """Rows of the atlas that match the search, sorted."""
        self._lines: LRUCache[tuple[int, int, bool], Strip] = LRUCache(512)
        self._styles: dict[bool, tuple[Style, Style, Style, Style]] = {}
        self.follow: Callable[[], None] | None = None
        """Called whenever the cursor, the scroll position or the rows shown change, before the next frame
        (the screen's position line is drawn in the same frame as the table)."""

    # -- content -------------------------------------------------------------------------------

    @property
    def highlighted_row(self) -> int | None:
        """The atlas row under the cursor, None when nothing is shown."""
        order = self.view.order
        return int(order[self.cursor]) if 0 <= self.cursor < len(order) else None

    def rows_changed(self, keep_row: int | None = None) -> None:
        """The view's order changed (sort, filter): redraw, the cursor on `keep_row` if still shown."""
        self._lines.clear()
        self.virtual_size = Size(0, len(self.view.order))
        if self.is_mounted:
            self._scroll_update(self.virtual_size)
        position = self.view.position_of(keep_row) if keep_row is not None else None
        self.set_reactive(LatentTable.cursor, 0 if position is None else position)
        self.scroll_to(
            0, max(0, self.cursor - self.scrollable_content_region.height // 2), animate=False, immediate=True
        )
        self._scroll_to_cursor()
        self.refresh()
        self._moved()

    def cells_changed(self) -> None:
        """Rows' cells changed (triage read, search hits): drop the cached lines and repaint."""
        self._lines.clear()
        self.refresh()

    def move_to_position(self, position: int) -> None:
        """Put the cursor on this line of the display order."""
        self.cursor = position

    def _moved(self) -> None:
        if self.follow is not None:
            self.follow()

    # -- styles ----------------------------------------------------------------------------------

    def _line_styles(self, is_cursor: bool) -> tuple[Style, Style, Style, Style]:
        """(base, muted, hit, triaged) for a cursor line or another one."""
        styles = self._styles.get(is_cursor)
        if styles is None:
            base = self.rich_style
            if is_cursor:
                base = base + self.get_component_rich_style("latent-table--cursor")
            muted = base if is_cursor else base + self._foreground("latent-table--muted")
            styles = (
                base,
                muted,
                base + self._foreground("latent-table--hit"),
                base + self._foreground("latent-table--triaged"),
            )
            self._styles[is_cursor] = styles
        return styles

    def _foreground(self, component: str) -> Style:
        """A component's colour and text style, without its background."""
        full = self.get_component_rich_style(component)
        return full.without_color + Style(color=full.color)

    def notify_style_update(self) -> None:
        """Styles changed (theme, focus): drop every cached line."""
        super().notify_style_update()
        self._styles.clear()
        self._lines.clear()
        self.refresh()

    def _on_resize(self, event: events.Resize) -> None:
        self._lines.clear()
        self._scroll_to_cursor()

    # -- rendering -------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """One visible line: the latent at display position scroll_y + y."""
        index = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        order = self.view.order
        if not 0 <= index < len(order) or width <= 0:
            return Strip.blank(max(0, width), self.rich_style)
        row = int(order[index])
        is_cursor = index == self.cursor
        key = (row, width, is_cursor)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._lines[key] = self._render_row(row, width, is_cursor)
        return strip

    def _render_row(self, row: int, width: int, is_cursor: bool) -> Strip:
        base, muted, hit, triaged = self._line_styles(is_cursor)
        view = self.view
        cells = view.cells(row)
        is_hit = bool(len(self.hits)) and bool(
            self.hits[min(np.searchsorted(self.hits, row), len(self.hits) - 1)] == row
        )
        marker = CURSOR_MARKER if is_cursor else (HIT_MARKER if is_hit else " ")
        segments = [Segment(marker, hit if is_hit else base)]
        built = bool(view.built[row])
        for index, column in enumerate(column_layout(width)):
            if index:
                segments.append(Segment(" ", base))
            if column.key == "triage":
                text, style = view.triage_text(row), (triaged if view.triage_rank[row] > UNREVIEWED else muted)
            elif column.key == "label":
                text, style = cells.label, muted if cells.label_is_explanation else base
            elif column.key == "top_tokens":
                text, style = cells.top_tokens, base
            elif column.key == "latent":
                text, style = cells.latent, base if built else muted
            else:
                text, style = getattr(cells, column.key), muted
            segments.append(Segment(_fit(text, column.width, column.right), style))
        return Strip(segments).adjust_cell_length(width, base)

    # -- cursor ----------------------------------------------------------------------------------

    def validate_cursor(self, cursor: int) -> int:
        """Keep the cursor on a line of the table."""
        return max(0, min(cursor, len(self.view.order) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        """Repaint the two lines and keep the cursor in view."""
        self.refresh_line(old)
        self.refresh_line(new)
        self._scroll_to_cursor()
        self._moved()

    def _scroll_to_cursor(self) -> None:
        self.scroll_to_region(
            Region(0, self.cursor, max(1, self.scrollable_content_region.width), 1),
            animate=False,
            force=True,
            immediate=True,
        )

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolling moves the position the screen shows."""
        super().watch_scroll_y(old_value, new_value)
        self._moved()

    def action_cursor_down(self) -> None:
        """Down one latent."""
        self.cursor += 1

    def action_cursor_up(self) -> None:
        """Up one latent."""
        self.cursor -= 1

    def action_page_down(self) -> None:
        """Down a page."""
        self.cursor += max(1, self.scrollable_content_region.height)

    def action_page_up(self) -> None:
        """Up a page."""
        self.cursor -= max(1, self.scrollable_content_region.height)

    def action_first(self) -> None:
        """The first latent."""
        self.cursor = 0

    def action_last(self) -> None:
        """The last latent."""
        self.cursor = len(self.view.order) - 1

    def action_open(self) -> None:
        """Post Opened for the latent under the cursor."""
        row = self.highlighted_row
        if row is not None:
            self.post_message(self.Opened(row))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        if 0 <= index < len(self.view.order):
            self.cursor = index
            if event.chain >= 2:
                self.action_open()
