"""A picture of a map that needs no model weights: the layout drawn with Pillow.

What a render shows when no diffusion model is configured (and what tests and CI render):
every context a dot at its layout position, coloured by its top-level cluster (noise
grey); the clusters' short titles at their centroids, placed greedily so that no two
overlap (a title that finds no free spot is left out); the selected node's members drawn
on top of a faded map with its bounding box outlined; a caption saying that this is a
sketch, not a diffusion render. Same map, node and size → the same pixels (no randomness,
Pillow's embedded font, ties broken by node id).

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


@dataclass(frozen=True)
class _Label:
    text: str
    anchor: tuple[float, float]
    """Canvas position of the node's centroid."""
    colour: tuple[int, int, int]
    font: Font


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


def _place_labels(
    draw: ImageDraw.ImageDraw, labels: Sequence[_Label], area: Box, taken: list[Box]
) -> list[tuple[_Label, Box]]:
    """Greedy placement: each label (in the given order) takes the first free spot near its anchor, or none."""
    placed: list[tuple[_Label, Box]] = []
    for label in labels:
        left, top, right, bottom = draw.textbbox((0, 0), label.text, font=label.font)
        w, h = right - left + 8, bottom - top + 6  # padding of the backing box
        ax, ay = label.anchor
        steps = (0.0, 1.0, 2.0, 3.5)
        directions = ((0, 0), (0, -1), (0, 1), (1, 0), (-1, 0), (1, -1), (-1, -1), (1, 1), (-1, 1))
        for step in steps:
            found = None
            for dx, dy in directions if step else ((0, 0),):
                cx = ax + dx * step * (w / 2 + 4)
                cy = ay + dy * step * (h + 2)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                inside = box[0] >= area[0] and box[1] >= area[1] and box[2] <= area[2] and box[3] <= area[3]
                if inside and not _overlaps(box, taken):
                    found = box
                    break
            if found is not None:
                taken.append((found[0] - 2, found[1] - 2, found[2] + 2, found[3] + 2))
                placed.append((label, found))
                break
    return placed


def _colour_rows(reader: MapReader, top: Sequence[ClusterNode]) -> np.ndarray:
    """(N, 3) uint8 colour of each context: its top-level cluster's hue, noise and unclustered grey."""
    colours = np.tile(np.array(NOISE, dtype=np.uint8), (reader.n_contexts, 1))
    for index, node in enumerate(top):
        colours[node.members] = PALETTE[index % len(PALETTE)]
    return colours


def sketch_map(reader: MapReader, node_id: str | None, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """The map as an RGB picture, with `node_id`'s members emphasised (none, or the root: the whole map).

    Raises ValueError for a bad size or a node the map does not have (MapError for an unreadable map).
    """
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

    root = reader.root
    top = sorted(
        (node for node in reader.children(root.node_id) if node.kind == "cluster"),
        key=lambda node: (-node.size, node.node_id),
    )
    colours = _colour_rows(reader, top)
    xy = reader.layout.astype(np.float64)
    finite = np.isfinite(xy).all(axis=1)

    unit = max(1, min(width, height))
    label_font = _font(max(10, round(unit / 48)))
    small_font = _font(max(9, round(unit / 60)))
    caption_font = _font(max(9, round(unit / 60)))
    header_h = round(unit / 24) + 6
    footer_h = round(unit / 30) + 6

    # The plot: the largest centred square between header and footer; the layout's unit square
    # (stretched to the data if points lie outside it) fills it with a small margin.
    margin = round(unit / 40)
    side = min(width - 2 * margin, height - header_h - footer_h - 2 * margin)
    ox = (width - side) / 2
    oy = header_h + margin + (height - header_h - footer_h - 2 * margin - side) / 2
    lo = min(0.0, float(xy[finite].min())) if finite.any() else 0.0
    hi = max(1.0, float(xy[finite].max())) if finite.any() else 1.0
    scale = side / (hi - lo)

    def to_canvas(x: float | np.ndarray, y: float | np.ndarray) -> tuple[float | np.ndarray, float | np.ndarray]:
        return ox + (x - lo) * scale, oy + side - (y - lo) * scale

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    px, py = to_canvas(xy[:, 0], xy[:, 1])
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
        x0, y1 = to_canvas(selected.bbox[0], selected.bbox[1])
        x1, y0 = to_canvas(selected.bbox[2], selected.bbox[3])
        if all(np.isfinite(v) for v in (x0, y0, x1, y1)):
            pad = 3 * radius + 2
            draw.rectangle(
                (float(x0) - pad, float(y0) - pad, float(x1) + pad, float(y1) + pad),
                outline=INK,
                width=max(1, round(unit / 400)),
            )

    # Titles: the top-level clusters by size; below a selected node, its children too (smaller).
    labels: list[_Label] = []
    colour_of = {node.node_id: PALETTE[index % len(PALETTE)] for index, node in enumerate(top)}
    for node in top:
        if all(np.isfinite(node.centroid)):
            cx, cy = to_canvas(*node.centroid)
            title = _drawable(label_font, short_title(node))
            labels.append(_Label(title, (float(cx), float(cy)), colour_of[node.node_id], label_font))
    if selected is not None and selected.node_id not in colour_of and all(np.isfinite(selected.centroid)):
        cx, cy = to_canvas(*selected.centroid)
        title = _drawable(label_font, short_title(selected))
        labels.insert(0, _Label(title, (float(cx), float(cy)), INK, label_font))
    if selected is not None:
        children = sorted(
            (n for n in reader.children(selected.node_id) if n.kind == "cluster"),
            key=lambda node: (-node.size, node.node_id),
        )
        for node in children:
            if all(np.isfinite(node.centroid)):
                cx, cy = to_canvas(*node.centroid)
                title = _drawable(small_font, short_title(node))
                labels.append(_Label(title, (float(cx), float(cy)), INK, small_font))

    header_box: Box = (0, 0, width, header_h)
    footer_box: Box = (0, height - footer_h, width, height)
    taken: list[Box] = [header_box, footer_box]
    for label, box in _place_labels(draw, labels, (0, 0, width, height), taken):
        ax, ay = label.anchor
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if abs(cx - ax) > 1 or abs(cy - ay) > 1:
            draw.line((ax, ay, cx, cy), fill=_darken(label.colour, 0.3), width=1)
        draw.rounded_rectangle(box, radius=4, fill=(255, 255, 255), outline=_darken(label.colour, 0.3), width=1)
        draw.text((cx, cy), label.text, font=label.font, fill=_darken(label.colour, 0.45), anchor="mm")

    manifest = reader.manifest
    header = f"{manifest.map_id} · latent {manifest.provenance.latent} · {reader.n_contexts:,} contexts"
    if selected is not None:
        header += f" · {short_title(selected, 40)} ({selected.size:,})"
    draw.text((margin, header_h / 2), _drawable(label_font, header), font=label_font, fill=INK, anchor="lm")
    caption = _drawable(caption_font, CAPTION)
    draw.text((width - margin, height - footer_h / 2), caption, font=caption_font, fill=(110, 110, 110), anchor="rm")
    return image
