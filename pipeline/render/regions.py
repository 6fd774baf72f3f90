"""Regions of a map on a latent canvas: which prompt applies where in a panorama.

Geometry of `regions_for_map`: the node's layout box is fitted into the canvas (keeping its
aspect, with margins; y points up as in the TUI's minimap). Each child cluster (or each of the
`max_regions` most active member contexts) is a disc at its layout position with radius
`r_max · sqrt(activation / max activation)`. **Overlaps:** a cell belongs to the most active
disc that covers it (ties: the earlier region), so region masks are disjoint and hard; a region
left with no cell is dropped. Masks given to `multidiffusion` by hand may be soft and
overlapping: the fusion then blends them in proportion to `weight × mask`.

Prompts are cleaned of control and bidi characters and cut to what the text encoder reads.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vista_tui.mapdata import MapReader

Per = Literal["context", "cluster"]
MAX_REGIONS = 32
"""Regions of a panorama at most (its most active children or contexts)."""
_PROMPT_CHARS = 300
"""Without a tokenizer, context prompts are cut to this many characters (CLIP reads ~77 tokens)."""


@dataclass(frozen=True)
class Region:
    """One prompt and where on the latent canvas it applies."""

    prompt: str
    mask: np.ndarray
    """(latent height, latent width) float in [0, 1]."""
    weight: float = 1.0
    """Multiplies the mask in the fusion (> 0)."""
    source: str = ""
    """What the region stands for: a node id or a context id (for sidecars and tests)."""

    def __post_init__(self) -> None:
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (latent height × width), got shape {self.mask.shape}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_prompt(text: str) -> str:
    """Text as a prompt: no control or bidi characters, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def cut_prompt(text: str, tokenizer: Any | None = None) -> str:
    """`text` cleaned and cut to what the tokenizer reads (its model_max_length minus BOS/EOS)."""
    text = clean_prompt(text)
    if tokenizer is None:
        return text[:_PROMPT_CHARS].strip()
    limit = int(getattr(tokenizer, "model_max_length", 77)) - 2
    ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return clean_prompt(tokenizer.decode(ids[:limit], skip_special_tokens=True))


def cluster_prompt(node: Any) -> str:
    """A cluster node's prompt: its visual prompt, else its keywords, else its LLM label (cleaned)."""
    labels = node.labels
    return clean_prompt(labels.visual_prompt or ", ".join(labels.keywords[:6]) or labels.llm_label)


def place_discs(
    centres: np.ndarray,
    activations: np.ndarray,
    box: tuple[float, float, float, float],
    canvas: tuple[int, int],
    margin: float = 0.08,
    coverage: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discs on the canvas for layout points: (row, col) centres, radii in cells, and the owner of every cell.

    `box` (x_min, y_min, x_max, y_max) is fitted into the canvas minus `margin` on each side,
    keeping its aspect (y up). Radii are `r_max · sqrt(a / max a)` (at least one cell), with
    `r_max` such that equal discs would cover `coverage` of the canvas. A cell is owned by the
    most active disc that covers it (ties: lower index), -1 where no disc is.
    """
    h, w = canvas
    n = len(centres)
    x_min, y_min, x_max, y_max = box
    inner_h, inner_w = h * (1 - 2 * margin), w * (1 - 2 * margin)
    span_x, span_y = max(x_max - x_min, 0.0), max(y_max - y_min, 0.0)
    scale = min(inner_w / span_x if span_x > 0 else math.inf, inner_h / span_y if span_y > 0 else math.inf)
    scale = 0.0 if math.isinf(scale) else scale  # all points at one spot: they sit at the centre
    # Centre the scaled box on the canvas; positions are cell centres, hence the -0.5.
    cols = (w - span_x * scale) / 2 + (centres[:, 0] - x_min) * scale - 0.5
    rows = (h - span_y * scale) / 2 + (y_max - centres[:, 1]) * scale - 0.5
    a = np.clip(np.nan_to_num(np.asarray(activations, dtype=np.float64), nan=0.0), 0.0, None)
    top = float(a.max()) if n else 0.0
    r_max = min(math.sqrt(coverage * h * w / (max(n, 1) * math.pi)), 0.5 * min(h, w))
    radii = np.maximum(r_max * np.sqrt(a / top) if top > 0 else np.full(n, r_max), 1.0)
    owner = np.full((h, w), -1, dtype=np.int64)
    grid_r, grid_c = np.mgrid[0:h, 0:w]
    for i in np.argsort(-a, kind="stable"):
        inside = (grid_r - rows[i]) ** 2 + (grid_c - cols[i]) ** 2 <= radii[i] ** 2
        owner[inside & (owner < 0)] = i
    return np.column_stack([rows, cols]), radii, owner


def regions_for_map(
    reader: MapReader,
    node_id: str | None,
    canvas: tuple[int, int],
    per: Per = "cluster",
    max_regions: int = MAX_REGIONS,
    tokenizer: Any | None = None,
    margin: float = 0.08,
    coverage: float = 0.5,
) -> list[Region]:
    """The regions of a map node on a latent canvas (h, w): one per child cluster, or per most active context.

    `node_id` None is the root. per="cluster": the node's children (noise children and children
    without any prompt are left to the background) at their centroids, sized by their mean
    activation, prompted by their visual prompt (else keywords). per="context": the node's
    `max_regions` most active members at their layout positions, sized by their activation,
    prompted by their text cut to the tokenizer's limit. A cluster with no children falls back
    to per="context". See the module doc for the geometry and how overlaps are resolved.
    """
    if per not in ("context", "cluster"):
        raise ValueError(f"per must be 'context' or 'cluster', got {per!r}")
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"canvas must be (height, width) in latent cells >= 1, got {canvas!r}")
    if max_regions < 1:
        raise ValueError(f"max_regions must be >= 1, got {max_regions!r}")
    node = reader.root if node_id is None else reader.node(node_id)
    sources: list[str] = []
    prompts: list[str] = []
    centres: list[tuple[float, float]] = []
    activations: list[float] = []
    children = [c for c in reader.children(node.node_id) if c.kind != "noise"] if per == "cluster" else []
    if children:
        for child in children:
            prompt = cluster_prompt(child)
            if prompt and all(math.isfinite(v) for v in child.centroid):
                sources.append(child.node_id)
                prompts.append(cut_prompt(prompt, tokenizer))
                centres.append(child.centroid)
                activations.append(child.mean_activation)
        order = np.argsort(-np.asarray(activations), kind="stable")[:max_regions]
    else:
        members = np.asarray(node.members, dtype=np.int64)
        member_activation = reader.activations[members]
        finite = np.isfinite(reader.layout[members]).all(axis=1)
        members, member_activation = members[finite], member_activation[finite]
        top = members[np.argsort(-member_activation, kind="stable")[:max_regions]]
        for context in reader.contexts(top):
            sources.append(context.context_id)
            prompts.append(cut_prompt(context.text, tokenizer))
        centres = [tuple(p) for p in reader.layout[top].tolist()]
        activations = reader.activations[top].tolist()
        order = np.arange(len(top))
    if not len(order):
        return []
    centres_arr = np.asarray(centres, dtype=np.float64)[order]
    activations_arr = np.asarray(activations, dtype=np.float64)[order]
    box = node.bbox if all(math.isfinite(v) for v in node.bbox) else _bbox(centres_arr)
    _, _, owner = place_discs(centres_arr, activations_arr, box, canvas, margin=margin, coverage=coverage)
    regions = []
    for k, i in enumerate(order):
        mask = (owner == k).astype(np.float32)
        if mask.any():
            regions.append(Region(prompt=prompts[i], mask=mask, source=sources[i]))
    return regions


def _bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def background_mask(regions: Sequence[Region], canvas: tuple[int, int]) -> np.ndarray:
    """What the background prompt owns: `1 - clip(Σ region masks, 0, 1)`, (h, w) float32."""
    total = np.zeros(canvas, dtype=np.float32)
    for region in regions:
        if region.mask.shape != tuple(canvas):
            raise ValueError(f"region mask has shape {region.mask.shape}, the canvas is {tuple(canvas)}")
        total += np.clip(region.mask.astype(np.float32), 0.0, 1.0)
    return 1.0 - np.clip(total, 0.0, 1.0)
