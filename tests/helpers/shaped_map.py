"""A map of planted shapes for the sketch: clusters whose centroids lie off their points, one at the edge.

- "ring": contexts on a circle; its centroid is the empty centre.
- "lobes": two far-apart blobs (its two children, of different sizes); its centroid is between them.
- "corner": a tight blob in the layout's bottom-left corner, where a title centred on it would
  stick out of the picture.
- a sparse background of noise, away from all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vista_tui.mapdata import (
    ClusterNode,
    FidelityCurve,
    MapWriter,
    NodeLabels,
    Provenance,
    SparseCodes,
    context_id_for,
    contexts_table,
    node_id_for,
)
from vista_tui.mapdata.schema import NodeKind

SHAPES = ("ring", "lobes", "corner")
"""The top-level clusters, largest first (the order of their hues in a sketch)."""


@dataclass(frozen=True)
class ShapedMap:
    """Where the map is and which rows each planted shape holds."""

    path: Path
    rows: dict[str, np.ndarray]
    """Rows of each top-level shape, of the lobes' children ("lobe-a", "lobe-b") and of the noise."""


def _shapes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The layout of each shape's contexts (unit square)."""
    angles = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    ring = np.column_stack([0.3 + 0.18 * np.cos(angles), 0.68 + 0.18 * np.sin(angles)])
    lobe_a = rng.normal((0.72, 0.85), 0.025, size=(36, 2))
    lobe_b = rng.normal((0.85, 0.35), 0.025, size=(28, 2))
    corner = np.abs(rng.normal(0.0, 0.012, size=(40, 2)))
    noise = np.column_stack([rng.uniform(0.45, 0.6, 12), rng.uniform(0.05, 0.3, 12)])
    return {"ring": ring, "lobe-a": lobe_a, "lobe-b": lobe_b, "corner": corner, "noise": noise}


def shaped_map(map_dir: Path, seed: int = 0) -> ShapedMap:
    """Write the map of planted shapes to `map_dir` (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    parts = _shapes(rng)
    xy = np.concatenate(list(parts.values())).astype(np.float32)
    n = len(xy)
    bounds = np.cumsum([0, *(len(points) for points in parts.values())])
    rows = {name: np.arange(bounds[i], bounds[i + 1], dtype=np.int32) for i, name in enumerate(parts)}
    rows["lobes"] = np.concatenate([rows["lobe-a"], rows["lobe-b"]])
    ids = [context_id_for("shapes", f"doc{i}", i) for i in range(n)]
    activations = np.linspace(3.0, 1.0, n).astype(np.float32)
    tokens = [[" the", " shape", f" {i}"] for i in range(n)]
    table = contexts_table(
        context_ids=ids,
        doc_ids=[f"doc{i}" for i in range(n)],
        texts=["".join(t) for t in tokens],
        tokens=tokens,
        focus=np.full(n, 1),
        activations=activations,
        token_activations=[[0.0, float(a), 0.0] for a in activations],
        xy=xy,
    )

    def node(name: str, members: np.ndarray, parent: str | None, depth: int, kind: NodeKind) -> ClusterNode:
        """A node over `members`, its centroid and box from their layout."""
        points = xy[members]
        return ClusterNode(
            node_id=node_id_for([ids[i] for i in members], kind),
            parent_id=parent,
            depth=depth,
            kind=kind,
            members=np.sort(members),
            centroid=(float(points[:, 0].mean()), float(points[:, 1].mean())),
            bbox=(
                float(points[:, 0].min()),
                float(points[:, 1].min()),
                float(points[:, 0].max()),
                float(points[:, 1].max()),
            ),
            mean_activation=float(activations[members].mean()),
            max_activation=float(activations[members].max()),
            labels=NodeLabels(keywords=[name, "shape"], visual_prompt=f"a {name}"),
        )

    root = node("root", np.arange(n, dtype=np.int32), None, 0, "root")
    lobes = node("lobes", rows["lobes"], root.node_id, 1, "cluster")
    nodes = [
        root,
        node("ring", rows["ring"], root.node_id, 1, "cluster"),
        lobes,
        node("corner", rows["corner"], root.node_id, 1, "cluster"),
        node("noise", rows["noise"], root.node_id, 1, "noise"),
        node("lobe-a", rows["lobe-a"], lobes.node_id, 2, "cluster"),
        node("lobe-b", rows["lobe-b"], lobes.node_id, 2, "cluster"),
    ]
    codes = SparseCodes(
        indptr=np.arange(n + 1, dtype=np.int64),
        indices=np.zeros(n, dtype=np.int32),
        values=activations,
        n_latents=4,
    )
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(codes)
    writer.write_tree(nodes)
    writer.write_fidelity(FidelityCurve(n=n, k=[1, 2], k_percent=[0.5, 1.0], m=[0.5, 0.5], gain=[0.4, 0.4]))
    writer.commit(
        map_id=map_dir.name,
        provenance=Provenance(model="m", hook="1", sae="s", latent=3, corpus="shapes", n_contexts=n),
        steps={},
    )
    return ShapedMap(map_dir, rows)
