"""The cluster tree: the latent, its clusters and sub-clusters, walked from the keyboard.

One line per visible node with fixed columns: two glyphs (triage status, then render
status), the indented label, size, mean and max activation. Built on OptionList so
scrolling, highlighting and mouse work as in every Textual list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Spacing
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.strip import Strip
from textual.style import Style
from textual.visual import Padding
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from vista_tui.core.model import MapModel
from vista_tui.tui.widgets.line_styles import BorderedLines
from vista_tui.tui.widgets.virtual_size import virtual_size_without_relayout

GLYPH_WIDTH = 2
"""The triage glyph, then the render glyph (the fold marker follows: the root row has no indent)."""


def _cut(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


class ClusterTreeView(OptionList):
    """The map's cluster tree as an expandable list; the highlighted node drives the other panels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("l,right,enter", "open", "Open", tooltip="Expand the node and go to its first child"),
        Binding("h,left,backspace", "up", "Up / fold", tooltip="Fold the node if it is open, else go to its parent"),
        Binding("space", "toggle", "Fold/unfold", show=False),
        Binding("g", "first", "First", show=False),
        Binding("G", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "cluster-tree--noise",
        "cluster-tree--hit",
        "cluster-tree--stats",
        "cluster-tree--glyph",
    }

    DEFAULT_CSS = """
    ClusterTreeView > .cluster-tree--noise { color: $text-muted; }
    ClusterTreeView > .cluster-tree--hit { color: $warning; text-style: bold underline; }
    ClusterTreeView > .cluster-tree--stats { color: $text-muted; }
    ClusterTreeView > .cluster-tree--glyph { color: $accent; }
    """

    virtual_size = virtual_size_without_relayout(repaint=False)
    """Lines of the tree; a new length moves the scrollbar without re-laying out the screen, and
    repaints nothing by itself: `set_options` repaints every line, a fold or an unfold the lines
    it moved (`_splice`)."""
    selected: Reactive[str | None] = reactive(None, init=False, repaint=False)
    """The node id under the cursor."""
    highlighted: Reactive[int | None] = reactive(None, repaint=False)
    """OptionList's cursor, without a repaint of every row on each move (see `watch_highlighted`)."""

    class AtTop(Message):
        """Up (h, ←, Backspace) on the top node shown, with nothing to fold."""

    class NodeSelected(Message):
        """The cursor moved to another node."""

        def __init__(self, node_id: str) -> None:
            self.node_id = node_id
            super().__init__()

    class LeafOpened(Message):
        """Open was pressed on a node without children (the screen moves focus to its contexts)."""

        def __init__(self, node_id: str) -> None:
            self.node_id = node_id
            super().__init__()

    def __init__(self, model: MapModel, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._styles_cache = BorderedLines()  # fewer costs per repainted line (line_styles.py)
        self.model = model
        self.view_root: str = model.root.node_id
        """The node shown at the top (the root, or the subtree zoomed into)."""
        self.expanded: set[str] = {model.root.node_id}
        self.hits: set[str] = set()
        """Nodes matching the current search."""
        self.glyphs: dict[str, str] = {}
        """Per-node render glyph (second column); blank when absent."""
        self.status_glyphs: dict[str, str] = {}
        """Per-node triage status glyph (first column); blank when absent."""
        self.shown: set[str] | None = None
        """When filtering: the nodes to keep (matches and their ancestors); None shows every node."""
        self.disagreement_order = False
        """List each parent's children by ascending agreement (least agreeing first, NaN last)."""
        self.coverage_order: Mapping[str, float] | None = None
        """When set: the root's children by this score ascending (the published explanation's coverage:
        the worst-covered sub-sense first; unscored and NaN last); deeper levels as before."""
        self._rows: list[str] = []
        self._width = 0
        self._drawn: dict[Option, dict[tuple[Style, Spacing, int], list[Strip]]] = {}
        """Each option's lines as OptionList draws them, before it adds the option's index
        (see `_get_option_render`)."""
        self.follow: Callable[[str], None] | None = None
        """Called at once when the cursor moves (before NodeSelected arrives), so a key typed
        right after a move acts on the node now under the cursor, and the panels repaint in
        the same frame."""

    # -- rows ---------------------------------------------------------------------------------

    @property
    def rows(self) -> list[str]:
        """Visible node ids, top to bottom."""
        return self._rows

    def ordered_children(self, node_id: str) -> list[str]:
        """A node's children in the tree's current order (display order, by disagreement, or the first level by coverage)."""
        children = self.model.children(node_id)
        coverage = self.coverage_order
        if coverage is not None and node_id == self.model.root.node_id:

            def covered(child: str) -> tuple[bool, float]:
                """Scored before unscored, then the score ascending."""
                score = coverage.get(child, math.nan)
                return (not math.isfinite(score), score if math.isfinite(score) else 0.0)

            return sorted(children, key=covered)  # stable: ties keep the display order
        if not self.disagreement_order:
            return children
        nodes = self.model.nodes

        def key(child: str) -> tuple[bool, float]:
            agreement = nodes[child].labels.agreement
            return (not math.isfinite(agreement), agreement if math.isfinite(agreement) else 0.0)

        return sorted(children, key=key)  # stable: ties keep the display order

    def _visible(self, top: str | None = None) -> list[str]:
        """`top` (default: the view's root) and its descendants shown, in tree order."""
        rows: list[str] = []
        stack = [top or self.view_root]
        shown = self.shown
        while stack:
            node_id = stack.pop()
            rows.append(node_id)
            if node_id in self.expanded:
                children = self.ordered_children(node_id)
                if shown is not None:
                    children = [c for c in children if c in shown]
                stack.extend(reversed(children))
        return rows

    def filter(self, matches: set[str] | None) -> None:
        """Show only `matches` and their ancestors, unfolded to reach them (None: show every node)."""
        if matches is None:
            self.shown = None
        else:
            shown = set(matches)
            for node_id in matches:
                ancestors = self.model.ancestors(node_id)
                shown.update(ancestors)
                self.expanded.update(ancestors)
            self.shown = shown
        self.rebuild()

    def _prompt(self, node_id: str, width: int) -> Text:
        model = self.model
        node = model.nodes[node_id]
        depth = node.depth - model.nodes[self.view_root].depth
        has_children = bool(model.children(node_id))
        marker = ("▾ " if node_id in self.expanded else "▸ ") if has_children else "· "
        stats = f"{node.size:>6}"
        if width >= 44:
            stats += f" {node.mean_activation:>5.2f} {node.max_activation:>5.2f}"
        title_width = width - GLYPH_WIDTH - 2 * depth - 2 - len(stats) - 1
        title = _cut(model.title(node_id), max(title_width, 4))
        glyph = self.status_glyphs.get(node_id, " ")[:1] + self.glyphs.get(node_id, " ")[:1]
        style = ""
        if node.kind == "noise":
            style = self.get_component_rich_style("cluster-tree--noise", partial=True)
        if node_id in self.hits:
            style = self.get_component_rich_style("cluster-tree--hit", partial=True)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(glyph, self.get_component_rich_style("cluster-tree--glyph", partial=True))
        line.append("  " * depth + marker)
        line.append(title.ljust(max(title_width, 4)), style)
        line.append(" ")
        line.append(stats, self.get_component_rich_style("cluster-tree--stats", partial=True))
        return line

    def rebuild(self, keep: str | None = None) -> None:
        """Redraw the rows (after a fold, a zoom, a search or a resize), keeping the cursor on `keep`."""
        keep = keep or self.selected or self.view_root
        self._rows = self._visible()
        width = max(self.scrollable_content_region.width, 20)
        self._width = width
        self.border_subtitle = "size · mean · max act" if width >= 44 else "contexts"
        self._drawn.clear()
        self.set_options([Option(self._prompt(node_id, width), id=node_id) for node_id in self._rows])
        if keep not in self._rows:
            keep = next((a for a in reversed(self.model.ancestors(keep)) if a in self._rows), self.view_root)
        self.highlighted = self._rows.index(keep)

    def _splice(self, start: int, stop: int, node_ids: list[str]) -> None:
        """Replace rows `start:stop` by `node_ids`, as `rebuild` would show them, keeping the other rows' options.

        A fold or an unfold changes the rows below one node only: the rows above keep their
        options and their painted lines, and only the lines from `start` to the end of the longer
        list, old or new, are repainted (a full `rebuild` re-made and repainted every line).
        OptionList has no insert at an index, so its index maps are kept here; its rendered lines
        are dropped, because they carry each option's index for the mouse, but the rows that moved
        keep their drawing (`_get_option_render`).
        """
        options = self._options
        shown = len(options)
        for option in options[start:stop]:
            del self._id_to_option[option.id]
            del self._option_to_index[option]
            self._drawn.pop(option, None)
        new = [Option(self._prompt(node_id, self._width), id=node_id) for node_id in node_ids]
        options[start:stop] = new
        self._rows[start:stop] = node_ids
        for option in new:
            self._id_to_option[option.id] = option
        for index in range(start, len(options)):
            self._option_to_index[options[index]] = index
        self._mouse_hovering_over = None
        self._option_render_cache.clear()
        self._line_cache.clear()
        self._update_lines()  # the new length: virtual size and scrollbar
        self._repaint_lines(start, max(shown, len(options)))

    def _replace_prompt(self, index: int) -> None:
        """Draw row `index` afresh (its fold marker changed)."""
        node_id = self._rows[index]
        option = self._options[index]
        option._set_prompt(self._prompt(node_id, self._width))
        self._drawn.pop(option, None)
        self._option_render_cache.clear()
        self.refresh_line(index)

    def _get_option_render(self, option: Option, style: Style) -> list[Strip]:
        """An option's lines, as OptionList draws them: its prompt's strips, padded to the width, then
        its index added to each segment's meta (what a click selects).

        OptionList caches the lines with the index in them, so after a fold or an unfold every row
        that moved (all rows below it) was drawn from its prompt again: most of an `l`'s repaint.
        Here the lines before the index are kept per option, and a moved row only gets its new index.
        The options of this list have no divider.
        """
        padding = self.get_component_styles("option-list--option").padding
        key = (option, style, padding)
        strips = self._option_render_cache.get(key)
        if strips is None:
            width = self.scrollable_content_region.width - self._get_left_gutter_width()
            drawings = self._drawn.setdefault(option, {})
            drawn = drawings.get((style, padding, width))
            if drawn is None:
                visual = self._get_visual(option)
                if padding:
                    visual = Padding(visual, padding)
                drawn = [
                    strip.extend_cell_length(width, style.rich_style)
                    for strip in visual.to_strips(self, visual, width, None, style)
                ]
                drawings[(style, padding, width)] = drawn
            meta = {"option": self._option_to_index[option]}
            strips = [strip.apply_meta(meta) for strip in drawn]
            self._option_render_cache[key] = strips
        return strips

    def _clear_caches(self) -> None:
        self._drawn.clear()
        super()._clear_caches()

    def _repaint_lines(self, start: int, stop: int) -> None:
        """Repaint the lines of rows `start:stop` that are in view (they moved; below them, lines blank
        before and after)."""
        top = round(self.scroll_offset.y)
        bottom = min(stop, top + max(1, self.scrollable_content_region.height))
        first = max(start, top)
        if first < bottom:
            self.refresh_lines(first, bottom - first)

    def unfold(self, node_id: str) -> None:
        """Show `node_id`'s children (and their unfolded descendants) under it; the cursor stays."""
        if node_id in self.expanded or not self.model.children(node_id):
            return
        self.expanded.add(node_id)
        if node_id not in self._rows:
            return
        index = self._rows.index(node_id)
        cursor = self.highlighted
        below = self._visible(node_id)[1:]
        self._replace_prompt(index)
        self._splice(index + 1, index + 1, below)
        if cursor is not None and cursor > index:
            self.highlighted = cursor + len(below)  # the same node, moved down

    def fold(self, node_id: str) -> None:
        """Hide `node_id`'s descendants; a cursor among them moves to `node_id`."""
        if node_id not in self.expanded:
            return
        shown = len(self._visible(node_id)) - 1 if node_id in self._rows else 0
        self.expanded.discard(node_id)
        if node_id not in self._rows:
            return
        index = self._rows.index(node_id)
        cursor = self.highlighted
        self._replace_prompt(index)
        self._splice(index + 1, index + 1 + shown, [])
        if cursor is not None and cursor > index:
            self.highlighted = index if cursor <= index + shown else cursor - shown

    def move_to(self, node_id: str) -> None:
        """Put the cursor on a shown node (the rows stay as they are)."""
        self.highlighted = self._rows.index(node_id)

    def select_node(self, node_id: str) -> None:
        """Move the cursor to a node, unfolding its ancestors (and leaving a zoom that hides it)."""
        ancestors = self.model.ancestors(node_id)
        if node_id != self.view_root and self.view_root not in ancestors:
            self.view_root = self.model.root.node_id
        self.expanded.update(ancestors)
        self.rebuild(keep=node_id)

    def zoom(self, node_id: str | None) -> None:
        """Show only the subtree of `node_id` (None: the whole tree)."""
        self.view_root = node_id or self.model.root.node_id
        self.expanded.add(self.view_root)
        self.rebuild(keep=self.view_root)

    # -- events and actions -------------------------------------------------------------------

    def on_mount(self) -> None:
        self.rebuild(keep=self.view_root)

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._width:
            self.rebuild()  # which scrolls to the cursor
        else:
            self.scroll_to_highlight()  # a shorter view (a smaller terminal) still shows the cursor

    def watch_highlighted(self, old: int | None, highlighted: int | None) -> None:
        super().watch_highlighted(highlighted)
        # Only the rows that lose and gain the cursor change (scrolling repaints the rest itself).
        if len(self._rows) == self.virtual_size.height:  # one line per row
            for index in (old, highlighted):
                if index is not None:
                    self.refresh_line(index)
        else:
            self.refresh()
        if highlighted is not None and 0 <= highlighted < len(self._rows):
            node_id = self._rows[highlighted]
            if node_id != self.selected:
                self.selected = node_id
                if self.follow is not None:
                    self.follow(node_id)
                self.post_message(self.NodeSelected(node_id))

    def action_open(self) -> None:
        node_id = self.selected
        if node_id is None:
            return
        children = self.ordered_children(node_id)
        if not children:
            self.post_message(self.LeafOpened(node_id))
            return
        self.unfold(node_id)
        # A filter may hide the first child: the cursor stays on the node then.
        self.move_to(children[0] if children[0] in self._rows else node_id)

    def action_up(self) -> None:
        node_id = self.selected
        if node_id is None:
            return
        if node_id in self.expanded and self.model.children(node_id) and node_id != self.view_root:
            self.fold(node_id)
            return
        parent = self.model.parent(node_id)
        if parent is None or node_id == self.view_root:
            self.post_message(self.AtTop())  # nothing above: the screen may go back (to an atlas)
            return
        self.move_to(parent)

    def action_toggle(self) -> None:
        node_id = self.selected
        if node_id is None or not self.model.children(node_id):
            return
        if node_id in self.expanded:
            self.fold(node_id)
        else:
            self.unfold(node_id)

    def action_select(self) -> None:
        """Enter: the same as open (OptionList binds Enter to select)."""
        self.action_open()
