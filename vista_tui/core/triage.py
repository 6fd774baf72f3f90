"""Triage, headless: the one definition the explorer and the `vista` commands share.

A `TriageSession` is a map's annotation store (vista_tui.core.annotations) seen through the
map's current tree. Its targets are every node of the tree, the root included (the root is
the latent itself: judging it is part of triage). Progress, "next unreviewed", the filter and
every write (status, tags, note, undo) go through it, so the TUI's meter and
`vista triage-status` count the same nodes the same way.

The explorer opens its session with `open_triage` in its map-loading worker. When the store
cannot be opened for writing (read-only map dir, locked or corrupt database, bad config) the
map still opens: `error` says why and every triage key repeats it. The commands open theirs
with `TriageSession.open`, which raises instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vista_tui.core.annotations import (
    DEFAULT_STATUSES,
    Annotation,
    AnnotationError,
    AnnotationStore,
    HistoryEntry,
    ReconcileReport,
    TriageConfig,
)
from vista_tui.core.triage_config import load_config

if TYPE_CHECKING:
    from vista_tui.core.model import MapModel
    from vista_tui.mapdata import ClusterNode, MapReader

UNREVIEWED_GLYPH = "·"


def clean_note(note: str) -> str:
    """A note as it is stored: without trailing whitespace and newlines (the Enter typed before saving, the
    newline an editor ends a file with), its inner lines and leading indentation kept."""
    return str(note).rstrip()


@dataclass(frozen=True)
class TriageProgress:
    """How far triage has got over the session's targets."""

    reviewed: int
    """Targets whose status is not the first ("unreviewed") one."""
    total: int
    """Every target: each node of the tree, the root included."""
    counts: dict[str, int]
    """Targets per status: every configured status in order (zeros too), then any other status met."""


class TriageSession:
    """One map's annotations over its current tree: targets, progress, writes, undo, next unreviewed, filter."""

    def __init__(
        self,
        store: AnnotationStore | None,
        tree: Mapping[str, Sequence[str]],
        statuses: Sequence[str],
        author: str,
        *,
        error: str | None = None,
        report: ReconcileReport | None = None,
    ) -> None:
        """Use `TriageSession.open` or `open_triage`; `tree` maps node id → member context ids, in tree order."""
        self.store = store
        """None when not even a read-only store could be opened."""
        self.tree = dict(tree)
        """Node id → its member context ids (what an annotation is anchored to), in tree order."""
        self.statuses = tuple(statuses)
        """The configured statuses; the first means "not reviewed yet"."""
        self.author = author
        self.error = error
        """Why triage is read-only, or None when writes are allowed."""
        self.report = report
        """What reconciling with the current tree did (None: not run)."""
        self.glyphs = status_glyphs(self.statuses)
        """Status → the one character shown in the tree."""
        self._annotations: dict[str, Annotation] | None = None

    @classmethod
    def open(
        cls, map_dir: Path, tree: Mapping[str, Sequence[str]], config: TriageConfig, *, write: bool
    ) -> TriageSession:
        """The map's annotations, reconciled with `tree` when `write`, else opened read-only; raises AnnotationError."""
        store = AnnotationStore.open(map_dir, config.author, config.statuses, readonly=not write)
        try:
            report = store.reconcile(tree) if write else None
        except BaseException:
            store.close()
            raise
        return cls(store, tree, config.statuses, config.author, report=report)

    # -- reading ---------------------------------------------------------------------------

    @property
    def annotations(self) -> dict[str, Annotation]:
        """Node id → its annotation (orphans included), read once and kept fresh by this session's writes."""
        if self._annotations is None:
            self._annotations = self.store.all() if self.store is not None else {}
        return self._annotations

    def refresh(self, node_id: str | None = None) -> None:
        """Re-read one node's annotation after a write by someone else (None: all of them)."""
        if self.store is None:
            return
        if node_id is None or self._annotations is None:
            self._annotations = None
            return
        annotation = self.store.get(node_id)
        if annotation is None:
            self._annotations.pop(node_id, None)
        else:
            self._annotations[node_id] = annotation

    @property
    def writable(self) -> bool:
        """Whether writes are allowed (a store is open and nothing made it read-only)."""
        return self.store is not None and self.error is None

    @property
    def unreviewed(self) -> str:
        """The status of a node nobody has reviewed yet: the first configured one."""
        return self.statuses[0]

    @property
    def targets(self) -> list[str]:
        """The nodes triage counts, in tree order: every node, the root included."""
        return list(self.tree)

    def get(self, node_id: str) -> Annotation | None:
        """The node's annotation, or None when nobody annotated it."""
        if self._annotations is None and self.store is not None:
            return self.store.get(node_id)  # one row: a command touching one node reads no more
        return self.annotations.get(node_id)

    def status_of(self, node_id: str) -> str:
        """The node's status; nodes never annotated are unreviewed."""
        annotation = self.annotations.get(node_id)  # all read at once: callers ask for every node
        return annotation.status if annotation is not None and annotation.status else self.unreviewed

    def glyph(self, node_id: str) -> str:
        """The one character the tree shows for the node's status."""
        status = self.status_of(node_id)
        return self.glyphs.get(status, status[:1] or "?")

    def tags(self) -> list[str]:
        """Every tag in use, most used first."""
        return self.store.tags() if self.store is not None else []

    def progress(self) -> TriageProgress:
        """Targets per status, and how many are reviewed."""
        counts = dict.fromkeys(self.statuses, 0)
        for node_id in self.tree:
            status = self.status_of(node_id)
            counts[status] = counts.get(status, 0) + 1
        total = len(self.tree)
        return TriageProgress(reviewed=total - counts[self.unreviewed], total=total, counts=counts)

    def orphan_count(self) -> int:
        """Annotations whose node is not in the current tree."""
        return sum(1 for node_id in self.annotations if node_id not in self.tree)

    def next_unreviewed(self, current: str | None, step: int, among: set[str] | None = None) -> str | None:
        """The next (`step` > 0) or previous unreviewed target after `current` in tree order, wrapping.

        `among` keeps only those nodes (the filtered tree); None when no other node is unreviewed.
        """
        order = self.targets
        candidates = [
            n for n in order if n != current and self.status_of(n) == self.unreviewed and (among is None or n in among)
        ]
        return next_in_tree_order(order, candidates, current, step)

    def matching(self, wanted: TriageFilter) -> set[str]:
        """The targets a filter keeps (their ancestors not included)."""
        if wanted.kind == "status":
            return {node_id for node_id in self.tree if self.status_of(node_id) == wanted.value}
        return {
            node_id
            for node_id, annotation in self.annotations.items()
            if node_id in self.tree and wanted.value in annotation.tags
        }

    # -- writing: each one committed before it returns -------------------------------------

    def _writer(self) -> AnnotationStore:
        if self.store is None:
            raise AnnotationError(self.error or "no annotation store for this map")
        return self.store

    def _written(self, annotation: Annotation) -> Annotation:
        if self._annotations is not None:
            self._annotations[annotation.node_id] = annotation
        return annotation

    def set_status(self, node_id: str, status: str) -> Annotation:
        """Set the node's status (ValueError for a status not configured)."""
        return self._written(self._writer().set_status(node_id, status, self.tree[node_id]))

    def add_tag(self, node_id: str, tag: str) -> Annotation:
        """Add one tag (ValueError for an empty one)."""
        return self._written(self._writer().add_tag(node_id, tag, self.tree[node_id]))

    def remove_tag(self, node_id: str, tag: str) -> Annotation:
        """Remove a tag (KeyError when the node has no annotation)."""
        return self._written(self._writer().remove_tag(node_id, tag))

    def set_note(self, node_id: str, note: str) -> Annotation:
        """Replace the node's note (as `clean_note` leaves it)."""
        return self._written(self._writer().set_note(node_id, clean_note(note), self.tree[node_id]))

    def undo(self, node_id: str | None = None) -> HistoryEntry | None:
        """Undo this author's latest change not yet undone (to `node_id` when given); its revert entry, or None."""
        entry = self._writer().undo(self.author, node_id=node_id)
        if entry is not None:
            self.refresh(entry.node_id)
        return entry

    def close(self) -> None:
        """Close the store (every write is already committed)."""
        if self.store is not None:
            self.store.close()


def status_glyphs(statuses: tuple[str, ...] | list[str]) -> dict[str, str]:
    """One distinct character per status: '·' for the first, else its first free letter (lower, then upper)."""
    glyphs: dict[str, str] = {}
    used: set[str] = {UNREVIEWED_GLYPH}
    for index, status in enumerate(statuses):
        if index == 0:
            glyphs[status] = UNREVIEWED_GLYPH
            continue
        letters = [c for c in status if c.isalnum()] or ["?"]
        candidates = [letters[0].lower(), letters[0].upper(), *letters[1:], *(c.upper() for c in letters[1:])]
        glyph = next((c for c in candidates if c not in used), "?")
        used.add(glyph)
        glyphs[status] = glyph
    return glyphs


def next_in_tree_order(order: Sequence[str], wanted: Sequence[str], current: str | None, step: int) -> str | None:
    """The first of `wanted` after (`step` > 0) or before `current` in `order`, wrapping; None when none is wanted."""
    if not wanted:
        return None
    position = {node_id: i for i, node_id in enumerate(order)}
    here = position.get(current or "", -1)
    ranked = sorted(wanted, key=lambda n: position[n])
    if step > 0:
        return next((n for n in ranked if position[n] > here), ranked[0])
    return next((n for n in reversed(ranked) if position[n] < here), ranked[-1])


def tree_members(reader: MapReader, order: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Node id → its member context ids, in `order` (default: the tree file's, parents before children)."""
    nodes = {node.node_id: node for node in reader.tree}
    return {node_id: _context_ids(reader, nodes[node_id]) for node_id in (order or nodes)}


def member_ids(model: MapModel, node_id: str) -> list[str]:
    """The node's member context ids: what an annotation is anchored to."""
    return _context_ids(model.reader, model.nodes[node_id])


def _context_ids(reader: MapReader, node: ClusterNode) -> list[str]:
    ids = reader.context_ids
    return [ids[int(row)] for row in node.members]


def open_triage(model: MapModel, config: TriageConfig | None) -> TriageSession:
    """The explorer's session: opened, reconciled with the tree and read (call from a worker).

    Never raises AnnotationError: a store that cannot be written is opened read-only (or not at
    all) and the session's `error` says why.
    """
    session = _open_for_explorer(model, config)
    _ = session.annotations  # read here, off the UI thread, rather than when the tree is first drawn
    return session


def _open_for_explorer(model: MapModel, config: TriageConfig | None) -> TriageSession:
    tree = tree_members(model.reader, model.walk())  # display order: what n/N walk
    try:
        config = config if config is not None else load_config()
    except AnnotationError as error:
        return TriageSession(None, tree, DEFAULT_STATUSES, "", error=f"config: {error}")
    statuses = tuple(config.statuses) or DEFAULT_STATUSES
    map_dir = model.reader.path
    try:
        store = AnnotationStore.open(map_dir, config.author, statuses=statuses)
    except AnnotationError as error:
        reason = str(error)
        try:
            store = AnnotationStore.open(map_dir, config.author, statuses=statuses, readonly=True)
        except AnnotationError:
            store = None
        return TriageSession(store, tree, statuses, config.author, error=reason)
    try:
        report = store.reconcile(tree)
    except AnnotationError as error:
        return TriageSession(store, tree, statuses, config.author, error=f"reconcile: {error}")
    return TriageSession(store, tree, statuses, config.author, report=report)


def reconcile_message(report: ReconcileReport | None) -> str | None:
    """'3 annotations followed their clusters, 1 orphaned — `vista export` lists it', or None when nothing moved."""
    if report is None:
        return None
    moved, orphaned = len(report.moved), len(report.orphaned)
    if not moved and not orphaned:
        return None
    parts = []
    if moved:
        parts.append(
            f"{moved} annotation{'s' if moved != 1 else ''} followed {'their clusters' if moved != 1 else 'its cluster'}"
        )
    if orphaned:
        noun = "" if moved else f" annotation{'s' if orphaned != 1 else ''}"
        parts.append(f"{orphaned}{noun} orphaned — `vista export` lists {'it' if orphaned == 1 else 'them'}")
    return ", ".join(parts)


@dataclass(frozen=True)
class TriageFilter:
    """Show only nodes with this status or tag."""

    kind: str
    """'status' or 'tag'."""
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def parse_filter(text: str, statuses: tuple[str, ...]) -> TriageFilter | None:
    """'status:junk', 'tag:verb', or a bare status or tag name; empty → None. Raises ValueError."""
    text = text.strip()
    if not text:
        return None
    kind, sep, value = text.partition(":")
    if not sep:
        kind, value = ("status" if text in statuses else "tag"), text
    kind, value = kind.strip().lower(), value.strip()
    if kind not in ("status", "tag"):
        raise ValueError(f"filter {text!r}: use status:<name> or tag:<name>")
    if not value:
        raise ValueError(f"filter {text!r}: name a {kind}")
    if kind == "status" and value not in statuses:
        raise ValueError(f"unknown status {value!r}; statuses are {', '.join(statuses)}")
    return TriageFilter(kind, value)
