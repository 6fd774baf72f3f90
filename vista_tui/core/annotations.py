"""What people wrote about a map's nodes: triage status, tags and notes, in `<map>/annotations.sqlite`.

Durability is the point of this module. Every write is one SQLite transaction (WAL,
`synchronous=FULL`) committed before the method returns, so a caller that shows "saved"
after a method returns never lies; a crash or a kill loses at most the write in flight, and
two processes (the TUI and the annotate CLI) can write the same map at once: each write
takes the database's write lock up front (`BEGIN IMMEDIATE`) and waits up to
`BUSY_TIMEOUT_MS` for it.

Tables (schema version 1, in `meta`):
- `annotations`: node_id (primary key), status, tags (JSON list), note, author, updated
  (ISO-8601 UTC), members (JSON list of the member context ids of the node the annotation
  is attached to: given with its first write, replaced when `reconcile` moves it),
  orphaned (1 when its node is not in the current tree and nothing matched it).
- `history`: append-only; one row per change: node_id, field ('status', 'tags', 'note',
  'node' for a move by `reconcile`, 'orphaned'), old and new (text; tags as JSON), author,
  at, and `reverts` (the id of the entry an undo reverted, else NULL).

The database is never deleted or overwritten by this code: a damaged one is reported and
left as it is.

Headless: the standard library only (no textual, no pipeline). The triage config is in
`triage_config`, the matching of rebuilt nodes in `reconcile`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vista_tui.core.errors import AnnotationError
from vista_tui.core.reconcile import ReconcileReport, match_moves
from vista_tui.core.triage_config import DEFAULT_STATUSES, TriageConfig

DB_NAME = "annotations.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000
"""How long a write waits for another process's lock before giving up."""

UNDOABLE_FIELDS = ("status", "tags", "note")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    node_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    note TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL,
    updated TEXT NOT NULL,
    members TEXT NOT NULL DEFAULT '[]',
    orphaned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    field TEXT NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    author TEXT NOT NULL,
    at TEXT NOT NULL,
    reverts INTEGER REFERENCES history(id)
);
CREATE INDEX IF NOT EXISTS history_node ON history(node_id);
CREATE INDEX IF NOT EXISTS history_reverts ON history(reverts);
"""


def _now() -> str:
    """ISO-8601 UTC with microseconds, so that changes within one second still order."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Annotation:
    """The current annotation of one node."""

    node_id: str
    status: str
    tags: tuple[str, ...]
    note: str
    author: str
    """Who made the latest change."""
    updated: str
    """When (ISO-8601 UTC)."""


@dataclass(frozen=True)
class HistoryEntry:
    """One change, as the append-only history records it (tags as a JSON list)."""

    id: int
    node_id: str
    field: str
    old: str
    new: str
    author: str
    at: str


def _clean_tags(tags: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tags, str):
        raise ValueError(f"tags must be a sequence of strings, got the string {tags!r}")
    out: list[str] = []
    for tag in tags:
        cleaned = " ".join(str(tag).split())
        if not cleaned:
            raise ValueError("a tag cannot be empty")
        if cleaned not in out:
            out.append(cleaned)
    return tuple(out)


class AnnotationStore:
    """The annotations of one map: one SQLite connection, shared by threads under a lock."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        map_dir: Path,
        author: str,
        statuses: tuple[str, ...],
        readonly: bool,
    ) -> None:
        """Use `AnnotationStore.open`."""
        self._db = connection
        self._lock = threading.RLock()
        self.map_dir = map_dir
        self.author = author
        self.statuses = tuple(statuses)
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        map_dir: Path,
        author: str,
        statuses: tuple[str, ...] = DEFAULT_STATUSES,
        readonly: bool = False,
    ) -> AnnotationStore:
        """Open (creating when writable) `<map_dir>/annotations.sqlite`; raises AnnotationError."""
        map_dir = Path(map_dir)
        TriageConfig(statuses=tuple(statuses), author=author)  # validates; ValueError names the bad value
        if not map_dir.is_dir():
            raise AnnotationError(f"cannot open annotations: {map_dir} is not a directory")
        path = map_dir / DB_NAME
        if not readonly and not os.access(map_dir, os.W_OK | os.X_OK):
            raise AnnotationError(_readonly_message(map_dir))
        if not readonly and path.exists() and not os.access(path, os.W_OK):
            raise AnnotationError(_readonly_message(map_dir))
        try:
            if readonly:
                if not path.exists():
                    connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                    store = cls(connection, map_dir, author, tuple(statuses), readonly)
                    store._create_schema()
                    return store
                else:
                    # immutable: a read-only directory cannot hold the WAL index SQLite would create
                    immutable = "&immutable=1" if not os.access(map_dir, os.W_OK) else ""
                    connection = sqlite3.connect(
                        f"{path.resolve().as_uri()}?mode=ro{immutable}",
                        uri=True,
                        isolation_level=None,
                        check_same_thread=False,
                    )
            else:
                connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise _translate(error, map_dir) from None
        store = cls(connection, map_dir, author, tuple(statuses), readonly)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                store._prepare()
                return store
            except AnnotationError:
                store._db.close()
                raise
            except sqlite3.Error as error:
                # Two processes opening a new file at once: while one switches it to WAL, SQLite
                # can answer the other BUSY at once, without waiting in its busy handler. Every
                # step of _prepare can be run again, so wait here as the busy handler would.
                if _is_busy(error) and time.monotonic() < deadline:
                    time.sleep(0.02)
                    continue
                store._db.close()
                raise _translate(error, map_dir) from None

    def _prepare(self) -> None:
        db = self._db
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_MS)}")
        db.execute("PRAGMA foreign_keys=ON")
        if not self.readonly:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise AnnotationError(f"{DB_NAME} in {self.map_dir} cannot use write-ahead logging (mode {mode})")
            db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise AnnotationError(_damaged_message(self.map_dir, str(check)))
        if self.readonly:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "annotations", "history"} <= tables:
                # a database that never got its tables (killed while being created): read as empty
                db.close()
                self._db = db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                self._create_schema()
        else:
            with self._write():
                self._create_schema()
        self._check_version()

    def _create_schema(self) -> None:
        # executescript would commit the open transaction; run the statements one by one instead
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row and str(row[0]).isdigit() else SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise AnnotationError(
                f"{DB_NAME} in {self.map_dir} has schema version {version}; this vista reads {SCHEMA_VERSION}: "
                "upgrade vista-tui"
            )

    def close(self) -> None:
        """Close the connection (every write is already committed)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> AnnotationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions ------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit; the write lock is taken up front."""
        if self.readonly:
            raise AnnotationError(_readonly_message(self.map_dir))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise _translate(error, self.map_dir) from None
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                # the transaction may already be gone (e.g. the commit itself failed)
                with suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise _translate(error, self.map_dir) from None
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as error:
                raise _translate(error, self.map_dir) from None

    # -- reading ---------------------------------------------------------------------------

    def get(self, node_id: str) -> Annotation | None:
        """The node's annotation, or None when nobody annotated it."""
        with self._read() as db:
            row = db.execute(
                "SELECT node_id, status, tags, note, author, updated FROM annotations WHERE node_id=?", (node_id,)
            ).fetchone()
        return _annotation(row) if row else None

    def all(self) -> dict[str, Annotation]:
        """Every annotation (orphans included), by node id."""
        with self._read() as db:
            rows = db.execute("SELECT node_id, status, tags, note, author, updated FROM annotations").fetchall()
        return {row[0]: _annotation(row) for row in rows}

    def orphans(self) -> list[Annotation]:
        """Annotations whose node is not in the tree any more and matched no current node."""
        with self._read() as db:
            rows = db.execute(
                "SELECT node_id, status, tags, note, author, updated FROM annotations WHERE orphaned=1 ORDER BY node_id"
            ).fetchall()
        return [_annotation(row) for row in rows]

    def members(self, node_id: str) -> tuple[str, ...]:
        """The member context ids recorded with the node's annotation (empty when none were given)."""
        with self._read() as db:
            row = db.execute("SELECT members FROM annotations WHERE node_id=?", (node_id,)).fetchone()
        return tuple(json.loads(row[0])) if row else ()

    def history(self, node_id: str | None = None) -> list[HistoryEntry]:
        """Every change (of one node, if given), oldest first."""
        query = "SELECT id, node_id, field, old, new, author, at FROM history"
        with self._read() as db:
            if node_id is None:
                rows = db.execute(query + " ORDER BY id").fetchall()
            else:
                rows = db.execute(query + " WHERE node_id=? ORDER BY id", (node_id,)).fetchall()
        return [HistoryEntry(*row) for row in rows]

    def tags(self) -> list[str]:
        """Every tag in use, most used first, then by name."""
        with self._read() as db:
            rows = db.execute("SELECT tags FROM annotations").fetchall()
        counts = Counter(tag for (tags,) in rows for tag in json.loads(tags))
        return [tag for tag, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]

    def counts(self, node_ids: Sequence[str]) -> dict[str, int]:
        """Nodes per status over `node_ids`; nodes nobody annotated count as the first status."""
        out = dict.fromkeys(self.statuses, 0)
        with self._read() as db:
            status_of = dict(db.execute("SELECT node_id, status FROM annotations").fetchall())
        for node_id in node_ids:
            status = status_of.get(node_id, self.statuses[0])
            out[status] = out.get(status, 0) + 1
        return out

    # -- writing ---------------------------------------------------------------------------

    def set_status(self, node_id: str, status: str, members: Sequence[str] = ()) -> Annotation:
        """Set the node's triage status (ValueError for a status not in this store's list)."""
        if status not in self.statuses:
            raise ValueError(f"unknown status {status!r}; the statuses are: {', '.join(self.statuses)}")
        return self._change(node_id, "status", status, members)

    def set_tags(self, node_id: str, tags: Sequence[str], members: Sequence[str] = ()) -> Annotation:
        """Replace the node's tags (order kept, duplicates and blank tags refused or dropped)."""
        return self._change(node_id, "tags", json.dumps(list(_clean_tags(tags))), members)

    def add_tag(self, node_id: str, tag: str, members: Sequence[str] = ()) -> Annotation:
        """Add one tag to the node (a no-op write-wise when it has it already)."""
        (cleaned,) = _clean_tags([tag])
        return self._change(node_id, "tags", None, members, add_tag=cleaned)

    def remove_tag(self, node_id: str, tag: str) -> Annotation:
        """Remove one tag from the node (KeyError when the node has no annotation)."""
        (cleaned,) = _clean_tags([tag])
        return self._change(node_id, "tags", None, (), remove_tag=cleaned)

    def set_note(self, node_id: str, note: str, members: Sequence[str] = ()) -> Annotation:
        """Replace the node's free-text note."""
        return self._change(node_id, "note", str(note), members)

    def _change(
        self,
        node_id: str,
        column: str,
        value: str | None,
        members: Sequence[str],
        add_tag: str | None = None,
        remove_tag: str | None = None,
        author: str | None = None,
        reverts: int | None = None,
    ) -> Annotation:
        author = author or self.author
        member_json = json.dumps(sorted(str(m) for m in members))
        with self._write() as db:
            row = db.execute(f"SELECT {column}, members FROM annotations WHERE node_id=?", (node_id,)).fetchone()
            if row is None:
                if remove_tag is not None:
                    raise KeyError(f"node {node_id} has no annotation")
                old = {"status": self.statuses[0], "tags": "[]", "note": ""}[column]
            else:
                old = row[0]
            if add_tag is not None or remove_tag is not None:
                tags = json.loads(old)
                if add_tag is not None and add_tag not in tags:
                    tags.append(add_tag)
                if remove_tag is not None and remove_tag in tags:
                    tags.remove(remove_tag)
                value = json.dumps(tags)
            assert value is not None
            now = _now()
            if row is None:
                db.execute(
                    "INSERT INTO annotations(node_id, status, tags, note, author, updated, members) "
                    "VALUES (?, ?, '[]', '', ?, ?, ?)",
                    (node_id, self.statuses[0], author, now, member_json),
                )
            elif members and row[1] == "[]":
                db.execute("UPDATE annotations SET members=? WHERE node_id=?", (member_json, node_id))
            if value != old or reverts is not None:
                db.execute(
                    f"UPDATE annotations SET {column}=?, author=?, updated=? WHERE node_id=?",
                    (value, author, now, node_id),
                )
                db.execute(
                    "INSERT INTO history(node_id, field, old, new, author, at, reverts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (node_id, column, old, value, author, now, reverts),
                )
            current = db.execute(
                "SELECT node_id, status, tags, note, author, updated FROM annotations WHERE node_id=?", (node_id,)
            ).fetchone()
        return _annotation(current)

    def last_change_id(self) -> int:
        """The id of the newest history entry (0 when there is none)."""
        with self._read() as db:
            return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM history").fetchone()[0])

    def undo(self, author: str | None = None, node_id: str | None = None) -> HistoryEntry | None:
        """Revert the latest change (by `author`, to `node_id`, when given) not yet undone; returns the revert's entry.

        The revert is recorded in history (field as reverted, old = the value before the undo,
        new = the value restored), so undoing again reverts the change before. Moves made
        by `reconcile` are not undone, but followed: with `node_id`, a change made to the node
        under the id it had before a rebuild counts as a change to it. None when there is
        nothing to undo.
        """
        placeholders = ",".join("?" for _ in UNDOABLE_FIELDS)
        query = (
            "SELECT h.id, h.node_id, h.field, h.old FROM history h "
            f"WHERE h.reverts IS NULL AND h.field IN ({placeholders}) "
            "AND NOT EXISTS (SELECT 1 FROM history r WHERE r.reverts = h.id)"
        )
        params: list[Any] = list(UNDOABLE_FIELDS)
        if author is not None:
            query += " AND h.author = ?"
            params.append(author)
        # For one node every candidate is looked at: which node a change belongs to now is only
        # known after following the moves, and a person's history is short.
        query += " ORDER BY h.id DESC" + (" LIMIT 1" if node_id is None else "")
        with self._lock:
            # under the store's lock only: another process may write in between, which is harmless
            with self._read() as db:
                rows = db.execute(query, params).fetchall()
                found = None
                for entry_id, changed, column, old in rows:
                    current = self._follow_moves(db, changed, entry_id)
                    if node_id is None or current == node_id:
                        found = (entry_id, current, column, old)
                        break
                if found is None:
                    return None
            entry_id, current, column, old = found
            self._change(current, column, old, (), author=author or self.author, reverts=entry_id)
            with self._read() as db:
                latest = db.execute(
                    "SELECT id, node_id, field, old, new, author, at FROM history WHERE reverts=? ORDER BY id DESC",
                    (entry_id,),
                ).fetchone()
        return HistoryEntry(*latest)

    @staticmethod
    def _follow_moves(db: sqlite3.Connection, node_id: str, since: int) -> str:
        """Where the annotation of `node_id` lives now, following `reconcile`'s moves after entry `since`."""
        for _ in range(1000):  # moves form a chain; the bound only guards a corrupt cycle
            row = db.execute(
                "SELECT id, new FROM history WHERE field='node' AND node_id=? AND id>? ORDER BY id LIMIT 1",
                (node_id, since),
            ).fetchone()
            if row is None:
                return node_id
            since, node_id = row
        return node_id

    # -- rebuilds --------------------------------------------------------------------------

    def reconcile(self, nodes: Mapping[str, Sequence[str]], threshold: float = 0.5) -> ReconcileReport:
        """Attach annotations to the current tree (node id → member context ids) after a rebuild.

        An annotation whose node is in `nodes` stays (an orphan whose node came back is
        restored). Otherwise it moves to the current, not yet annotated node with the highest
        Jaccard overlap of members, if that is at least `threshold` (best pairs first);
        else it is marked orphaned. Nothing is deleted; moves and orphanings go in history.
        """
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        with self._read() as db:
            rows = db.execute("SELECT node_id, members, orphaned FROM annotations").fetchall()
        annotated = {row[0] for row in rows}
        lost = [
            (node_id, set(json.loads(members)), orphaned) for node_id, members, orphaned in rows if node_id not in nodes
        ]
        restored = [node_id for node_id, _, orphaned in rows if node_id in nodes and orphaned]
        if not lost and not restored:
            return ReconcileReport()
        moves = match_moves(lost, nodes, annotated, threshold)
        placed = {move.old for move in moves}
        now = _now()
        newly_orphaned = [old for old, _, orphaned in lost if old not in placed and not orphaned]
        with self._write() as db:
            for move in moves:
                db.execute(
                    "UPDATE annotations SET node_id=?, members=?, orphaned=0 WHERE node_id=?",
                    (move.new, json.dumps(sorted(str(m) for m in nodes[move.new])), move.old),
                )
                db.execute(
                    "INSERT INTO history(node_id, field, old, new, author, at) VALUES (?, 'node', ?, ?, ?, ?)",
                    (move.old, move.old, move.new, self.author, now),
                )
            for old in newly_orphaned:
                db.execute("UPDATE annotations SET orphaned=1 WHERE node_id=?", (old,))
                db.execute(
                    "INSERT INTO history(node_id, field, old, new, author, at) VALUES (?, 'orphaned', '0', '1', ?, ?)",
                    (old, self.author, now),
                )
            for node_id in restored:
                db.execute("UPDATE annotations SET orphaned=0 WHERE node_id=?", (node_id,))
                db.execute(
                    "INSERT INTO history(node_id, field, old, new, author, at) VALUES (?, 'orphaned', '1', '0', ?, ?)",
                    (node_id, self.author, now),
                )
        orphaned = tuple(sorted(old for old, _, _ in lost if old not in placed))
        return ReconcileReport(moved=tuple(moves), orphaned=orphaned, restored=tuple(sorted(restored)))


def count_reviewed(map_dir: Path, unreviewed: str = DEFAULT_STATUSES[0], timeout: float = 0.05) -> int | None:
    """How many nodes of the map are reviewed, read straight from its file; None when it has none.

    "Reviewed" as `vista triage-status` counts it: annotations whose status is not the first
    configured one (`unreviewed`), orphans left out. Nothing is created or changed: the file
    is opened read-only, and `immutable` (no -wal or -shm files) when no writer has a
    write-ahead log open or the directory is read-only. Unlike triage-status it does not
    reconcile, so annotations of a rebuilt tree count until the map is opened again.
    Raises AnnotationError when the file is locked (after `timeout` seconds), damaged, or not
    an annotations database.
    """
    map_dir = Path(map_dir)
    path = map_dir / DB_NAME
    if not path.exists():
        return None
    wal = map_dir / f"{DB_NAME}-wal"
    immutable = "&immutable=1" if not wal.exists() or not os.access(map_dir, os.W_OK) else ""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{immutable}", uri=True, timeout=timeout)
    except sqlite3.Error as error:
        raise _translate(error, map_dir) from None
    try:
        version, reviewed = connection.execute(
            "SELECT (SELECT value FROM meta WHERE key='schema_version'), "
            "(SELECT COUNT(*) FROM annotations WHERE status != ? AND orphaned = 0)",
            (unreviewed,),
        ).fetchone()
    except sqlite3.Error as error:
        if "no such table" in str(error):
            with suppress(sqlite3.Error):
                if connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                    return 0  # never got its tables (killed while being created): empty, as the store reads it
        raise _translate(error, map_dir) from None
    finally:
        connection.close()
    if version is not None and str(version) != str(SCHEMA_VERSION):
        raise AnnotationError(f"{DB_NAME} in {map_dir} has schema version {version}; this vista reads {SCHEMA_VERSION}")
    return int(reviewed)


def _annotation(row: Sequence[Any]) -> Annotation:
    node_id, status, tags, note, author, updated = row
    return Annotation(node_id, status, tuple(json.loads(tags)), note, author, updated)


def _readonly_message(map_dir: Path) -> str:
    return f"cannot write annotations: {map_dir} is read-only; copy the map or ask its owner"


def _damaged_message(map_dir: Path, why: str) -> str:
    why = " ".join(why.split())
    return f"{DB_NAME} in {map_dir} is damaged ({why}); it was not changed — move it aside to start fresh"


def _is_busy(error: sqlite3.Error) -> bool:
    lowered = str(error).lower()
    return "locked" in lowered or "busy" in lowered


def _translate(error: sqlite3.Error, map_dir: Path) -> AnnotationError:
    """One line for a person from SQLite's error."""
    text = " ".join(str(error).split())
    lowered = text.lower()
    if _is_busy(error):
        return AnnotationError(
            f"{DB_NAME} is locked by another process (still busy after {BUSY_TIMEOUT_MS / 1000:g} s) in {map_dir}; "
            "try again when it finishes"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return AnnotationError(_readonly_message(map_dir))
    if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
        return AnnotationError(_damaged_message(map_dir, text))
    if "malformed" in lowered or "not a database" in lowered or "corrupt" in lowered:
        return AnnotationError(_damaged_message(map_dir, text))
    return AnnotationError(f"{DB_NAME} in {map_dir}: {text}")
