"""A picture of a map that needs no model weights: the layout drawn with Pillow.

What a render shows when no diffusion model is configured (and what tests and CI render):
every context a dot at its layout position, coloured by its top-level cluster (a fixed
qualitative palette; noise grey); each cluster's short title at the cluster's own points:
anchored on its densest member (not its centroid, which for a ring or a cluster of two lobes
lies in empty space), placed greedily so that no two titles overlap and each stays inside the
picture (a title that finds no free spot is left out). The selected node's members are drawn
on top of a faded map, coloured by its own sub-clusters when it has some, with its bounding
box outlined; a caption says that this is a sketch, not a diffusion render. Same map, node
and size → the same pixels (no randomness, Pillow's embedded font, ties broken by node id).

The unit square of the layout maps to a centred square of the canvas, y pointing up, as in
the TUI's minimap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vista_tui.core.titles import focus_title
from vista_tui.mapdata import ClusterNode, MapReader

# When the drawing changes, bump vista_tui.mapdata.renders.SKETCH_VERSION (part of the render cache key).

CAPTION = "sketch — not a diffusion render"

BACKGROUND = (250, 250, 247)
INK = (40, 40, 46)
NOISE = (170, 170, 170)
# Okabe–Ito and Tableau hues: distinguishable, also for most colour-blind readers.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (213, 94, 0),
    (86, 180, 233),
    (148, 103, 189),
    (140, 86, 75),
    (188, 189, 34),
    (23, 190, 207),
    (214, 39, 40),
    (127, 127, 127),
)
MIN_SIZE = 64
MAX_SIZE = 8192
TITLE_CHARS = 28

Box = tuple[float, float, float, float]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


DENSITY_CELLS = 40
"""The plot's side over the cell size in which a cluster's densest member is looked for (`label_anchor`)."""
ANCHOR_CLEARANCE = 3.0
"""Pixels around another title's anchor that a title's box keeps clear of (its leader line ends there)."""


@dataclass(frozen=True)
class _Label:
    text: str
    anchor: tuple[float, float]
    """Canvas position of the point the title names: its node's densest member."""
    colour: tuple[int, int, int]
    font: Font
    node_id: str = ""


@dataclass(frozen=True)
class PlacedLabel:
    """A title as drawn: which node it names, its text, the point it names, and its box on the canvas."""

    node_id: str
    text: str
    anchor: tuple[float, float]
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Plot:
    """Where the layout lands: its unit square (stretched to the data when points lie outside) mapped to a
    centred square of side `side` at (`left`, `top`), y pointing up."""

    left: float
    top: float
    side: float
    lo: float
    scale: float

    def to_canvas(self, x: float | np.ndarray, y: float | np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
        """Canvas pixel coordinates of layout coordinates."""
        return self.left + (x - self.lo) * self.scale, self.top + self.side - (y - self.lo) * self.scale


@dataclass(frozen=True)
class Sketch:
    """A drawn sketch: the picture, the plot it was drawn on and the titles as placed."""

    image: Image.Image
    plot: Plot
    labels: tuple[PlacedLabel, ...] = ()


def short_title(node: ClusterNode, max_chars: int = TITLE_CHARS) -> str:
    """A few words naming a node, as the explorer names it: its LLM label, else its focus tokens when
    they concentrate, else its top two keywords; printable characters only."""
    if node.kind == "noise":
        return "noise"
    text = (
        node.labels.llm_label
        or focus_title(node)
        or ", ".join(node.labels.keywords[:2])
        or f"cluster {node.node_id[:6]}"
    )
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


PREFERRED_FONT = "DejaVuSans.ttf"
"""Found in the system font folders of most Linux servers; it has accents, dashes and arrows."""


@lru_cache(maxsize=16)
def _font(size: int) -> Font:
    """DejaVu Sans when the system has it, else Pillow's embedded font (Latin letters only)."""
    try:
        return ImageFont.truetype(PREFERRED_FONT, size)
    except OSError:
        return ImageFont.load_default(size=size)


def sketch_font() -> str:
    """The font sketches are drawn with on this machine (recorded in the sidecar)."""
    font = _font(12)
    return Path(str(getattr(font, "path", ""))).name or "pillow-default"


@lru_cache(maxsize=4096)
def _has_glyph(font: Font, char: str) -> bool:
    # A missing glyph renders as the font's "notdef" box, the same as a private-use character.
    return char.isspace() or bytes(font.getmask(char)) != bytes(font.getmask("\ue000"))


def _drawable(font: Font, text: str) -> str:
    """`text` with the characters `font` cannot draw replaced (dashes by '-', others by '?')."""
    return "".join(ch if _has_glyph(font, ch) else ("-" if ch in "—–‒" else "..." if ch == "…" else "?") for ch in text)


def _fade(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    """`colour` blended towards the background by `amount` (0 = unchanged, 1 = background)."""
    return tuple(round(c + (b - c) * amount) for c, b in zip(colour, BACKGROUND, strict=True))  # type: ignore[return-value]


def _darken(colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    return tuple(round(c * (1 - amount)) for c in colour)  # type: ignore[return-value]


def _overlaps(box: Box, others: Sequence[Box]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in others)


def _inside(box: Box, area: Box) -> Box:
    """`box` shifted (not resized) to lie inside `area` where it fits; a box wider than the area keeps its left."""
    x0, y0, x1, y1 = box
    dx = max(area[0] - x0, 0.0) or min(area[2] - x1, 0.0)
    dy = max(area[1] - y0, 0.0) or min(area[3] - y1, 0.0)
    return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)


LABEL_STEPS = (0.0, 0.5, 1.0, 1.5)
"""How far from its anchor a title may go, in half box widths (x) and box heights (y): 0 is centred on
it, 0.5 touches it. Among these the spot covering the fewest dots wins."""
FAR_STEPS = (2.0, 3.5)
"""Farther spots, tried only when none of LABEL_STEPS is free."""
DIRECTIONS = ((0, -1), (0, 1), (1, 0), (-1, 0), (1, -1), (-1, -1), (1, 1), (-1, 1))
NEAR_MOVES = ((0.0, 0, 0), *((step, dx, dy) for step in LABEL_STEPS[1:] for dx, dy in DIRECTIONS))
"""(step, dx, dy) of the spots a title prefers, nearest first."""
FAR_MOVES = tuple((step, dx, dy) for step in FAR_STEPS for dx, dy in DIRECTIONS)


def _covered(box: Box, dots: np.ndarray) -> int:
    """How many of the dots (canvas x, y) lie under `box`."""
    if not len(dots):
        return 0
    x, y = dots[:, 0], dots[:, 1]
    return int(((x >= box[0]) & (x <= box[2]) & (y >= box[1]) & (y <= box[3])).sum())


def _spot(
    anchor: tuple[float, float], size: tuple[float, float], move: tuple[float, int, int], area: Box, others: list[Box]
) -> Box | None:
    """The box of `size` moved `step` from `anchor` in direction (dx, dy) (`move`), nudged inside `area`; None when
    it does not fit there or overlaps one of `others`."""
    (ax, ay), (w, h), (step, dx, dy) = anchor, size, move
    cx, cy = ax + dx * step * (w / 2 + 4), ay + dy * step * (h + 2)
    box = _inside((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), area)
    fits = box[0] >= area[0] and box[1] >= area[1] and box[2] <= area[2] and box[3] <= area[3]
    return box if fits and not _overlaps(box, others) else None


def _place_labels(
    draw: ImageDraw.ImageDraw,
    labels: Sequence[_Label],
    area: Box,
    taken: list[Box],
    dots: np.ndarray | None = None,
) -> list[tuple[_Label, Box]]:
    """Greedy placement: each label (in the given order) takes a free spot at its anchor, or none.

    The spots: centred on the anchor, then beside it in eight directions, a little farther each
    step (LABEL_STEPS); among the free ones, the one hiding the fewest `dots` (canvas x, y), the
    nearest of those, so a title sits by its cluster's core rather than on it. Only when none is
    free are the FAR_STEPS tried. A spot is nudged inside `area` rather than given up at the
    edge, and it keeps clear of the boxes already taken and of the other labels' anchors (no
    title hides the point another one names).
    """
    dots = np.empty((0, 2)) if dots is None else np.asarray(dots, dtype=np.float64)
    anchors = [
        (label.anchor[0] - ANCHOR_CLEARANCE, label.anchor[1] - ANCHOR_CLEARANCE,
         label.anchor[0] + ANCHOR_CLEARANCE, label.anchor[1] + ANCHOR_CLEARANCE)
        for label in labels
    ]  # fmt: skip
    placed: list[tuple[_Label, Box]] = []
    for index, label in enumerate(labels):
        left, top, right, bottom = draw.textbbox((0, 0), label.text, font=label.font)
        w, h = right - left + 8, bottom - top + 6  # padding of the backing box
        others = [*taken, *(box for box in anchors if box != anchors[index])]  # its own anchor it may cover
        spots = [(move, _spot(label.anchor, (w, h), move, area, others)) for move in NEAR_MOVES]
        near = [(_covered(box, dots), rank, box) for rank, (_, box) in enumerate(spots) if box is not None]
        found = min(near)[2] if near else None
        if found is None:
            far = (_spot(label.anchor, (w, h), move, area, others) for move in FAR_MOVES)
            found = next((box for box in far if box is not None), None)
        if found is not None:
            taken.append((found[0] - 2, found[1] - 2, found[2] + 2, found[3] + 2))
            placed.append((label, found))
    return placed


def label_anchor(points: np.ndarray, cell: float) -> tuple[float, float] | None:
    """The member a cluster's title names: the point with the most neighbours in the 3 x 3 cells of side
    `cell` around it (ties: nearest the mean of the tied points, then the lowest row). None without points.

    Always one of `points`, so a title sits on its cluster even when the cluster's centroid does not
    (a ring, two lobes, a crescent). Counting in cells keeps it linear in the number of points.
    """
    finite = points[np.isfinite(points).all(axis=1)]
    if not len(finite):
        return None
    cells = np.floor((finite - finite.min(axis=0)) / max(cell, 1e-9)).astype(np.int64) + 1
    counts = np.zeros((int(cells[:, 0].max()) + 2, int(cells[:, 1].max()) + 2), dtype=np.int64)
    np.add.at(counts, (cells[:, 0], cells[:, 1]), 1)
    padded = np.pad(counts, 1)
    around = sum(padded[1 + i : padded.shape[0] - 1 + i, 1 + j : padded.shape[1] - 1 + j]
                 for i in (-1, 0, 1) for j in (-1, 0, 1))  # fmt: skip
    density = around[cells[:, 0], cells[:, 1]]
    densest = np.flatnonzero(density == density.max())
    centre = finite[densest].mean(axis=0)
    best = densest[np.argmin(((finite[densest] - centre) ** 2).sum(axis=1))]
    return float(finite[best, 0]), float(finite[best, 1])


def _clusters_of(reader: MapReader, node_id: str) -> list[ClusterNode]:
    """The node's child clusters (noise left out), largest first, ties by node id: the order of their hues."""
    return sorted(
        (node for node in reader.children(node_id) if node.kind == "cluster"),
        key=lambda node: (-node.size, node.node_id),
    )


def _colour_rows(reader: MapReader, top: Sequence[ClusterNode]) -> np.ndarray:
    """(N, 3) uint8 colour of each context: its top-level cluster's hue, noise and unclustered grey."""
    colours = np.tile(np.array(NOISE, dtype=np.uint8), (reader.n_contexts, 1))
    for index, node in enumerate(top):
        colours[node.members] = PALETTE[index % len(PALETTE)]
    return colours


def _plot(width: int, height: int, header_h: int, footer_h: int, margin: int, xy: np.ndarray) -> Plot:
    """The largest centred square between header and footer; the layout's unit square (stretched to the
    data if points lie outside it) fills it."""
    finite = np.isfinite(xy).all(axis=1)
    side = min(width - 2 * margin, height - header_h - footer_h - 2 * margin)
    left = (width - side) / 2
    top = header_h + margin + (height - header_h - footer_h - 2 * margin - side) / 2
    lo = min(0.0, float(xy[finite].min())) if finite.any() else 0.0
    hi = max(1.0, float(xy[finite].max())) if finite.any() else 1.0
    return Plot(left=left, top=top, side=side, lo=lo, scale=side / (hi - lo))


def sketch_map(reader: MapReader, node_id: str | None, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """The map as an RGB picture, with `node_id`'s members emphasised (none, or the root: the whole map).

    Raises ValueError for a bad size or a node the map does not have (MapError for an unreadable map).
    """
    return draw_sketch(reader, node_id, size).image


def draw_sketch(reader: MapReader, node_id: str | None, size: tuple[int, int] = (1024, 768)) -> Sketch:
    """`sketch_map`'s picture with the plot it was drawn on and where each title went."""
    width, height = int(size[0]), int(size[1])
    if not (MIN_SIZE <= width <= MAX_SIZE and MIN_SIZE <= height <= MAX_SIZE):
        raise ValueError(f"sketch size must be between {MIN_SIZE} and {MAX_SIZE} pixels a side, got {width}x{height}")
    selected: ClusterNode | None = None
    if node_id is not None:
        try:
            selected = reader.node(node_id)
        except KeyError:
            raise ValueError(f"map {reader.path.name} has no node {node_id!r}") from None
        if selected.parent_id is None:
            selected = None  # the root is the whole map: nothing to single out

    top = _clusters_of(reader, reader.root.node_id)
    colours = _colour_rows(reader, top)
    colour_of = {node.node_id: PALETTE[index % len(PALETTE)] for index, node in enumerate(top)}
    # A selected node's members in the hues of its own sub-clusters: in its top-level hue alone they
    # would all be one colour, its inner structure invisible.
    children = _clusters_of(reader, selected.node_id) if selected is not None else []
    if selected is not None and children:
        colours[selected.members] = NOISE
        for index, child in enumerate(children):
            colours[child.members] = PALETTE[index % len(PALETTE)]
            colour_of[child.node_id] = PALETTE[index % len(PALETTE)]
    xy = reader.layout.astype(np.float64)
    finite = np.isfinite(xy).all(axis=1)

    unit = max(1, min(width, height))
    label_font = _font(max(10, round(unit / 48)))
    small_font = _font(max(9, round(unit / 60)))
    caption_font = _font(max(9, round(unit / 60)))
    header_h = round(unit / 24) + 6
    footer_h = round(unit / 30) + 6
    margin = round(unit / 40)
    plot = _plot(width, height, header_h, footer_h, margin, xy)

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    px, py = plot.to_canvas(xy[:, 0], xy[:, 1])
    canvas_xy = np.column_stack([px, py])
    radius = max(1.0, unit / 320)
    # Higher activation, bigger dot (up to 1.8x): the strongest contexts stand out.
    acts = reader.activations.astype(np.float64)
    top_act = float(np.nanmax(acts)) if len(acts) and np.isfinite(acts).any() and np.nanmax(acts) > 0 else 1.0
    radii = radius * (1.0 + 0.8 * np.clip(np.nan_to_num(acts) / top_act, 0.0, 1.0))

    is_member = np.zeros(reader.n_contexts, dtype=bool)
    if selected is not None:
        is_member[selected.members] = True
    # Lowest activation first so the strongest dots end on top; ties by row (stable sort).
    order = np.argsort(acts, kind="stable")
    for row in order[~is_member[order] & finite[order]]:
        colour = tuple(int(c) for c in colours[row])
        if selected is not None:
            colour = _fade(colour, 0.72)  # type: ignore[arg-type]
        r = radii[row]
        draw.ellipse((px[row] - r, py[row] - r, px[row] + r, py[row] + r), fill=colour)
    if selected is not None:
        outline = max(1, round(radius / 2))
        for row in order[is_member[order] & finite[order]]:
            colour = tuple(int(c) for c in colours[row])
            r = radii[row] * 1.35
            draw.ellipse(
                (px[row] - r, py[row] - r, px[row] + r, py[row] + r),
                fill=colour,
                outline=_darken(colour, 0.55),  # type: ignore[arg-type]
                width=outline,
            )
        x0, y1 = plot.to_canvas(selected.bbox[0], selected.bbox[1])
        x1, y0 = plot.to_canvas(selected.bbox[2], selected.bbox[3])
        if all(np.isfinite(v) for v in (x0, y0, x1, y1)):
            pad = 3 * radius + 2
            draw.rectangle(
                (float(x0) - pad, float(y0) - pad, float(x1) + pad, float(y1) + pad),
                outline=INK,
                width=max(1, round(unit / 400)),
            )

    # Titles: the top-level clusters by size; below a selected node, its children too (smaller). Each
    # is anchored on its node's densest member.
    cell = plot.side / DENSITY_CELLS

    def label(node: ClusterNode, colour: tuple[int, int, int], font: Font) -> _Label | None:
        """The node's title anchored on its densest member; None when it has no point on the canvas."""
        anchor = label_anchor(canvas_xy[node.members], cell)
        if anchor is None:
            return None
        return _Label(_drawable(font, short_title(node)), anchor, colour, font, node.node_id)

    labels = [label(node, colour_of[node.node_id], label_font) for node in top]
    if selected is not None and selected.node_id not in colour_of:
        labels.insert(0, label(selected, INK, label_font))
    labels += [label(node, colour_of.get(node.node_id, INK), small_font) for node in children]

    header_box: Box = (0, 0, width, header_h)
    footer_box: Box = (0, height - footer_h, width, height)
    taken: list[Box] = [header_box, footer_box]
    drawn = _place_labels(
        draw, [item for item in labels if item is not None], (0, 0, width, height), taken, canvas_xy[finite]
    )
    for placed, box in drawn:
        ax, ay = placed.anchor
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if abs(cx - ax) > 1 or abs(cy - ay) > 1:
            draw.line((ax, ay, cx, cy), fill=_darken(placed.colour, 0.3), width=1)
        draw.rounded_rectangle(box, radius=4, fill=(255, 255, 255), outline=_darken(placed.colour, 0.3), width=1)
        draw.text((cx, cy), placed.text, font=placed.font, fill=_darken(placed.colour, 0.45), anchor="mm")

    manifest = reader.manifest
    header = f"{manifest.map_id} · latent {manifest.provenance.latent} · {reader.n_contexts:,} contexts"
    if selected is not None:
        header += f" · {short_title(selected, 40)} ({selected.size:,})"
    draw.text((margin, header_h / 2), _drawable(label_font, header), font=label_font, fill=INK, anchor="lm")
    caption = _drawable(caption_font, CAPTION)
    draw.text((width - margin, height - footer_h / 2), caption, font=caption_font, fill=(110, 110, 110), anchor="rm")
    placed_labels = tuple(PlacedLabel(item.node_id, item.text, item.anchor, box) for item, box in drawn)
    return Sketch(image=image, plot=plot, labels=placed_labels)
