"""One latent across SAEs, for the explorer: its matches in other SAEs, the node of another map that holds
the same contexts, and the colours of its children in a second SAE.

- **Matches.** Every match table in the store with the map's SAE on either side (`vista match`):
  from side A a latent's row gives its decoder and encoder neighbours in B and its one-to-one
  partner; from side B the table's reverse lookup gives the latents of A that have it as a
  neighbour or partner. Each match says whether a map of that latent exists, else the
  `vista build` command that makes one.
- **Matched nodes.** Two maps of one corpus share contexts: a context's id hashes (corpus
  source, document id, token position), so a context harvested for both latents has one id in
  both maps. A node matches the other map's node whose members share the most ids (Jaccard
  index), ties to the shallower, then the earlier node in tree order; below `MIN_JACCARD`
  it has no matching node. Counting uses the (row, node) pairs of both trees, so the work is
  about contexts × depth × depth, never nodes × nodes × contexts.
- **Children.** With `children.json` (a map built with `--also-sae`), each context's dominant
  child gets a rank, stable over the whole map (the root's children, most dominant first), and
  the legend says which latent of the second SAE each colour is.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vista_tui.core.model import MapModel
from vista_tui.mapdata import MapError, Store
from vista_tui.mapdata.children import MapChildren
from vista_tui.mapdata.errors import MapCorruptError
from vista_tui.mapdata.matches import read_match_table, sae_key

MIN_JACCARD = 0.1
"""A node has no matching node in the other map when the best Jaccard index of their members is below this."""

NO_MATCH_TABLE = "no match table for SAE {sae}: run `vista match SAE_A SAE_B`"
NO_CHILDREN = "this map was built without --also-sae: rebuild it with `vista build … --also-sae SAE_B`"
DEMO_MAP_PREFIX = "demo-minilm_"
"""How the offline demo's map ids begin (`vista demo` names its maps with it)."""
NO_DEMO_CHILDREN = (
    "this demo map has no second SAE: run `vista demo --wide` (trains a 4x wider SAE once, builds the demo maps"
    " --also-sae it and the map of a child latent)"
)


def no_children_message(map_id: str) -> str:
    """Why a map has no child overlay, and what to run: the demo's own command for a demo map."""
    return NO_DEMO_CHILDREN if map_id.startswith(DEMO_MAP_PREFIX) else NO_CHILDREN


def sae_short_name(sae: str) -> str:
    """A short name for an SAE in a narrow panel: its last two path parts (`width_16k/canonical`)."""
    parts = [part for part in sae.replace("\\", "/").split("/") if part]
    return "/".join(parts[-2:]) if parts else sae


def build_command(sae: str, latent: int) -> str:
    """The `vista build` command that makes a map of `latent` of `sae` (a local SAE by --sae-path)."""
    local = Path(sae).expanduser().exists() or sae.startswith(("/", ".", "~"))
    flag = "--sae-path" if local else "--sae"
    return f"vista build {flag} {shlex.quote(sae)} --latents {latent}"


# -- matches -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentMatch:
    """One latent of another SAE that matches the map's latent."""

    sae: str
    """The other SAE, as its match table names it."""
    d_sae: int
    latent: int
    decoder_cosine: float
    """Cosine of the two decoder directions (NaN when the table does not list the pair by decoder)."""
    encoder_cosine: float
    """Cosine of the two encoder directions (NaN when the table does not list the pair by encoder)."""
    one_to_one: bool
    """Its partner in the table's one-to-one (Hungarian) matching."""
    match_id: str
    map_path: Path | None
    """The newest map of that latent in the store, or None."""

    @property
    def build_command(self) -> str:
        """How to make its map."""
        return build_command(self.sae, self.latent)


@dataclass(frozen=True)
class MatchesReading:
    """The map's latent's matches, from every match table that has its SAE on either side."""

    sae: str
    latent: int
    matches: tuple[LatentMatch, ...]
    tables: tuple[str, ...]
    """The match ids read."""
    errors: tuple[str, ...] = ()
    """One line per table that could not be read."""

    @property
    def message(self) -> str | None:
        """What to tell a person when there is nothing to list, else None."""
        if self.matches:
            return None
        if not self.tables and not self.errors:
            return NO_MATCH_TABLE.format(sae=self.sae)
        if not self.tables:
            return self.errors[0]
        return f"latent {self.latent} has no neighbour in the match tables of {self.sae} ({', '.join(self.tables)})"


def _maps_by_latent(store: Store) -> dict[tuple[str, int], Path]:
    """(SAE key, latent) → the newest readable map of it: `Store.map_of` for many latents, the maps listed once."""
    found: dict[tuple[str, int], Path] = {}
    for entry in store.list_maps():  # newest first: the first map of a latent is kept
        if entry.manifest is not None:
            provenance = entry.manifest.provenance
            found.setdefault((sae_key(provenance.sae), int(provenance.latent)), entry.path)
    return found


def _sort_key(match: LatentMatch) -> tuple[bool, float, int]:
    """One-to-one partner first, then decoder cosine descending (NaN last), then latent."""
    cosine = match.decoder_cosine
    return (not match.one_to_one, -cosine if math.isfinite(cosine) else math.inf, match.latent)


def read_latent_matches(store: Store, sae: str, latent: int) -> MatchesReading:
    """The matches of `latent` of `sae` in every match table of the store with `sae` on either side (slow: a worker)."""
    key = sae_key(sae)
    maps = _maps_by_latent(store)
    matches: list[LatentMatch] = []
    tables: list[str] = []
    errors: list[str] = []
    for entry in store.matches_for(sae):
        try:
            table = read_match_table(entry.path)
        except MapError as error:
            errors.append(str(error))
            continue
        tables.append(entry.match_id)
        manifest = table.manifest
        found: list[LatentMatch] = []
        if manifest.sae_a.key == key:
            other = manifest.sae_b
            row = table.row(latent)
            if row is not None:
                decoder = dict(zip(row.decoder_neighbours, row.decoder_cosines, strict=True))
                encoder = dict(zip(row.encoder_neighbours, row.encoder_cosines, strict=True))
                partners = dict.fromkeys([*row.decoder_neighbours, *row.encoder_neighbours])
                if row.matched >= 0:
                    partners.setdefault(row.matched)
                    decoder.setdefault(row.matched, row.matched_cosine)
                for j in partners:
                    found.append(
                        LatentMatch(
                            sae=other.sae,
                            d_sae=other.d_sae,
                            latent=int(j),
                            decoder_cosine=float(decoder.get(j, math.nan)),
                            encoder_cosine=float(encoder.get(j, math.nan)),
                            one_to_one=int(j) == row.matched,
                            match_id=entry.match_id,
                            map_path=maps.get((other.key, int(j))),
                        )
                    )
        else:
            other = manifest.sae_a
            for i, cosine in table.reverse(latent):
                row_a = table.row(i)
                encoder = dict(zip(row_a.encoder_neighbours, row_a.encoder_cosines, strict=True)) if row_a else {}
                found.append(
                    LatentMatch(
                        sae=other.sae,
                        d_sae=other.d_sae,
                        latent=int(i),
                        decoder_cosine=float(cosine),
                        encoder_cosine=float(encoder.get(latent, math.nan)),
                        one_to_one=row_a is not None and row_a.matched == latent,
                        match_id=entry.match_id,
                        map_path=maps.get((other.key, int(i))),
                    )
                )
        matches.extend(sorted(found, key=_sort_key))
    return MatchesReading(sae, latent, tuple(matches), tuple(tables), tuple(errors))


def split_partner(reading: MatchesReading) -> LatentMatch | None:
    """The match a map without children opens beside it (`|`): its one-to-one partner when that has a
    map, else the mapped match of highest decoder cosine; None when no match has a map."""
    mapped = [match for match in reading.matches if match.map_path is not None]
    return min(mapped, key=_sort_key) if mapped else None


# -- matched nodes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeMatch:
    """The other map's node that holds most of the same contexts."""

    node_id: str | None
    """None when no node reaches MIN_JACCARD."""
    jaccard: float
    """The best Jaccard index of the members' context ids (0 when they share none)."""
    shared: int
    """Contexts the two nodes share."""


@dataclass(frozen=True)
class TreeSide:
    """What matching needs of one map: its context ids by row, and its nodes in tie-break order."""

    context_ids: Sequence[str]
    nodes: Sequence[str]
    """Node ids, shallower first, then in tree order (ties go to the first)."""
    members: Mapping[str, np.ndarray]
    """Context rows of each node."""


def tree_side(model: MapModel) -> TreeSide:
    """A map's context ids and nodes for `match_nodes` (reads the context ids: a worker)."""
    order = {node_id: i for i, node_id in enumerate(model.walk())}
    nodes = sorted(order, key=lambda node_id: (model.nodes[node_id].depth, order[node_id]))
    return TreeSide(
        context_ids=model.reader.context_ids,
        nodes=nodes,
        members={node_id: model.nodes[node_id].members for node_id in nodes},
    )


def _pairs(side: TreeSide) -> tuple[np.ndarray, np.ndarray]:
    """(node index, context row) for every membership of a tree."""
    sizes = [len(side.members[node_id]) for node_id in side.nodes]
    node_of = np.repeat(np.arange(len(side.nodes), dtype=np.int64), sizes)
    rows = (
        np.concatenate([np.asarray(side.members[n], dtype=np.int64) for n in side.nodes])
        if side.nodes
        else np.zeros(0, np.int64)
    )
    return node_of, rows


def _best(
    first: np.ndarray, second: np.ndarray, shared: np.ndarray, union: np.ndarray, n_first: int
) -> list[tuple[int, float, int]]:
    """Per node of one side, (best node of the other side or -1, Jaccard, shared), ties to the smaller index."""
    jaccard = shared / union
    order = np.lexsort((second, -jaccard, first))  # by node, then Jaccard descending, then tie-break order
    best: list[tuple[int, float, int]] = [(-1, 0.0, 0)] * n_first
    seen = np.ones(len(order), dtype=bool)
    if len(order):
        seen[1:] = first[order][1:] != first[order][:-1]
    for k in order[seen]:
        best[int(first[k])] = (int(second[k]), float(jaccard[k]), int(shared[k]))
    return best


def match_nodes(a: TreeSide, b: TreeSide) -> tuple[dict[str, NodeMatch], dict[str, NodeMatch]]:
    """Each node of A's matching node in B, and each node of B's in A (by shared context ids)."""
    index_b = {context_id: row for row, context_id in enumerate(b.context_ids)}
    a_to_b = np.array([index_b.get(context_id, -1) for context_id in a.context_ids], dtype=np.int64)
    node_a, rows_a = _pairs(a)
    node_b, rows_b = _pairs(b)
    rows_in_b = a_to_b[rows_a] if len(rows_a) else np.zeros(0, np.int64)
    keep = rows_in_b >= 0
    node_a, rows_in_b = node_a[keep], rows_in_b[keep]
    # Join the (A node, B row) pairs with B's (B node, B row) pairs on the row.
    by_row = np.argsort(rows_b, kind="stable")
    counts = np.bincount(rows_b, minlength=len(b.context_ids)) if len(rows_b) else np.zeros(len(b.context_ids), int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    repeat = counts[rows_in_b]
    total = int(repeat.sum())
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(repeat) - repeat, repeat)
    joined_a = np.repeat(node_a, repeat)
    joined_b = node_b[by_row[np.repeat(starts[rows_in_b], repeat) + offsets]]
    n_b = max(len(b.nodes), 1)
    pair_keys, shared = np.unique(joined_a * n_b + joined_b, return_counts=True)
    pair_a, pair_b = pair_keys // n_b, pair_keys % n_b
    size_a = np.array([len(a.members[n]) for n in a.nodes], dtype=np.float64)
    size_b = np.array([len(b.members[n]) for n in b.nodes], dtype=np.float64)
    union = size_a[pair_a] + size_b[pair_b] - shared if len(pair_keys) else np.zeros(0)

    def result(best: list[tuple[int, float, int]], own: Sequence[str], other: Sequence[str]) -> dict[str, NodeMatch]:
        return {
            node_id: NodeMatch(other[k] if k >= 0 and j >= MIN_JACCARD else None, j, s)
            for node_id, (k, j, s) in zip(own, best, strict=True)
        }

    forward = _best(pair_a, pair_b, shared.astype(np.float64), union, len(a.nodes))
    backward = _best(pair_b, pair_a, shared.astype(np.float64), union, len(b.nodes))
    return result(forward, a.nodes, b.nodes), result(backward, b.nodes, a.nodes)


# -- children ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildLine:
    """One line of the legend: a child of the selected node."""

    rank: int
    """Its colour's rank over the map (-1: the members on which no child fires)."""
    text: str


@dataclass
class ChildOverlay:
    """The children of a map's latent in a second SAE, as the minimap and the contexts colour them."""

    children: MapChildren
    ranks: np.ndarray
    """Per context row, the rank of its dominant child (-1: no child fires on it)."""
    order: tuple[int, ...]
    """Child latents by rank."""
    dominated: dict[int, list[str]] = field(default_factory=dict)
    """Child latent → the nodes (other than the root, in tree order) where it is the dominant child."""

    @property
    def short_name(self) -> str:
        return sae_short_name(self.children.sae)

    def title(self) -> str:
        """The legend's heading: which SAE the colours are latents of."""
        return f"children · {self.children.d_sae:,}-wide {self.short_name}"

    def rank_of(self, latent: int) -> int:
        return self.order.index(latent) if latent in self.order else -1

    def lines(self, node_id: str, title_of: Callable[[str], str], max_children: int = 6) -> list[ChildLine]:
        """The legend for a node: each child dominant on some of its members with its share, and the nodes
        where it dominates; then the share on which none fires."""
        node = self.children.nodes.get(node_id)
        if node is None:
            return [ChildLine(-1, "no children recorded for this node")]
        lines: list[ChildLine] = []
        shown = [c for c in node.children if c.dominant_share > 0][:max_children]
        for child in shown:
            cosine = self.children.cosine(child.latent)
            cos_text = f"cos {cosine:.2f}" if math.isfinite(cosine) else "cos ?"
            # The heading names the SAE (`title`): each line names only its latent, so that at 80
            # columns a child takes one or two lines, not three.
            text = f"latent {child.latent} · {cos_text} · {child.dominant_share:.0%} of this node"
            where = self.dominated.get(child.latent, [])
            if where:
                names = "; ".join(title_of(n) for n in where[:3])
                more = f" +{len(where) - 3}" if len(where) > 3 else ""
                text += f" · dominant in {len(where)} node{'s' if len(where) != 1 else ''}: {names}{more}"
            lines.append(ChildLine(self.rank_of(child.latent), text))
        hidden = len([c for c in node.children if c.dominant_share > 0]) - len(shown)
        if hidden > 0:
            lines.append(ChildLine(-1, f"+{hidden} more children"))
        if node.none_share > 0:
            lines.append(ChildLine(-1, f"no child fires: {node.none_share:.0%} of this node"))
        return lines


def child_overlay(children: MapChildren, n_contexts: int, root_id: str, tree_order: Sequence[str]) -> ChildOverlay:
    """Ranks and dominated nodes for a map's children; a MapCorruptError when the file does not fit the map."""
    if len(children.contexts) != n_contexts:
        raise MapCorruptError(
            f"children.json has {len(children.contexts)} contexts but the map has {n_contexts}: "
            "rebuild the map with `vista build … --also-sae SAE_B`"
        )
    order: list[int] = []
    root = children.nodes.get(root_id)
    if root is not None:
        order.extend(c.latent for c in root.children if c.dominant_share > 0)
    dominant_rows = [children.dominant(row) for row in range(n_contexts)]
    for latent, _ in children.neighbours:
        if latent not in order and latent in dominant_rows:
            order.append(latent)
    for latent in sorted(set(dominant_rows) - set(order) - {-1}):
        order.append(latent)
    rank = {latent: r for r, latent in enumerate(order)}
    ranks = np.array([rank.get(latent, -1) for latent in dominant_rows], dtype=np.int16)
    dominated: dict[int, list[str]] = {}
    for node_id in tree_order:
        node = children.nodes.get(node_id)
        if node_id == root_id or node is None or node.dominant is None:
            continue
        dominated.setdefault(node.dominant.latent, []).append(node_id)
    return ChildOverlay(children, ranks, tuple(order), dominated)
