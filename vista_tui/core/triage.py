"""Triage in the explorer, without textual: the open annotation store, glyphs, the meter, the filter.

The app opens a `Triage` in its map-loading worker; the map screen reads and writes through it.
When the store cannot be opened for writing (read-only map dir, locked or corrupt database,
bad config) the map still opens: `error` says why and every triage key repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vista_tui.core.annotations import (
    DEFAULT_STATUSES,
    Annotation,
    AnnotationError,
    AnnotationStore,
    ReconcileReport,
    TriageConfig,
)
from vista_tui.core.model import MapModel
from vista_tui.core.triage_config import load_config

UNREVIEWED_GLYPH = "·"


@dataclass
class Triage:
    """The map's annotation store as the explorer uses it."""

    store: AnnotationStore | None
    """None when not even a read-only store could be opened."""
    statuses: tuple[str, ...]
    """The configured statuses; the first means "not reviewed yet"."""
    author: str
    error: str | None = None
    """Why triage is read-only, or None when writes are allowed."""
    report: ReconcileReport | None = None
    """What reconciling with the current tree did (None: not run)."""
    glyphs: dict[str, str] = field(default_factory=dict)
    """Status → the one character shown in the tree."""
    annotations: dict[str, Annotation] = field(default_factory=dict)
    """Node id → its annotation, as last read from the store (see `refresh`)."""

    def __post_init__(self) -> None:
        if not self.glyphs:
            self.glyphs = status_glyphs(self.statuses)
        self.refresh()

    def refresh(self, node_id: str | None = None) -> None:
        """Re-read one node's annotation after a write (None: all of them)."""
        if self.store is None:
            return
        if node_id is None:
            self.annotations = self.store.all()
            return
        annotation = self.store.get(node_id)
        if annotation is None:
            self.annotations.pop(node_id, None)
        else:
            self.annotations[node_id] = annotation

    @property
    def writable(self) -> bool:
        return self.store is not None and self.error is None

    @property
    def unreviewed(self) -> str:
        return self.statuses[0]

    def get(self, node_id: str) -> Annotation | None:
        return self.annotations.get(node_id)

    def status_of(self, node_id: str) -> str:
        """The node's status; nodes never annotated are unreviewed."""
        annotation = self.get(node_id)
        return annotation.status if annotation is not None and annotation.status else self.unreviewed

    def glyph(self, node_id: str) -> str:
        status = self.status_of(node_id)
        return self.glyphs.get(status, status[:1] or "?")

    def tags(self) -> list[str]:
        return self.store.tags() if self.store is not None else []

    def close(self) -> None:
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


def member_ids(model: MapModel, node_id: str) -> list[str]:
    """The node's member context ids: what an annotation is anchored to."""
    context_ids = model.reader.context_ids
    return [context_ids[int(row)] for row in model.nodes[node_id].members]


def open_triage(model: MapModel, config: TriageConfig | None) -> Triage:
    """Open the map's annotation store and reconcile it with the tree (call from a worker).

    Never raises AnnotationError: a store that cannot be written is opened read-only (or not at
    all) and the returned Triage says why.
    """
    try:
        config = config if config is not None else load_config()
    except AnnotationError as error:
        return Triage(None, DEFAULT_STATUSES, "", error=f"config: {error}")
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
        return Triage(store, statuses, config.author, error=reason)
    try:
        nodes = {node_id: member_ids(model, node_id) for node_id in model.walk()}
        report = store.reconcile(nodes)
    except AnnotationError as error:
        return Triage(store, statuses, config.author, error=f"reconcile: {error}")
    return Triage(store, statuses, config.author, report=report)


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


def triage_targets(model: MapModel) -> list[str]:
    """The nodes triage counts, in tree order: every node but the root."""
    return model.walk()[1:]


def meter_text(triage: Triage, model: MapModel) -> str:
    """'triage 12/87 · interpretable 5 · junk 3' over the current tree."""
    targets = triage_targets(model)
    counts: dict[str, int] = {}
    for node_id in targets:
        status = triage.status_of(node_id)
        if status != triage.unreviewed:
            counts[status] = counts.get(status, 0) + 1
    reviewed = sum(counts.values())
    order = [s for s in triage.statuses if counts.get(s)] + sorted(s for s in counts if s not in triage.statuses)
    return " · ".join([f"triage {reviewed}/{len(targets)}", *(f"{s} {counts[s]}" for s in order if counts[s])])


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


def matching_nodes(triage: Triage, model: MapModel, wanted: TriageFilter) -> set[str]:
    """The nodes a filter keeps (ancestors not included)."""
    if wanted.kind == "status":
        return {node_id for node_id in model.walk() if triage.status_of(node_id) == wanted.value}
    return {
        node_id
        for node_id, annotation in triage.annotations.items()
        if node_id in model.nodes and wanted.value in annotation.tags
    }
