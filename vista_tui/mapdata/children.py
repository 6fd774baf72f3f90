"""A map's children in a second SAE: which latents of SAE B fire where the map's latent (of SAE A) fires.

`vista build --also-sae B` encodes the harvested tokens with B too. For each context it keeps the
latents of B that fire on the focus token among the map's latent's decoder neighbours in B (its
likely children when B is wider: feature splitting), and for each node which of them dominate it.
Written by the build as `children.json` beside `stats.json` (atomically, before the manifest; not
listed in the manifest's files, so maps built before it open without it):

| key | what |
|---|---|
| `schema_version` | 1 |
| `sae`, `d_sae` | SAE B as the build named it, and its width |
| `latent` | the map's latent (of SAE A) |
| `neighbours` | `[{"latent", "cosine"}]`: A's latent's top decoder-cosine neighbours in B, best first |
| `contexts` | one list per context row (the order of `contexts.parquet`): `[[latent, activation], …]`, the neighbours that fire on the focus token, strongest first |
| `nodes` | per node id: `n` (members), `none_share` (members on which no neighbour fires), `children`: `[{"latent", "share", "dominant_share", "mean_activation"}]` |

A context's *dominant* child is the neighbour with the highest activation on its focus token
(ties to the smaller latent). Per node, `share` is the fraction of members on which a child
fires (a context can count for several children), `dominant_share` the fraction on which it is
the dominant one, and `mean_activation` its mean over the members on which it fires; so the
`dominant_share`s and `none_share` of a node sum to 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vista_tui.mapdata.atomic import atomic_write_json
from vista_tui.mapdata.errors import MapCorruptError, SchemaVersionError

CHILDREN_FILE = "children.json"
CHILDREN_SCHEMA_VERSION = 1
CHILDREN_HINT = "rebuild the map with `vista build … --also-sae SAE_B`"


@dataclass(frozen=True)
class ChildShare:
    """One latent of B within a node."""

    latent: int
    share: float
    """Fraction of the node's members on which it fires."""
    dominant_share: float
    """Fraction of the node's members on which it is the strongest neighbour that fires."""
    mean_activation: float
    """Its mean activation over the members on which it fires (NaN when it fires on none)."""


@dataclass(frozen=True)
class NodeChildren:
    """Which latents of B a node's members fire, strongest share first."""

    n: int
    none_share: float
    """Fraction of members on which no neighbour fires."""
    children: tuple[ChildShare, ...]

    @property
    def dominant(self) -> ChildShare | None:
        """The child dominant on most members (ties to the smaller latent), or None when none fires."""
        best = max(self.children, key=lambda c: (c.dominant_share, -c.latent), default=None)
        return best if best is not None and best.dominant_share > 0 else None


Firing = tuple[int, float]
"""(latent of B, its activation on the focus token)."""


def dominant_child(firings: Sequence[Firing]) -> int:
    """The strongest of a context's firing children (ties to the smaller latent); -1 when none fires."""
    best = min(firings, key=lambda f: (-f[1], f[0]), default=None)
    return -1 if best is None else int(best[0])


def node_children(contexts: Sequence[Sequence[Firing]], members: Iterable[int]) -> NodeChildren:
    """A node's child shares from the per-context firings (`MapChildren.contexts`) of its member rows."""
    members = list(members)
    n = len(members)
    fires: dict[int, list[float]] = {}
    dominant: dict[int, int] = {}
    none = 0
    for row in members:
        firings = contexts[row]
        if not firings:
            none += 1
            continue
        for latent, activation in firings:
            fires.setdefault(int(latent), []).append(float(activation))
        top = dominant_child(firings)
        dominant[top] = dominant.get(top, 0) + 1
    children = tuple(
        sorted(
            (
                ChildShare(
                    latent=latent,
                    share=len(values) / n,
                    dominant_share=dominant.get(latent, 0) / n,
                    mean_activation=math.fsum(values) / len(values),
                )
                for latent, values in fires.items()
            ),
            key=lambda c: (-c.dominant_share, -c.share, c.latent),
        )
    )
    return NodeChildren(n=n, none_share=(none / n) if n else 0.0, children=children)


@dataclass(frozen=True)
class MapChildren:
    """`children.json` as read."""

    sae: str
    d_sae: int
    latent: int
    neighbours: tuple[tuple[int, float], ...]
    """(latent of B, decoder cosine with the map's latent), best first."""
    contexts: tuple[tuple[Firing, ...], ...]
    """Per context row, the neighbours firing on its focus token, strongest first."""
    nodes: Mapping[str, NodeChildren]

    def dominant(self, row: int) -> int:
        """Context row's dominant child (-1 when no neighbour fires on it)."""
        return dominant_child(self.contexts[row])

    def cosine(self, latent_b: int) -> float:
        """The decoder cosine of a neighbour (NaN when `latent_b` is not one)."""
        return next((c for latent, c in self.neighbours if latent == latent_b), float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": CHILDREN_SCHEMA_VERSION,
            "sae": self.sae,
            "d_sae": self.d_sae,
            "latent": self.latent,
            "neighbours": [{"latent": latent, "cosine": cosine} for latent, cosine in self.neighbours],
            "contexts": [[[latent, activation] for latent, activation in firings] for firings in self.contexts],
            "nodes": {
                node_id: {
                    "n": node.n,
                    "none_share": node.none_share,
                    "children": [
                        {
                            "latent": c.latent,
                            "share": c.share,
                            "dominant_share": c.dominant_share,
                            "mean_activation": c.mean_activation,
                        }
                        for c in node.children
                    ],
                }
                for node_id, node in self.nodes.items()
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MapChildren:
        return cls(
            sae=str(raw["sae"]),
            d_sae=int(raw["d_sae"]),
            latent=int(raw["latent"]),
            neighbours=tuple((int(n["latent"]), float(n["cosine"])) for n in raw["neighbours"]),
            contexts=tuple(tuple((int(latent), float(act)) for latent, act in firings) for firings in raw["contexts"]),
            nodes={
                str(node_id): NodeChildren(
                    n=int(node["n"]),
                    none_share=float(node["none_share"]),
                    children=tuple(
                        ChildShare(
                            latent=int(c["latent"]),
                            share=float(c["share"]),
                            dominant_share=float(c["dominant_share"]),
                            mean_activation=float(c["mean_activation"]),
                        )
                        for c in node["children"]
                    ),
                )
                for node_id, node in raw["nodes"].items()
            },
        )


def map_children(
    *,
    sae: str,
    d_sae: int,
    latent: int,
    neighbours: Iterable[tuple[int, float]],
    contexts: Iterable[Iterable[Firing]],
    node_members: Mapping[str, Iterable[int]],
) -> MapChildren:
    """Assemble `children.json` from the per-context firings and the tree's members (by node id)."""
    ordered = tuple(
        tuple(sorted(((int(j), float(a)) for j, a in firings), key=lambda f: (-f[1], f[0]))) for firings in contexts
    )
    return MapChildren(
        sae=sae,
        d_sae=int(d_sae),
        latent=int(latent),
        neighbours=tuple((int(j), float(c)) for j, c in neighbours),
        contexts=ordered,
        nodes={node_id: node_children(ordered, members) for node_id, members in node_members.items()},
    )


def write_children(map_dir: Path | str, children: MapChildren) -> Path:
    """children.json, atomically (the build calls it before it writes the manifest)."""
    path = Path(map_dir) / CHILDREN_FILE
    atomic_write_json(path, children.to_dict())
    return path


def read_children(map_dir: Path | str) -> MapChildren | None:
    """A map's children, or None when it was built without `--also-sae`; a one-line MapCorruptError or
    SchemaVersionError for a file it cannot read."""
    map_dir = Path(map_dir)
    path = map_dir / CHILDREN_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(
            f"{CHILDREN_FILE} of map {map_dir.name} is not valid JSON ({why}): {CHILDREN_HINT}"
        ) from None
    if not isinstance(raw, dict) or raw.get("schema_version") != CHILDREN_SCHEMA_VERSION:
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        raise SchemaVersionError(
            f"{CHILDREN_FILE} of map {map_dir.name} has format version {version!r}, this vista reads "
            f"{CHILDREN_SCHEMA_VERSION}: upgrade vista-tui or {CHILDREN_HINT}"
        )
    try:
        return MapChildren.from_dict(raw)
    except (KeyError, TypeError, ValueError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(
            f"{CHILDREN_FILE} of map {map_dir.name} has a bad field ({why}): {CHILDREN_HINT}"
        ) from None
