"""The map in the terminal: every context as a braille dot, the selected node bright.

A terminal cell holds a 2 × 4 grid of braille dots (U+2800–U+28FF). A cell is about twice
as tall as it is wide, so a dot is about square and the unit square of the layout maps to a
square of dots, centred in the widget. y points up, as in a scatter plot of the layout.

Drawing is vectorised numpy: each point becomes one dot index (cell × 8 + bit), a boolean
occupancy array over all dots is packed into one byte per cell (`np.packbits`), and the byte
is the braille pattern. The background (every point's dot) is cached per widget size; a node
change only recomputes which cells hold the node's members, so 100k points redraw in a few
milliseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import pairwise
from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style as RichStyle
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.reactive import Reactive, reactive
from textual.strip import Strip
from textual.widget import Widget

from vista_tui.core.model import MapModel
from vista_tui.tui.widgets.child_palette import CHILD_COLOURS, child_style
from vista_tui.tui.widgets.line_styles import BorderedLines

BRAILLE_BASE = 0x2800
"""Code point of the empty braille pattern; a cell's dot bits are added to it."""

DOT_BIT = np.array([[0, 3], [1, 4], [2, 5], [6, 7]], dtype=np.int64)
"""Bit number of the braille dot at [row within the cell (0-3, top down), column (0-1)]."""

_DOT_BIT_FLAT = DOT_BIT.ravel()

FULL_CELL = 0xFF
"""All eight dots: the pattern of the focused-context mark."""

# Kinds of cell, in drawing priority: a cell shows the highest kind any of its dots has.
EMPTY, POINT, OUTLINE, SELECTED, MARK = range(5)
CHILD_NONE = 5
"""With a child overlay: a cell of the shown node whose members mostly have no child."""
CHILD_BASE = 6
"""With a child overlay: kind CHILD_BASE + r is a cell whose members' commonest child has rank r."""


@dataclass(frozen=True)
class Viewport:
    """Where the unit square of the layout lies on a grid of braille cells."""

    cols: int
    rows: int
    side: int
    """Side of the square, in dots (dots are about square on a terminal)."""
    x0: int
    """Dot column of the square's left edge."""
    y0: int
    """Dot row of the square's top edge."""

    @property
    def n_cells(self) -> int:
        """Number of cells of the grid."""
        return self.cols * self.rows


def fit_viewport(cols: int, rows: int) -> Viewport:
    """The biggest square of dots in `cols` × `rows` cells (2 × 4 dots each), centred."""
    cols, rows = max(0, cols), max(0, rows)
    side = min(2 * cols, 4 * rows)
    return Viewport(cols, rows, side, (2 * cols - side) // 2, (4 * rows - side) // 2)


def _dot_xy(xy: np.ndarray, viewport: Viewport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dot column and row of each point (y up), and which points are finite."""
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 2)
    finite = np.isfinite(xy).all(axis=1)
    if not finite.all():
        xy = np.where(finite[:, None], xy, np.float32(0.0))
    last = max(viewport.side - 1, 0)
    scaled = xy * np.float32(viewport.side)
    # Clipped to [0, last] first, so truncation is the floor.
    px = np.clip(scaled[:, 0], 0, last).astype(np.int64) + viewport.x0
    py = np.clip(np.float32(viewport.side) - scaled[:, 1], 0, last).astype(np.int64) + viewport.y0
    return px, py, finite


def _dot_index(px: np.ndarray, py: np.ndarray, viewport: Viewport) -> np.ndarray:
    """Index of each dot into the flat (cell, bit) occupancy array."""
    cell = (py >> 2) * viewport.cols + (px >> 1)
    return (cell << 3) + _DOT_BIT_FLAT[((py & 3) << 1) | (px & 1)]


def dot_indices(xy: np.ndarray, viewport: Viewport) -> np.ndarray:
    """For each layout point, its dot as `cell * 8 + bit` (cell = row * cols + col); -1 if not finite."""
    if viewport.side == 0:
        return np.full(len(xy), -1, dtype=np.int64)
    px, py, finite = _dot_xy(xy, viewport)
    return np.where(finite, _dot_index(px, py, viewport), -1)


def pack_dots(dots: np.ndarray, viewport: Viewport) -> np.ndarray:
    """Braille bit patterns (rows, cols) uint8 of the given dot indices (-1 ignored)."""
    occupied = np.zeros(viewport.n_cells * 8, dtype=bool)
    occupied[dots[dots >= 0]] = True
    packed = np.packbits(occupied.reshape(-1, 8), axis=1, bitorder="little")
    return packed.reshape(viewport.rows, viewport.cols)


def rasterize(xy: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """The braille bit pattern of every cell, (rows, cols) uint8, for layout points in the unit square."""
    viewport = fit_viewport(cols, rows)
    return pack_dots(dot_indices(xy, viewport), viewport)


def box_dots(bbox: tuple[float, float, float, float], viewport: Viewport) -> np.ndarray:
    """Dot indices of the outline of a layout box (x_min, y_min, x_max, y_max)."""
    if viewport.side == 0:
        return np.zeros(0, dtype=np.int64)
    x_min, y_min, x_max, y_max = bbox
    px, py, finite = _dot_xy(np.array([[x_min, y_max], [x_max, y_min]]), viewport)
    if not finite.all():
        return np.zeros(0, dtype=np.int64)
    left, right, top, bottom = int(px[0]), int(px[1]), int(py[0]), int(py[1])
    xs = np.arange(left, right + 1)
    ys = np.arange(top, bottom + 1)
    edge_x = np.concatenate([xs, xs, np.full(len(ys), left), np.full(len(ys), right)])
    edge_y = np.concatenate([np.full(len(xs), top), np.full(len(xs), bottom), ys, ys])
    return _dot_index(edge_x, edge_y, viewport)


def braille_lines(bits: np.ndarray) -> list[str]:
    """One string per row: a braille character per cell, a space where the cell has no dot."""
    codes = np.where(bits == 0, 0x20, BRAILLE_BASE + bits.astype(np.uint32)).astype("<u4")
    return [row.tobytes().decode("utf-32-le") for row in codes]


@dataclass(frozen=True)
class Frame:
    """One drawn state of the minimap: what each cell shows and why."""

    bits: np.ndarray
    """Braille bit pattern per cell, (rows, cols) uint8."""
    kinds: np.ndarray
    """Cell kind per cell, (rows, cols) uint8: EMPTY, POINT, OUTLINE, SELECTED or MARK."""

    @property
    def lines(self) -> list[str]:
        """The frame's text, one string per row."""
        return braille_lines(self.bits)


@dataclass
class _Background:
    viewport: Viewport
    dots: np.ndarray
    """Dot index of every layout point."""
    bits: np.ndarray
    nodes: OrderedDict[str | None, tuple[np.ndarray, np.ndarray]] = field(default_factory=OrderedDict)
    """Per node shown at this size, its frame without the mark: (bits, kinds), newest last (see NODE_FRAMES)."""


NODE_FRAMES = 64
"""Frames of nodes kept per size: walking back to a node shown before costs no pass over its members."""
ROW_STRIPS = 512
"""Styled rows kept by their cells: a node shown again gets its rows back without styling them again."""


class Minimap(Widget):
    """The 2-D layout in braille: all contexts dim, the shown node's members bright, its parent's box outlined."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "minimap--point",
        "minimap--selected",
        "minimap--outline",
        "minimap--mark",
    }
    """
    | Class | Description |
    | :- | :- |
    | `minimap--point` | Cells holding only contexts outside the shown node (dim). |
    | `minimap--selected` | Cells holding at least one member of the shown node (bright). |
    | `minimap--outline` | The bounding box of the shown node's parent. |
    | `minimap--mark` | The cell of the marked (focused) context. |
    """

    # Colours only; the size of the widget is the app's layout (app.tcss).
    DEFAULT_CSS = """
    Minimap > .minimap--point { color: $foreground 35%; }
    Minimap > .minimap--selected { color: $accent; text-style: bold; }
    Minimap > .minimap--outline { color: $primary-lighten-2; }
    Minimap > .minimap--mark { color: $success; text-style: bold; }
    """

    # Not `repaint`: a change repaints only the rows whose cells changed (see `_repaint_changes`).
    node_id: Reactive[str | None] = reactive(None, init=False, repaint=False)
    """The node whose members are drawn bright (None: nothing selected)."""
    marked_row: Reactive[int | None] = reactive(None, init=False, repaint=False)
    """The context row drawn as a mark (the focused context), or None."""

    def __init__(
        self, model: MapModel, *, name: str | None = None, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._styles_cache = BorderedLines()  # fewer costs per repainted line (line_styles.py)
        self.model = model
        self._background: _Background | None = None
        self._frame: Frame | None = None
        self._frame_key: tuple[Size, str | None, int | None] | None = None
        self._strips: list[Strip | None] = []
        """The styled row of each line of `_frame`, None until drawn (or when the row changed)."""
        self._drawn_rows: LRUCache[bytes, Strip] = LRUCache(ROW_STRIPS)
        """A row's cell patterns and kinds (as bytes) → its styled strip, whatever line it was on.

        The same strip for the same cells, so the bordered line drawn from it comes back too
        (line_styles.py)."""
        self._styles: dict[int, RichStyle] = {}
        self.child_ranks: np.ndarray | None = None
        """Per context row, the rank of its dominant child in a second SAE (-1: none), or None: no overlay."""

    # -- public API -----------------------------------------------------------------------------

    def show_node(self, node_id: str) -> None:
        """Draw `node_id`'s members bright and its parent's bounding box (none for the root)."""
        if node_id not in self.model.nodes:
            raise KeyError(f"no node {node_id!r} in map {self.model.map_id}")
        self.node_id = node_id

    def mark_row(self, row: int | None) -> None:
        """Mark one context (e.g. the focused one) with a distinct full cell; None removes the mark."""
        if row is not None and not 0 <= row < len(self.model.layout):
            raise IndexError(f"context row {row} outside 0..{len(self.model.layout) - 1}")
        self.marked_row = row

    def set_child_ranks(self, ranks: np.ndarray | None) -> None:
        """Colour the shown node's members by their dominant child's rank (`C`); None: the plain map."""
        self.child_ranks = ranks
        if self._background is not None:
            self._background.nodes.clear()  # the cached node layers are coloured the other way
        self._frame = None
        self.refresh()

    @property
    def frame(self) -> Frame:
        """What the widget draws at its current size (computed on demand, cached)."""
        return self._current_frame()

    # -- drawing --------------------------------------------------------------------------------

    def _background_for(self, cols: int, rows: int) -> _Background:
        background = self._background
        if background is None or (background.viewport.cols, background.viewport.rows) != (cols, rows):
            viewport = fit_viewport(cols, rows)
            dots = dot_indices(self.model.layout, viewport)
            background = _Background(viewport, dots, pack_dots(dots, viewport))
            self._background = background
        return background

    def _node_layer(self, background: _Background) -> tuple[np.ndarray, np.ndarray]:
        """The frame of the shown node without the mark: (bits, kinds), both flat; cached per node."""
        node_id = self.node_id
        cached = background.nodes.get(node_id)
        if cached is not None:
            background.nodes.move_to_end(node_id)
            return cached
        viewport = background.viewport
        bits = background.bits.copy()
        kinds = np.where(bits > 0, POINT, EMPTY).astype(np.uint8).ravel()
        node = self.model.nodes.get(node_id) if node_id is not None else None
        if node is not None:
            parent_id = node.parent_id
            if parent_id is not None and parent_id in self.model.nodes:
                outline = box_dots(self.model.nodes[parent_id].bbox, viewport)
                bits |= pack_dots(outline, viewport)
                kinds[outline // 8] = OUTLINE
            member_dots = background.dots[node.members]
            if self.child_ranks is not None:
                colour_children(kinds, member_dots, self.child_ranks[node.members])
            else:
                kinds[member_dots[member_dots >= 0] // 8] = SELECTED
        layer = (bits.ravel(), kinds)
        background.nodes[node_id] = layer
        if len(background.nodes) > NODE_FRAMES:
            background.nodes.popitem(last=False)
        return layer

    def compute_frame(self, cols: int, rows: int) -> Frame:
        """Cell patterns and kinds for a `cols` × `rows` widget in the current state."""
        background = self._background_for(cols, rows)
        viewport = background.viewport
        node_bits, node_kinds = self._node_layer(background)
        bits, kinds = node_bits.copy(), node_kinds.copy()
        if self.marked_row is not None and viewport.side:
            dot = int(background.dots[self.marked_row])
            if dot >= 0:
                kinds[dot // 8] = MARK
                bits[dot // 8] = FULL_CELL
        return Frame(bits.reshape(rows, cols), kinds.reshape(rows, cols))

    def _current_frame(self) -> Frame:
        self._update_frame()
        assert self._frame is not None
        return self._frame

    def _update_frame(self) -> list[int] | None:
        """Bring the frame to the current size and state; the rows that changed (None: all of them)."""
        key = (self.size, self.node_id, self.marked_row)
        old, old_key = self._frame, self._frame_key
        if old is not None and old_key == key:
            return []
        frame = self.compute_frame(self.size.width, self.size.height)
        self._frame, self._frame_key = frame, key
        if old is None or old_key is None or old_key[0] != key[0] or len(self._strips) != len(frame.bits):
            self._strips = [None] * len(frame.bits)
            return None
        # The same size: only the rows whose cells changed are styled (and painted) again.
        changed = np.flatnonzero((old.bits != frame.bits).any(axis=1) | (old.kinds != frame.kinds).any(axis=1))
        for y in changed.tolist():
            self._strips[y] = None
        return changed.tolist()

    def _repaint_changes(self) -> None:
        """The node or the mark changed: repaint the rows whose cells changed, not the whole map."""
        width, height = self.size
        changed = self._update_frame() if self.is_mounted and width > 0 and height > 0 else None
        if changed is None:
            self.refresh()
            return
        for y in changed:
            self.refresh(Region(0, y, width, 1))

    def watch_node_id(self) -> None:
        self._repaint_changes()

    def watch_marked_row(self) -> None:
        self._repaint_changes()

    def _kind_styles(self) -> dict[int, RichStyle]:
        if not self._styles:
            self._styles = {
                EMPTY: self.rich_style,
                POINT: self.get_component_rich_style("minimap--point"),
                OUTLINE: self.get_component_rich_style("minimap--outline"),
                SELECTED: self.get_component_rich_style("minimap--selected"),
                MARK: self.get_component_rich_style("minimap--mark"),
                CHILD_NONE: self.rich_style + RichStyle(color="#808080"),
                **{CHILD_BASE + rank: self.rich_style + child_style(rank) for rank in range(len(CHILD_COLOURS))},
            }
        return self._styles

    def _row_strip(self, bits: np.ndarray, kinds: np.ndarray, styles: dict[int, RichStyle]) -> Strip:
        """One row of the frame as a strip: points and spaces of one style in a row make one segment."""
        text = braille_lines(bits[None, :])[0]
        starts = np.concatenate([[0], np.flatnonzero(kinds[1:] != kinds[:-1]) + 1, [len(kinds)]]).tolist()
        return Strip([Segment(text[s:e], styles[int(kinds[s])]) for s, e in pairwise(starts)], len(text))

    def _build_strips(self, frame: Frame) -> list[Strip]:
        styles = self._kind_styles()
        return [self._row_strip(bits, kinds, styles) for bits, kinds in zip(frame.bits, frame.kinds, strict=True)]

    def render_line(self, y: int) -> Strip:
        """One row of braille cells (Textual's line API)."""
        width, height = self.size
        if width <= 0 or height <= 0:
            return Strip.blank(width, self.rich_style)
        frame = self._current_frame()
        if not 0 <= y < len(self._strips):
            return Strip.blank(width, self.rich_style)
        strip = self._strips[y]
        if strip is None:
            bits, kinds = frame.bits[y], frame.kinds[y]
            cells = bits.tobytes() + kinds.tobytes()
            strip = self._drawn_rows.get(cells)
            if strip is None:
                strip = self._drawn_rows[cells] = self._row_strip(bits, kinds, self._kind_styles())
            self._strips[y] = strip
        return strip

    def notify_style_update(self) -> None:
        """Styles changed (theme, CSS reload): rebuild the styled strips on the next paint."""
        super().notify_style_update()
        self._styles = {}
        self._strips = [None] * len(self._strips)
        self._drawn_rows.clear()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """With `height: auto`, as tall as makes the map square (2 dots per column, 4 per row)."""
        return max(1, (width + 1) // 2)


def colour_children(kinds: np.ndarray, dots: np.ndarray, ranks: np.ndarray) -> None:
    """Each cell holding members gets the kind of their commonest child (ties to the better rank; a cell
    where most have none: CHILD_NONE). Ranks past the palette share its last colour."""
    valid = dots >= 0
    cells = dots[valid] // 8
    n_colours = len(CHILD_COLOURS)
    # Column n_colours counts the members without a child: argmax picks it only when it is strictly most.
    column = np.where(ranks[valid] < 0, n_colours, np.minimum(ranks[valid], n_colours - 1)).astype(np.int64)
    used, cell_index = np.unique(cells, return_inverse=True)
    counts = np.zeros((len(used), n_colours + 1), dtype=np.int64)
    np.add.at(counts, (cell_index, column), 1)
    commonest = counts.argmax(axis=1)
    kinds[used] = np.where(commonest == n_colours, CHILD_NONE, CHILD_BASE + commonest)
