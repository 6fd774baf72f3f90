"""A tiny, fully specified map: two clusters under a root."""

from __future__ import annotations

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


def small_map(map_dir: Path, n: int = 12, sae: str = "s", latent: int = 7) -> None:
    """Writes a tiny, fully specified map (two clusters under a root)."""
    rng = np.random.default_rng(0)
    ids = [context_id_for("corpus", f"doc{i}", i) for i in range(n)]
    tokens = [[" the", " mus", "cle", f" {i}"] for i in range(n)]
    activations = np.linspace(1.0, 5.0, n).astype(np.float32)
    table = contexts_table(
        context_ids=ids,
        doc_ids=[f"doc{i}" for i in range(n)],
        texts=["".join(t) for t in tokens],
        tokens=tokens,
        focus=np.full(n, 1),
        activations=activations,
        token_activations=[[0.0, float(a), 0.5, 0.0] for a in activations],
        xy=rng.random((n, 2)).astype(np.float32),
    )
    half = np.arange(n // 2, dtype=np.int32)
    rest = np.arange(n // 2, n, dtype=np.int32)
    everything = np.arange(n, dtype=np.int32)

    def node(members: np.ndarray, parent: str | None, depth: int, kind: str) -> ClusterNode:
        return ClusterNode(
            node_id=node_id_for([ids[i] for i in members], kind),  # type: ignore[arg-type]
            parent_id=parent,
            depth=depth,
            kind=kind,  # type: ignore[arg-type]
            members=members,
            centroid=(0.5, 0.5),
            bbox=(0.0, 0.0, 1.0, 1.0),
            mean_activation=float(activations[members].mean()),
            max_activation=float(activations[members].max()),
            labels=NodeLabels(keywords=["muscle", "biceps"], visual_prompt="a flexed arm"),
        )

    root = node(everything, None, 0, "root")
    nodes = [root, node(half, root.node_id, 1, "cluster"), node(rest, root.node_id, 1, "noise")]
    codes = SparseCodes(
        indptr=np.arange(0, 2 * n + 1, 2, dtype=np.int64),
        indices=np.tile(np.array([3, 7], dtype=np.int32), n),
        values=np.repeat(activations, 2),
        n_latents=16,
    )
    curve = FidelityCurve(n=n, k=[1, 2, 3], k_percent=[8.3, 16.7, 25.0], m=[0.5, 0.6, 0.6], gain=[0.41, 0.42, 0.33])
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(codes)
    writer.write_tree(nodes)
    writer.write_fidelity(curve)
    writer.commit(
        map_id=map_dir.name,
        provenance=Provenance(model="m", hook="3", sae=sae, latent=latent, corpus="c", n_contexts=n),
        steps={},
    )
