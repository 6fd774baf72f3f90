"""The TUI's view of one map: the tree indexed for walking, contexts read lazily by row group.

Opening reads the manifest, the tree and two small columns (activation, x, y); context
text and tokens are read a parquet row group at a time, when a screen first needs them.
A map with an opening file gives all of that, and the root's first page of contexts, without
pyarrow (`vista_tui.mapdata.opening`): pyarrow loads on the first parquet read.
No textual import here, so the model is testable and benchmarkable on its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vista_tui.core.node_names import NodeNames
from vista_tui.core.score_figures import ScoresReading, read_score_reading, scores_signature
from vista_tui.core.titles import node_title
from vista_tui.mapdata import (
    ClusterNode,
    Context,
    MapReader,
    cluster_agreement,
    context_from_table,
    published_descriptions,
    rows_by_activation,
)
from vista_tui.mapdata.opening import FIRST_PAGE

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vista_tui.core.stats_figures import StatsReading


@dataclass(frozen=True)
class SearchHit:
    """A node matching a search, and where the query was found."""

    node_id: str
    where: str
    """'label', 'keywords', 'prompt' or 'contexts'."""


class ContextStore:
    """Contexts by row index, loaded one parquet row group at a time and kept in a small LRU.

    Thread-safe: a worker may prefetch while the UI thread asks for rows already loaded.
    The root's first page comes from the map's opening file when it has one; the contexts file
    is opened (and pyarrow imported) on the first read of a row group.
    """

    def __init__(self, reader: MapReader, max_groups: int = 8) -> None:
        self._reader = reader
        self._file: pq.ParquetFile | None = None
        self._group_starts = np.zeros(len(reader.group_rows) + 1, dtype=np.int64)
        np.cumsum(reader.group_rows, out=self._group_starts[1:])
        self._first_page = reader.first_page
        """Row → context: the root's strongest, from the opening file (never evicted)."""
        self._groups: OrderedDict[int, pa.Table] = OrderedDict()
        self._max_groups = max_groups
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        """One read of the file at a time: pyarrow's ParquetFile is not safe to read from two threads
        (it crashed the process), and two context workers can overlap (a cancelled one runs on)."""

    @property
    def n_rows(self) -> int:
        return int(self._group_starts[-1])

    def group_of(self, row: int) -> int:
        return int(np.searchsorted(self._group_starts, row, side="right") - 1)

    def is_loaded(self, row: int) -> bool:
        if row in self._first_page:
            return True
        with self._lock:
            return self.group_of(row) in self._groups

    def _cached(self, index: int) -> pa.Table | None:
        with self._lock:
            table = self._groups.get(index)
            if table is not None:
                self._groups.move_to_end(index)
            return table

    def _group(self, index: int) -> pa.Table:
        table = self._cached(index)
        if table is not None:
            return table
        with self._read_lock:  # not the cache's lock: `get` on the UI thread never waits for a read
            table = self._cached(index)  # read by another thread while this one waited
            if table is not None:
                return table
            if self._file is None:
                self._file = self._reader.contexts_file()
            table = self._file.read_row_group(index)
        with self._lock:
            self._groups[index] = table
            self._groups.move_to_end(index)
            while len(self._groups) > self._max_groups:
                self._groups.popitem(last=False)
        return table

    def load(self, rows: np.ndarray | list[int]) -> None:
        """Read the row groups holding `rows` (call from a worker); the first page's rows need none."""
        for index in sorted({self.group_of(int(r)) for r in rows if int(r) not in self._first_page}):
            self._group(index)

    def warm(self) -> None:
        """Read the row groups holding the first page (call from a worker, once the first frame is drawn).

        The first frame took those rows from the opening file. Their row groups are where the
        nodes under the root mostly find their strongest contexts too, so reading them now (and
        importing pyarrow) spares the first keys a wait; without an opening file they are read already.
        """
        for index in sorted({self.group_of(row) for row in self._first_page}):
            self._group(index)

    def get(self, row: int) -> Context | None:
        """The context at `row` if its row group is loaded or it is on the first page, else None (never reads)."""
        first = self._first_page.get(row)
        if first is not None:
            return first
        index = self.group_of(row)
        with self._lock:
            table = self._groups.get(index)
        if table is None:
            return None
        local = row - int(self._group_starts[index])
        return context_from_table(table.slice(local, 1))

    def fetch(self, row: int) -> Context:
        """The context at `row`, reading its row group if needed."""
        self.load([row])
        context = self.get(row)
        assert context is not None
        return context


class MapModel:
    """One open map: nodes by id, children in display order, members, contexts on demand."""

    def __init__(self, reader: MapReader) -> None:
        self.reader = reader
        self.manifest = reader.manifest
        nodes = reader.tree
        self.nodes: dict[str, ClusterNode] = {node.node_id: node for node in nodes}
        self.root: ClusterNode = nodes[0]
        self.names = NodeNames(nodes, reader.path.name)
        """Paths, short ids and name resolution: the same as every `vista` command's."""
        # Display order: biggest clusters first, the noise of a parent last (the paths count in it).
        self._children = self.names.children
        self.activations = reader.activations
        self.layout = reader.layout
        self.contexts = ContextStore(reader)
        self._texts: list[str] | None = None
        self._by_activation: OrderedDict[str, np.ndarray] = OrderedDict()
        self._by_activation_lock = threading.Lock()
        self.published = published_descriptions(reader.path)
        """The latent's published explanations (imported with `vista import-explanations`)."""
        self.latent_agreement = cluster_agreement(reader.path)
        """Top-level cluster id → its agreement with the published explanations (`agreement.json`)."""
        self._stats: StatsReading | None = None
        self._stats_lock = threading.Lock()
        self._scores: ScoresReading | None = None
        self._scores_lock = threading.Lock()

    @classmethod
    def open(cls, path: Path | str) -> MapModel:
        return cls(MapReader(path))

    @classmethod
    def open_for_explorer(cls, path: Path | str) -> MapModel:
        """Open a map with what the explorer's first frame shows read: the root's first page of
        contexts, and the scores (the labels panel's; an unreadable file is the reading's error).

        A map with an opening file needs no parquet read for that, nor pyarrow (imported on the
        first read past that page).
        """
        model = cls.open(path)
        model.contexts.load(model.members_by_activation(model.root.node_id)[:FIRST_PAGE])
        model.map_scores()
        return model

    def reload_labels(self) -> None:
        """Re-read the tree's labels and the latent-level agreement (after a relabel wrote the map).

        The tree's shape stays: a relabel rewrites labels, not clusters, so each node keeps its
        place and only its `labels` are replaced; nodes the new tree lacks keep their old ones.
        """
        reader = MapReader(self.reader.path)
        for node in reader.tree:
            current = self.nodes.get(node.node_id)
            if current is not None:
                current.labels = node.labels
        self.manifest = reader.manifest
        self.published = published_descriptions(reader.path)
        self.latent_agreement = cluster_agreement(reader.path)

    @property
    def stats_read(self) -> bool:
        """Whether `latent_stats` has read the map's statistics already (it then returns at once)."""
        return self._stats is not None

    def latent_stats(self) -> StatsReading:
        """The map's `stats.json`, read on the first call and kept; an unreadable file is a one-line error.

        Only the statistics screen needs it, so opening a map does not read it: the first call
        reads (from a worker, the file holding every node's histograms), later ones return at once.
        """
        from vista_tui.core.stats_figures import read_stats  # the statistics screen's; not for opening a map

        with self._stats_lock:
            if self._stats is None:
                self._stats = read_stats(self.reader.path)
            return self._stats

    @property
    def scores_if_read(self) -> ScoresReading | None:
        """The map's scores when `map_scores` has read them already; None before (never reads)."""
        return self._scores

    def map_scores(self, *, reload: bool = False) -> ScoresReading:
        """The map's `scores.json`, read on the first call and kept; an unreadable file is a one-line error.

        Call it from a worker the first time. With `reload`, a file that changed on disk since it
        was read (`vista score` ran meanwhile) is read again.
        """
        with self._scores_lock:
            stale = reload and self._scores is not None and self._scores.signature != scores_signature(self.reader.path)
            if self._scores is None or stale:
                self._scores = read_score_reading(self.reader.path)
            return self._scores

    @property
    def map_id(self) -> str:
        return self.manifest.map_id

    @property
    def n_contexts(self) -> int:
        return self.contexts.n_rows

    @cached_property
    def max_activation(self) -> float:
        return float(self.activations.max()) if len(self.activations) else 0.0

    def children(self, node_id: str) -> list[str]:
        return self._children.get(node_id, [])

    def parent(self, node_id: str) -> str | None:
        return self.nodes[node_id].parent_id

    def ancestors(self, node_id: str) -> list[str]:
        """From the root down to the node's parent."""
        path: list[str] = []
        parent = self.parent(node_id)
        while parent is not None:
            path.append(parent)
            parent = self.parent(parent)
        return path[::-1]

    def walk(self, node_id: str | None = None) -> list[str]:
        """Node ids in display (depth-first) order, starting at `node_id` (default: the root)."""
        out: list[str] = []
        stack = [node_id or self.root.node_id]
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(self.children(current)))
        return out

    def members_by_activation(self, node_id: str) -> np.ndarray:
        """The node's context rows, highest activation first."""
        with self._by_activation_lock:
            cached = self._by_activation.get(node_id)
            if cached is not None:
                self._by_activation.move_to_end(node_id)
                return cached
        ordered = rows_by_activation(self.nodes[node_id].members, self.activations)
        ordered.flags.writeable = False  # shared by every caller
        # Walking the tree shows the same few nodes again and again; the root's sort alone
        # takes ~8 ms at 100k contexts. Big arrays are few: at most 64 kept.
        with self._by_activation_lock:
            self._by_activation[node_id] = ordered
            if len(self._by_activation) > 64:
                self._by_activation.popitem(last=False)
        return ordered

    def title(self, node_id: str, n_keywords: int = 3) -> str:
        """A node's display name, sanitised (see `node_title`); the root is named by its latent."""
        node = self.nodes[node_id]
        if node.kind == "root":
            return f"latent {self.manifest.provenance.latent}"
        return node_title(node, n_keywords)

    # -- search --------------------------------------------------------------------------------

    def context_texts(self) -> list[str]:
        """Every context's text, lower-cased (read once; call from a worker on big maps)."""
        if self._texts is None:
            import pyarrow as pa

            column = self.reader.contexts_table(["text"]).column(0).cast(pa.binary()).to_pylist()
            self._texts = [(text or b"").decode("utf-8", errors="replace").lower() for text in column]
        return self._texts

    def search(self, query: str, include_contexts: bool = True) -> list[SearchHit]:
        """Nodes whose label, keywords, prompt or contexts contain `query` (case-insensitive), in tree order."""
        needle = query.strip().lower()
        if not needle:
            return []
        texts = self.context_texts() if include_contexts else None
        matching_rows: np.ndarray | None = None
        if texts is not None:
            matching_rows = np.fromiter((needle in text for text in texts), dtype=bool, count=len(texts))
        hits: list[SearchHit] = []
        for node_id in self.walk():
            node = self.nodes[node_id]
            labels = node.labels
            if needle in self.title(node_id, 8).lower() or needle in labels.llm_explanation.lower():
                hits.append(SearchHit(node_id, "label"))
            elif any(needle in keyword.lower() for keyword in labels.keywords):
                hits.append(SearchHit(node_id, "keywords"))
            elif needle in labels.visual_prompt.lower():
                hits.append(SearchHit(node_id, "prompt"))
            elif matching_rows is not None and node.kind != "root" and matching_rows[node.members].any():
                hits.append(SearchHit(node_id, "contexts"))
        return hits

    def nearest_in_layout(self, row: int, k: int = 8) -> list[int]:
        """The k contexts nearest to `row` on the 2-D map (excluding itself)."""
        delta = self.layout - self.layout[row]
        distance = np.einsum("ij,ij->i", delta, delta)
        distance[row] = np.inf
        k = min(k, len(distance) - 1)
        if k <= 0:
            return []
        nearest = np.argpartition(distance, k - 1)[:k]
        return nearest[np.argsort(distance[nearest], kind="stable")].tolist()
