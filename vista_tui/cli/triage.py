"""Headless triage: `vista annotate` and `vista triage-status` (and what `vista export` shares with them).

Each command opens the map's annotations (vista_tui.core.annotations) the way the TUI does and,
when the map is writable, first reattaches annotations to the current tree (`reconcile`),
so a rebuilt map is handled the same from the keyboard and from a script. Errors are one
line on stderr, `error: …`, with exit status 2.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.cli.console import fail
from vista_tui.cli.opening import NODE_HELP, open_map, resolve_node_id
from vista_tui.core.annotations import DB_NAME, AnnotationError, AnnotationStore, TriageConfig
from vista_tui.core.history import undo_message
from vista_tui.core.triage import TriageSession, tree_members
from vista_tui.core.triage_config import DEFAULT_STATUSES, load_config
from vista_tui.mapdata import MapError

if TYPE_CHECKING:
    from vista_tui.core.annotations import HistoryEntry
    from vista_tui.mapdata import MapReader

CHANGE_OPTIONS = "--status, --tag, --untag or --note"
"""The options of `annotate` that write; `--undo` is one more and goes alone."""
STATUSES_HELP = (
    f"{', '.join(DEFAULT_STATUSES)} (the first means not yet reviewed). A config file's "
    "`[triage] statuses = [...]` (--config FILE, else $VISTA_CONFIG, else the user config) replaces them; "
    "`vista triage-status MAP` lists the statuses in use."
)
"""What `annotate --help` says of the statuses: the defaults, and where a config replaces them."""


def open_store(
    map_dir: Path, reader: MapReader, config: TriageConfig, write: bool
) -> tuple[AnnotationStore, dict[str, list[str]]]:
    """The map's annotations, reconciled with its current tree when they can be written."""
    session = TriageSession.open(map_dir, tree_members(reader), config, write=write)
    assert session.store is not None  # open() raises instead of returning a session without a store
    return session.store, session.tree


def triage_config(args: argparse.Namespace) -> TriageConfig:
    """The triage config of `--config` (else the default one), with `--author` when given."""
    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    author = getattr(args, "author", None)
    if author is not None:
        if not author.strip():
            raise ValueError("--author cannot be empty")
        config = TriageConfig(statuses=config.statuses, author=author.strip())
    return config


def add_triage_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every triage command takes: the map, `--config`, `--cache`."""
    parser.add_argument("map", help="map id in the store, or path to a map directory")
    parser.add_argument("--config", metavar="FILE", default=None, help="triage config (default: $VISTA_CONFIG)")
    parser.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")


@contextmanager
def reading(
    args: argparse.Namespace,
) -> Iterator[tuple[MapReader, TriageConfig, AnnotationStore, dict[str, list[str]]]]:
    """The map, config and store of a reading command (reconciled when the store exists and can be
    written, else read-only); the store is closed on leaving."""
    reader = open_map(args)
    map_dir = reader.path
    config = triage_config(args)
    writable = (map_dir / DB_NAME).exists()
    try:
        store, members = open_store(map_dir, reader, config, write=writable)
    except AnnotationError:
        if not writable:
            raise
        store, members = open_store(map_dir, reader, config, write=False)  # e.g. a read-only map directory
    try:
        yield reader, config, store, members
    finally:
        store.close()


def add_triage_parsers(subparsers: Any) -> None:
    """Add `annotate` and `triage-status` to `vista`'s subcommands (each sets `run=cmd_…`)."""
    annotate = subparsers.add_parser(
        "annotate",
        help="set a node's triage status, tags or note (prints the annotation)",
        description="Annotate one node of a map, as the TUI's triage keys do; each change is committed "
        f"to the map's {DB_NAME} before the command says so. With no change, prints the annotation. "
        "With --undo, reverts your latest change to the node, as `u` does in the explorer.",
        epilog=f"statuses: {STATUSES_HELP}",
    )
    add_triage_arguments(annotate)
    annotate.add_argument("node", help=NODE_HELP)
    annotate.add_argument(
        "--status", default=None, metavar="S", help=f"triage status: {', '.join(DEFAULT_STATUSES)} (see below)"
    )
    annotate.add_argument("--tag", action="append", default=[], metavar="T", help="add a tag (repeatable)")
    annotate.add_argument("--untag", action="append", default=[], metavar="T", help="remove a tag (repeatable)")
    annotate.add_argument("--note", default=None, metavar="TEXT", help="replace the note ('' clears it)")
    annotate.add_argument(
        "--undo", action="store_true", help=f"undo your latest change to the node (not with {CHANGE_OPTIONS})"
    )
    annotate.add_argument("--author", default=None, metavar="NAME", help="who is writing (default: config or $USER)")
    annotate.set_defaults(run=cmd_annotate)

    status = subparsers.add_parser(
        "triage-status",
        help="how far triage has got: nodes per status, reviewed / total, orphans",
        description="Count the current tree's nodes per triage status.",
    )
    add_triage_arguments(status)
    status.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    status.set_defaults(run=cmd_triage_status)


# -- annotate ----------------------------------------------------------------------------------


def _describe(node_id: str, status: str, tags: Iterable[str], note: str) -> str:
    """'ID status=S tags=a,b note="…"': one annotation on one line, the note cut to 60 characters."""
    tag_text = ",".join(tags) or "-"
    note_text = json.dumps(" ".join(note.split())[:60], ensure_ascii=False) if note else '""'
    return f"{node_id} status={status} tags={tag_text} note={note_text}"


def display_title(reader: MapReader, node_id: str) -> str:
    """The node's name as the explorer shows it (the root by its latent; a node gone from the tree by its id)."""
    from vista_tui.core.titles import node_title

    try:
        node = reader.node(node_id)
    except KeyError:
        return node_id[:12]
    return f"latent {reader.manifest.provenance.latent}" if node.kind == "root" else node_title(node)


def cmd_annotate(args: argparse.Namespace) -> int:
    """Apply the requested changes (each one committed), or undo one; 0 saved, 2 bad input."""
    changes = args.status is not None or args.tag or args.untag or args.note is not None
    if args.undo and changes:
        return fail(f"--undo cannot be combined with {CHANGE_OPTIONS}")
    undone: HistoryEntry | None = None
    try:
        config = triage_config(args)
        reader = open_map(args)
        map_dir = reader.path
        node_id = resolve_node_id(reader, args.node)
        if args.status is not None and args.status not in config.statuses:
            raise ValueError(f"unknown status {args.status!r}; the statuses are: {', '.join(config.statuses)}")
        session = TriageSession.open(map_dir, tree_members(reader), config, write=bool(changes) or args.undo)
        try:
            if args.undo:
                undone = session.undo(node_id)
                if undone is None:
                    raise ValueError(f"nothing to undo: {config.author} has no change to node {node_id} left")
            if args.status is not None:
                session.set_status(node_id, args.status)
            for tag in args.tag:
                session.add_tag(node_id, tag)
            for tag in args.untag:
                if session.get(node_id) is not None:
                    session.remove_tag(node_id, tag)
            if args.note is not None:
                session.set_note(node_id, args.note)
            annotation = session.get(node_id)
        finally:
            session.close()
    except (MapError, AnnotationError, ValueError) as error:
        return fail(error)
    if undone is not None:
        print(undo_message(display_title(reader, undone.node_id), undone))
    elif annotation is None:
        print(_describe(node_id, config.statuses[0], (), "") + " (not annotated)")
    else:
        print(("saved " if changes else "") + _describe(node_id, annotation.status, annotation.tags, annotation.note))
    return 0


# -- triage-status -----------------------------------------------------------------------------


def cmd_triage_status(args: argparse.Namespace) -> int:
    """Print nodes per status over the current tree; 0 done, 2 bad input."""
    try:
        with reading(args) as (reader, config, store, members):
            session = TriageSession(store, members, config.statuses, config.author)
            progress, orphans = session.progress(), session.orphan_count()
    except (MapError, AnnotationError, ValueError) as error:
        return fail(error)
    counts, reviewed, total = progress.counts, progress.reviewed, progress.total
    if args.json:
        print(
            json.dumps(
                {"map": reader.path.name, "counts": counts, "reviewed": reviewed, "total": total, "orphans": orphans}
            )
        )
        return 0
    width = max(len(status) for status in counts)
    percent = 100.0 * reviewed / total if total else 0.0
    print(f"{reader.path.name}: {reviewed} / {total} nodes reviewed ({percent:.0f} %)")
    for status, count in counts.items():
        print(f"  {status:<{width}}  {count}")
    print(f"orphaned annotations: {orphans}")
    return 0
