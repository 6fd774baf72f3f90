"""A node's contexts, highest activation first: one line each, the focus token at a fixed column.

Built on the Line API (`ScrollView.render_line`) so that a node with 100k contexts costs what
the visible lines cost. Context text and tokens are read lazily, a parquet row group at a
time, in a thread worker; a row not read yet draws as a dim placeholder until it arrives.
Every string drawn from a context passes through `sanitize_token` first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, on, work
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.color import Color
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import Worker, WorkerState, get_current_worker

from vista_tui.core.model import MapModel
from vista_tui.tui.messages import report_worker_failure
from vista_tui.tui.widgets.context_line import (
    PREFIX_WIDTH,
    SHADE_STEPS,
    PreparedContext,
    focus_column,
    format_activation,
    layout_window,
    merge_pieces,
    prepare_context,
)
from vista_tui.tui.widgets.line_styles import BorderedLines
from vista_tui.tui.widgets.virtual_size import virtual_size_without_relayout

PLACEHOLDER = "loading…"
UNREADABLE = "(could not read this context)"
CURSOR_MARKER = "▸"

_LOAD_MARGIN = 48
"""Fewest rows read ahead of and behind the visible window, so that scrolling a little never waits."""

_PREFETCH_PAGES = 3
"""Pages read ahead of and behind the view; a new read starts when the view comes within a page of the edge."""


def shade_styles(base: Style, hue: Color) -> tuple[Style, ...]:
    """One style per step of SHADE_STEPS: `base` with `hue` mixed into its background (step 0: `base` itself)."""
    background = Color.from_rich_color(base.bgcolor) if base.bgcolor else Color(0, 0, 0)
    return tuple(
        base if fraction == 0 else base + Style(bgcolor=background.blend(hue, fraction).rich_color)
        for fraction in SHADE_STEPS
    )


@dataclass(frozen=True, slots=True)
class _LineStyles:
    """Rich styles for one kind of line (cursor or not), derived from the component classes."""

    base: Style
    activation: Style
    focus: Style
    placeholder: Style
    shades: tuple[Style, ...]


class ContextList(ScrollView, can_focus=True):
    """The contexts of a node (or any rows), one line each, highest activation first.

    Each line: a cursor marker, the activation (fixed width, right-aligned), then the token
    window with the focus token at a fixed column, highlighted, and the other tokens shaded
    by their activation relative to the map's maximum.
    """

    ALLOW_SELECT = False

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "enter",
            "open",
            "Open",
            tooltip="Show this context in full, with its neighbours on the map",
            id="context-list.open",
        ),
        Binding("down", "cursor_down", "Down", show=False, id="context-list.down"),
        Binding("j", "cursor_down", "Down", show=False, id="context-list.down-j"),
        Binding("up", "cursor_up", "Up", show=False, id="context-list.up"),
        Binding("k", "cursor_up", "Up", show=False, id="context-list.up-k"),
        Binding("pagedown", "page_down", "Page down", show=False, id="context-list.page-down"),
        Binding("pageup", "page_up", "Page up", show=False, id="context-list.page-up"),
        Binding("home", "first", "First", show=False, id="context-list.first"),
        Binding("g", "first", "First", show=False, id="context-list.first-g"),
        Binding("end", "last", "Last", show=False, id="context-list.last"),
        Binding("G", "last", "Last", show=False, id="context-list.last-G"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "context-list--activation",
        "context-list--cursor",
        "context-list--focus",
        "context-list--placeholder",
        "context-list--shade",
    }
    """
    | Class | Description |
    | :- | :- |
    | `context-list--activation` | The activation column. |
    | `context-list--cursor` | The cursor line (its background and colour). |
    | `context-list--focus` | The focus token. |
    | `context-list--placeholder` | A line whose context is still being read. |
    | `context-list--shade` | Its `background` is the hue that token shading mixes in, in steps. |
    """

    # No scrollbar: its thumb is one cell on a 100k list, and it redrew the panel's whole height
    # on every change of node or scroll; the border's subtitle says where the view is instead.
    DEFAULT_CSS = """
    ContextList {
        scrollbar-size-vertical: 0;
        & > .context-list--activation { color: $text-muted; }
        & > .context-list--cursor { background: $block-cursor-blurred-background; }
        &:focus > .context-list--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
        }
        & > .context-list--focus { color: $accent; text-style: bold reverse; }
        & > .context-list--placeholder { color: $text-disabled; text-style: italic; }
        & > .context-list--shade { background: $success; }
    }
    """

    virtual_size = virtual_size_without_relayout()
    """Lines of the list; a new length moves the scrollbar without re-laying out the screen."""
    cursor: Reactive[int] = reactive(0, init=False, repaint=False)
    """Index of the highlighted line (a position in the list, not a context row)."""

    class _RowMessage(Message):
        """A message about one context of the list."""

        def __init__(self, context_list: ContextList, row: int) -> None:
            self.context_list = context_list
            self.row = row
            """The context's row in the map's contexts table."""
            super().__init__()

        @property
        def control(self) -> ContextList:
            """The list that sent the message (for `@on(..., selector)`)."""
            return self.context_list

    class Opened(_RowMessage):
        """Enter (or a double click) on a context: show it in full."""

    class Highlighted(_RowMessage):
        """The cursor moved to another context (also sent when the list is switched)."""

    class RowsLoaded(Message):
        """Internal: a worker prepared some contexts (posted from the worker's thread)."""

        def __init__(self, contexts: list[PreparedContext]) -> None:
            self.contexts = contexts
            super().__init__()

    def __init__(self, model: MapModel, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._styles_cache = BorderedLines()  # fewer costs per repainted line (line_styles.py)
        self.model = model
        self.node_id: str | None = None
        """The node whose contexts are shown (None for an arbitrary list of rows)."""
        self._rows: np.ndarray = np.zeros(0, dtype=np.int64)
        self._max_activation = model.max_activation
        self._prepared: LRUCache[int, PreparedContext] = LRUCache(4096)
        self._lines: LRUCache[tuple[int, int, bool], Strip] = LRUCache(1024)
        self._styles: dict[bool, _LineStyles] = {}
        self._pending: set[int] = set()
        self._failed: set[int] = set()
        self._load_scheduled = False
        self._frame_view: tuple[int, int] | None = None
        """(top, width) of the view while `render_lines` draws a frame."""
        self.follow: Callable[[int], None] | None = None
        """Called with the highlighted row whenever it changes, before the next frame."""
        self.row_tint: Callable[[int], Style | None] | None = None
        """When set: a style over a row's activation (the colour of its dominant child, `C`)."""

    # -- content ---------------------------------------------------------------------------------

    @property
    def rows(self) -> np.ndarray:
        """The context rows shown, in display order."""
        return self._rows

    @property
    def highlighted_row(self) -> int | None:
        """The context row under the cursor, or None when the list is empty."""
        return int(self._rows[self.cursor]) if 0 <= self.cursor < len(self._rows) else None

    def show_node(self, node_id: str) -> None:
        """Show `node_id`'s contexts, highest activation first, cursor at the top."""
        self.show_rows(self.model.members_by_activation(node_id))
        self.node_id = node_id

    def show_rows(self, rows: Sequence[int] | np.ndarray) -> None:
        """Show these context rows in this order, cursor at the top."""
        self.node_id = None
        self._rows = np.asarray(rows, dtype=np.int64)
        self._failed.clear()
        self.set_reactive(ContextList.cursor, 0)
        self.virtual_size = Size(0, len(self._rows))
        if self.is_mounted:
            self._scroll_update(self.virtual_size)
            self._show_position()
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()
        if len(self._rows):
            self._highlighted(int(self._rows[0]))

    def _highlighted(self, row: int) -> None:
        """Tell the screen (synchronously through `follow`, so the same frame shows it) and any listener."""
        if self.follow is not None:
            self.follow(row)
        self.post_message(self.Highlighted(self, row))

    def set_row_tint(self, tint: Callable[[int], Style | None] | None) -> None:
        """Colour each row's activation by `tint(row)` (None: no tint); every line is redrawn."""
        self.row_tint = tint
        self._lines.clear()
        self.refresh()

    def move_to_row(self, row: int) -> bool:
        """Put the cursor on context `row` if the list holds it (e.g. picked on the minimap)."""
        found = np.flatnonzero(self._rows == row)
        if len(found):
            self.cursor = int(found[0])
        return bool(len(found))

    def prepared(self, row: int) -> PreparedContext | None:
        """The prepared context at `row` if it has been read (never reads)."""
        prepared = self._prepared.get(row)
        if prepared is None and row not in self._failed:
            context = self.model.contexts.get(row)
            if context is not None:
                prepared = prepare_context(row, context, self._max_activation)
                self._prepared[row] = prepared
        return prepared

    def window_text(self, context: PreparedContext) -> Text:
        """The whole token window as wrappable Rich text, shaded and highlighted like the lines."""
        styles = self._line_styles(False)
        text = Text(no_wrap=False, overflow="fold")
        for token, shade in context.left:
            text.append(token, styles.shades[shade])
        if context.focus:
            text.append(context.focus, styles.focus)
        for token, shade in context.right:
            text.append(token, styles.shades[shade])
        return text

    # -- styles and caches -----------------------------------------------------------------------

    def _line_styles(self, is_cursor: bool) -> _LineStyles:
        styles = self._styles.get(is_cursor)
        if styles is None:
            base = self.rich_style
            if is_cursor:
                base = base + self.get_component_rich_style("context-list--cursor")
            shades = shade_styles(base, self.get_component_styles("context-list--shade").background)
            styles = _LineStyles(
                base=base,
                activation=base if is_cursor else base + self._foreground("context-list--activation"),
                focus=base + self.get_component_rich_style("context-list--focus"),
                placeholder=base + self._foreground("context-list--placeholder"),
                shades=shades,
            )
            self._styles[is_cursor] = styles
        return styles

    def _foreground(self, component: str) -> Style:
        """A component's colour (blended over the widget's background) and text style, without its background."""
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
        self._scroll_to_cursor()  # a shorter view (a smaller terminal) still shows the cursor
        self._show_position()

    def _show_position(self) -> None:
        """'1–40 of 100,000' in the bottom border while the list is longer than the view."""
        n_rows, height = len(self._rows), self.scrollable_content_region.height
        top = round(self.scroll_offset.y)
        position = f"{top + 1:,}–{min(n_rows, top + height):,} of {n_rows:,}" if 0 < height < n_rows else None
        if position != self.border_subtitle:  # setting it repaints the whole list
            self.border_subtitle = position

    # -- rendering -------------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines in `crop`; the view's top and width looked up once, not once a line."""
        self._frame_view = (self.scroll_offset.y, self.scrollable_content_region.width)
        try:
            return super().render_lines(crop)
        finally:
            self._frame_view = None

    def render_line(self, y: int) -> Strip:
        """One visible line: the context at list position scroll_y + y."""
        top, width = self._frame_view or (self.scroll_offset.y, self.scrollable_content_region.width)
        index = top + y
        if not 0 <= index < len(self._rows) or width <= 0:
            return Strip.blank(max(0, width), self.rich_style)
        row = int(self._rows[index])
        is_cursor = index == self.cursor
        key = (row, width, is_cursor)
        strip = self._lines.get(key)
        if strip is None:
            prepared = self.prepared(row)
            strip = self._render_row(row, prepared, width, is_cursor)
            if prepared is not None:
                self._lines[key] = strip
            elif row not in self._failed:
                self._schedule_load()
        return strip

    def _render_row(self, row: int, context: PreparedContext | None, width: int, is_cursor: bool) -> Strip:
        styles = self._line_styles(is_cursor)
        marker = CURSOR_MARKER if is_cursor else " "
        tint = self.row_tint(row) if self.row_tint is not None else None
        segments = [
            Segment(
                marker + format_activation(float(self.model.activations[row])),
                styles.activation if tint is None else styles.activation + tint,
            ),
            Segment(" ", styles.base),
        ]
        window = width - PREFIX_WIDTH
        if context is None:
            note = UNREADABLE if row in self._failed else PLACEHOLDER
            segments.append(Segment(note, styles.placeholder))
        elif window > 0:
            shades = styles.shades
            # Neighbouring tokens of one shade make one segment: every segment costs Textual work
            # on each repaint (styling, filters, cropping), and most tokens are unshaded.
            for text, kind in merge_pieces(layout_window(context, window, focus_column(width) - PREFIX_WIDTH)):
                segments.append(Segment(text, styles.focus if kind < 0 else shades[kind]))
            # The prefix is PREFIX_WIDTH cells and the window exactly `window`: no measuring again.
            return Strip(segments, width)
        return Strip(segments).adjust_cell_length(width, styles.base)

    # -- loading ---------------------------------------------------------------------------------

    def _schedule_load(self) -> None:
        if not self._load_scheduled:
            self._load_scheduled = True
            self.call_later(self._load_visible)

    def _missing(self, row: int) -> bool:
        return row not in self._prepared and row not in self._failed

    def _load_visible(self) -> None:
        """Start a worker when rows within a page of the view are not read yet: the view, then outwards."""
        self._load_scheduled = False
        n_rows = len(self._rows)
        height = max(1, self.scrollable_content_region.height)
        top = min(self.scroll_offset.y, max(0, n_rows - 1))
        bottom = min(n_rows, top + height)
        near = self._rows[max(0, top - height) : bottom + height]
        if not any(self._missing(int(row)) and int(row) not in self._pending for row in near):
            return
        margin = max(_LOAD_MARGIN, _PREFETCH_PAGES * height)
        above = self._rows[max(0, top - margin) : top][::-1].tolist()
        below = self._rows[bottom : bottom + margin].tolist()
        # Visible rows first, then outwards, alternating: the worker reads and posts in this order.
        order = self._rows[top:bottom].tolist()
        for index in range(max(len(above), len(below))):
            order.extend(side[index] for side in (below, above) if index < len(side))
        wanted = [row for row in order if self._missing(row)]
        self._pending = set(wanted)
        if any(self._missing(int(row)) for row in self._rows[top:bottom]):
            self._load_rows(wanted)  # rows in view are placeholders: read now
        else:
            # Only reading ahead: after this frame, which the worker would slow (it holds the GIL
            # while it decodes) for rows nobody sees yet.
            self.call_after_refresh(self._read_ahead, self._rows, wanted)

    def _read_ahead(self, shown: np.ndarray, wanted: list[int]) -> None:
        if shown is self._rows and self._pending == set(wanted):  # nothing else asked for since
            self._load_rows(wanted)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolling (keys, wheel, scrollbar) may bring unread rows near: read ahead."""
        super().watch_scroll_y(old_value, new_value)
        self._schedule_load()
        self._show_position()

    @work(thread=True, exclusive=True, exit_on_error=False, group="contexts", description="read contexts")
    def _load_rows(self, rows: list[int]) -> None:
        """Read the row groups holding `rows`, one group at a time, and post them prepared."""
        worker = get_current_worker()
        store = self.model.contexts
        by_group: dict[int, list[int]] = {}
        for row in rows:
            by_group.setdefault(store.group_of(row), []).append(row)
        for group_rows in by_group.values():
            if worker.is_cancelled:
                return
            # One group at a time: the store keeps only a few groups, and decoding right after
            # reading means a row is never lost to its group's eviction.
            store.load(group_rows)
            prepared = []
            for row in group_rows:
                context = store.get(row)
                if context is not None:
                    prepared.append(prepare_context(row, context, self._max_activation))
            self.post_message(self.RowsLoaded(prepared))

    @on(RowsLoaded)
    def _rows_loaded(self, event: RowsLoaded) -> None:
        event.stop()
        for context in event.contexts:
            self._prepared[context.row] = context
            self._pending.discard(context.row)
        self.refresh()

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "contexts" and event.state == WorkerState.ERROR:
            self._failed.update(self._pending)  # drawn as unreadable instead of loading forever
            self._pending.clear()
            self.refresh()
        report_worker_failure(self, event)  # the app says what failed

    # -- cursor ----------------------------------------------------------------------------------

    def validate_cursor(self, cursor: int) -> int:
        """Keep the cursor on a line of the list."""
        return max(0, min(cursor, len(self._rows) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        """Repaint the two lines, keep the cursor in view, tell the screen."""
        self.refresh_line(old)
        self.refresh_line(new)
        self._scroll_to_cursor()
        if 0 <= new < len(self._rows):
            self._highlighted(int(self._rows[new]))

    def _scroll_to_cursor(self) -> None:
        self.scroll_to_region(
            Region(0, self.cursor, max(1, self.scrollable_content_region.width), 1),
            animate=False,
            force=True,
            immediate=True,
        )

    def action_cursor_down(self) -> None:
        """Move the cursor down one context."""
        self.cursor += 1

    def action_cursor_up(self) -> None:
        """Move the cursor up one context."""
        self.cursor -= 1

    def action_page_down(self) -> None:
        """Move the cursor down a page."""
        self.cursor += max(1, self.scrollable_content_region.height)

    def action_page_up(self) -> None:
        """Move the cursor up a page."""
        self.cursor -= max(1, self.scrollable_content_region.height)

    def action_first(self) -> None:
        """Move the cursor to the highest activation."""
        self.cursor = 0

    def action_last(self) -> None:
        """Move the cursor to the lowest activation."""
        self.cursor = len(self._rows) - 1

    def action_open(self) -> None:
        """Post Opened for the context under the cursor."""
        row = self.highlighted_row
        if row is not None:
            self.post_message(self.Opened(self, row))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = self.scroll_offset.y + offset.y
        if 0 <= index < len(self._rows):
            self.cursor = index
            if event.chain >= 2:
                self.action_open()
