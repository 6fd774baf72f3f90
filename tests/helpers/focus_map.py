"""A seeded map where the focus token, not the surrounding words, decides the sense.

Three planted senses under the root, all drawn from the same surrounding words:
- `want`: the latent fires on " want" (and now and then " wanted");
- `need`: on " need" (and now and then " needed");
- `spread`: on twenty different tokens, twice each (they do not concentrate); its windows
  also hold words of their own ("garden", "soil"), so its keywords can name it.

The tree is the planted one (no clustering); the keywords step names it, for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import keywords
from vista_tui.mapdata import (
    ClusterNode,
    MapWriter,
    NodeLabels,
    Provenance,
    SparseCodes,
    StepRecord,
    context_id_for,
    contexts_table,
    node_id_for,
)

SURROUNDINGS = [" I", " really", " do", " not", " to", " go", " home", " tonight", " they", " said"]
SPREAD_WORDS = [" garden", " soil"]
SPREAD_FOCUS = [f" tok{i:02d}" for i in range(20)]
SIZES = {"want": 60, "need": 50, "spread": 40}
WIDTH = 9
FOCUS_AT = 4


@dataclass(frozen=True)
class FocusData:
    """The seeded contexts and the planted tree, before and after the keywords step."""

    tokens: list[list[str]]
    focus: np.ndarray
    activations: np.ndarray
    sense_of_row: list[str]
    nodes: list[ClusterNode]
    """The planted tree, unnamed: root, then want, need, spread."""


def _focus_token(sense: str, i: int) -> str:
    if sense == "spread":
        return SPREAD_FOCUS[i % len(SPREAD_FOCUS)]
    return f" {sense}ed" if i % 10 == 9 else f" {sense}"  # one in ten a variant


def focus_data(seed: int = 0) -> FocusData:
    """The seeded contexts (highest activation first) and the planted, unnamed tree."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[list[str], str]] = []
    for sense, size in SIZES.items():
        for i in range(size):
            vocabulary = SURROUNDINGS + (SPREAD_WORDS if sense == "spread" else [])
            window = [str(rng.choice(vocabulary)) for _ in range(WIDTH)]
            window[FOCUS_AT] = _focus_token(sense, i)
            rows.append((window, sense))
    order = rng.permutation(len(rows))
    tokens = [rows[i][0] for i in order]
    sense_of_row = [rows[i][1] for i in order]
    activations = np.sort(rng.gamma(4.0, 1.0, size=len(rows)))[::-1].astype(np.float32)
    focus = np.full(len(rows), FOCUS_AT, dtype=np.int32)

    ids = _context_ids(len(rows))
    everything = np.arange(len(rows), dtype=np.int32)
    root = _node(ids, everything, None, 0, "root", activations)
    nodes = [root]
    for sense in SIZES:
        members = np.array([i for i, s in enumerate(sense_of_row) if s == sense], dtype=np.int32)
        nodes.append(_node(ids, members, root.node_id, 1, "cluster", activations))
    return FocusData(tokens, focus, activations, sense_of_row, nodes)


def named_nodes(data: FocusData, cfg: keywords.KeywordsConfig | None = None) -> list[ClusterNode]:
    """The planted tree named by the real keywords step."""
    return keywords.run(
        cfg or keywords.KeywordsConfig(), data.nodes, data.tokens, data.focus, activations=data.activations
    )


def build_focus_map(map_dir: Path, seed: int = 0, latent: int = 1705) -> Path:
    """Write the seeded map, named by the keywords step, to `map_dir` and return it."""
    data = focus_data(seed)
    nodes = named_nodes(data)
    n = len(data.tokens)
    rng = np.random.default_rng(seed + 1)
    centres = {"want": (0.25, 0.7), "need": (0.75, 0.7), "spread": (0.5, 0.25)}
    xy = np.array([centres[s] for s in data.sense_of_row], dtype=np.float32) + rng.normal(0, 0.03, (n, 2))
    xy = np.clip(xy, 0, 1).astype(np.float32)
    leaf = {int(m): node.node_id for node in nodes[1:] for m in node.members}
    table = contexts_table(
        context_ids=_context_ids(n),
        doc_ids=[f"seeded/doc{i}" for i in range(n)],
        texts=["".join(window) for window in data.tokens],
        tokens=data.tokens,
        focus=data.focus,
        activations=data.activations,
        token_activations=[
            [float(data.activations[i]) if j == FOCUS_AT else 0.0 for j in range(WIDTH)] for i in range(n)
        ],
        xy=xy,
        leaf_nodes=[leaf[i] for i in range(n)],
    )
    placed = [_placed(node, xy) for node in nodes]
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(
        SparseCodes(
            indptr=np.arange(n + 1, dtype=np.int64),
            indices=np.full(n, latent % 64, dtype=np.int32),
            values=data.activations.astype(np.float32),
            n_latents=64,
        )
    )
    writer.write_tree(placed)
    writer.commit(
        map_id=map_dir.name,
        provenance=Provenance(
            model="seeded-model", hook="layer.1", sae="seeded-sae", latent=latent, corpus="seeded", n_contexts=n
        ),
        steps={
            "keywords": StepRecord(
                name="keywords", step_id="seeded", params={}, versions={}, upstream=None, finished="2026-01-01"
            )
        },
    )
    return map_dir


def _context_ids(n: int) -> list[str]:
    return [context_id_for("seeded", f"doc{i}", i) for i in range(n)]


def _node(
    ids: list[str], members: np.ndarray, parent: str | None, depth: int, kind: str, activations: np.ndarray
) -> ClusterNode:
    return ClusterNode(
        node_id=node_id_for([ids[i] for i in members], kind),  # type: ignore[arg-type]
        parent_id=parent,
        depth=depth,
        kind=kind,  # type: ignore[arg-type]
        members=np.sort(members).astype(np.int32),
        centroid=(0.5, 0.5),
        bbox=(0.0, 0.0, 1.0, 1.0),
        mean_activation=float(activations[members].mean()),
        max_activation=float(activations[members].max()),
        labels=NodeLabels(),
    )


def _placed(node: ClusterNode, xy: np.ndarray) -> ClusterNode:
    """The node with its centroid and box on the layout."""
    points = xy[node.members]
    node.centroid = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    node.bbox = (
        float(points[:, 0].min()),
        float(points[:, 1].min()),
        float(points[:, 0].max()),
        float(points[:, 1].max()),
    )
    return node
