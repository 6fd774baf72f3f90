"""Headless triage: `vista annotate`, `vista triage-status`, `vista export`, `vista import-explanations`.

Each command opens the map's annotations (vista_tui.core.annotations) the way the TUI does and,
when the map is writable, first reattaches annotations to the current tree (`reconcile`),
so a rebuilt map is handled the same from the keyboard and from a script. Errors are one
line on stderr, `error: …`, with exit status 2.

Export schema (version 1; one row per node of the current tree, parents before children,
then one row per annotation whose node is no longer in the tree, with kind "orphan"):

| column              | type           | meaning                                                       |
|---------------------|----------------|---------------------------------------------------------------|
| node_id             | string         | stable node id (hash of the sorted member context ids)        |
| parent_id           | string / null  | parent's node id; null for the root and for orphans           |
| depth               | int / null     | 0 for the root; null for orphans                              |
| kind                | string         | root, cluster, noise, or orphan                               |
| size                | int            | number of member contexts                                     |
| keywords            | list[string]   | offline keywords (class-based TF-IDF); empty for orphans      |
| visual_prompt       | string         | the prompt the node is rendered from                          |
| llm_label           | string         | an LLM's name for the node ("" when none)                     |
| status              | string         | triage status; the first configured status when not annotated |
| tags                | list[string]   | tags, in the order they were added                            |
| note                | string         | free-text note                                                |
| author              | string         | who made the latest change ("" when not annotated)            |
| updated             | string         | ISO-8601 UTC time of the latest change ("" when not annotated)|
| member_context_ids  | list[string]   | the member context ids, sorted                                |

JSONL writes lists as JSON arrays and null as null; CSV writes lists as JSON arrays in one
cell and null as an empty cell; Parquet uses list<string> and nullable int64 columns.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.core.annotations import AnnotationError, AnnotationStore, TriageConfig, load_config
from vista_tui.core.triage import TriageSession, tree_members
from vista_tui.mapdata import MapError, Store, atomic_write, read_manifest, resolve_store, utc_now
from vista_tui.mapdata.store import EXPLANATIONS_FILE

if TYPE_CHECKING:
    from vista_tui.mapdata import MapReader

EXIT_BAD_INPUT = 2
EXPORT_SCHEMA_VERSION = 1
EXPORT_COLUMNS = (
    "node_id",
    "parent_id",
    "depth",
    "kind",
    "size",
    "keywords",
    "visual_prompt",
    "llm_label",
    "status",
    "tags",
    "note",
    "author",
    "updated",
    "member_context_ids",
)
LIST_COLUMNS = ("keywords", "tags", "member_context_ids")


def _error(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
    return code


def _reader(map_dir: Path) -> MapReader:
    # Here, not at the top: building the CLI's parser (every `vista` command) needs no numpy or pyarrow.
    from vista_tui.mapdata import MapReader

    return MapReader(map_dir)


def _map_dir(args: argparse.Namespace) -> Path:
    return Store(resolve_store(getattr(args, "cache", None))).find_map(args.map)


def open_store(
    map_dir: Path, reader: MapReader, config: TriageConfig, write: bool
) -> tuple[AnnotationStore, dict[str, list[str]]]:
    """The map's annotations, reconciled with its current tree when they can be written."""
    session = TriageSession.open(map_dir, tree_members(reader), config, write=write)
    assert session.store is not None  # open() raises instead of returning a session without a store
    return session.store, session.tree


def resolve_node_id(reader: MapReader, name: str) -> str:
    """A node id from a full id, a unique prefix of one, or 'root' (ValueError otherwise)."""
    if name == "root":
        return reader.root.node_id
    ids = [node.node_id for node in reader.tree]
    if name in ids:
        return name
    matches = [node_id for node_id in ids if node_id.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"node {name!r} is ambiguous in map {reader.path.name}: {', '.join(matches[:4])} …")
    raise ValueError(f"map {reader.path.name} has no node {name!r} (`vista summary {reader.path.name}` lists them)")


def _config(args: argparse.Namespace) -> TriageConfig:
    config = load_config(Path(args.config) if getattr(args, "config", None) else None)
    author = getattr(args, "author", None)
    if author is not None:
        if not author.strip():
            raise ValueError("--author cannot be empty")
        config = TriageConfig(statuses=config.statuses, author=author.strip())
    return config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("map", help="map id in the store, or path to a map directory")
    parser.add_argument("--config", metavar="FILE", default=None, help="triage config (default: $VISTA_CONFIG)")
    parser.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")


def add_annotate_parsers(subparsers: Any) -> None:
    """Add `annotate`, `triage-status`, `export` and `import-explanations` (each sets `run=cmd_…`)."""
    annotate = subparsers.add_parser(
        "annotate",
        help="set a node's triage status, tags or note (prints the annotation)",
        description="Annotate one node of a map, as the TUI's triage keys do; each change is committed "
        "to the map's annotations.sqlite before the command says so. With no change, prints the annotation.",
    )
    _common(annotate)
    annotate.add_argument("node", help="node id, a unique prefix of one, or 'root'")
    annotate.add_argument("--status", default=None, help="triage status (see `vista triage-status`)")
    annotate.add_argument("--tag", action="append", default=[], metavar="T", help="add a tag (repeatable)")
    annotate.add_argument("--untag", action="append", default=[], metavar="T", help="remove a tag (repeatable)")
    annotate.add_argument("--note", default=None, metavar="TEXT", help="replace the note ('' clears it)")
    annotate.add_argument("--author", default=None, metavar="NAME", help="who is writing (default: config or $USER)")
    annotate.set_defaults(run=cmd_annotate)

    status = subparsers.add_parser(
        "triage-status",
        help="how far triage has got: nodes per status, reviewed / total, orphans",
        description="Count the current tree's nodes per triage status.",
    )
    _common(status)
    status.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    status.set_defaults(run=cmd_triage_status)

    export = subparsers.add_parser(
        "export",
        help="write every node with its labels and annotation as JSONL, CSV or Parquet",
        description="One row per node (and per orphaned annotation); the schema is documented in "
        "vista_tui/annotate_cli.py.",
    )
    _common(export)
    export.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="default: jsonl")
    export.add_argument("--output", metavar="FILE", default=None, help="default: stdout (jsonl and csv only)")
    export.set_defaults(run=cmd_export)

    explanations = subparsers.add_parser(
        "import-explanations",
        help="import a Neuronpedia explanations export for the map's latent",
        description="Read a Neuronpedia explanations export (a JSON list or JSON lines of objects with "
        "'description' or 'explanation'), keep those for the map's latent (by 'index'; all when the file "
        f"has no index) and store them in the map directory as {EXPLANATIONS_FILE}.",
    )
    explanations.add_argument("map", help="map id in the store, or path to a map directory")
    explanations.add_argument("file", help="the export (.json or .jsonl)")
    explanations.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")
    explanations.set_defaults(run=cmd_import_explanations)


# -- annotate ----------------------------------------------------------------------------------


def _describe(node_id: str, status: str, tags: Iterable[str], note: str) -> str:
    tag_text = ",".join(tags) or "-"
    note_text = json.dumps(" ".join(note.split())[:60], ensure_ascii=False) if note else '""'
    return f"{node_id} status={status} tags={tag_text} note={note_text}"


def cmd_annotate(args: argparse.Namespace) -> int:
    """Apply the requested changes (each one committed); 0 saved, 2 bad input."""
    try:
        config = _config(args)
        map_dir = _map_dir(args)
        reader = _reader(map_dir)
        node_id = resolve_node_id(reader, args.node)
        if args.status is not None and args.status not in config.statuses:
            raise ValueError(f"unknown status {args.status!r}; the statuses are: {', '.join(config.statuses)}")
        changes = args.status is not None or args.tag or args.untag or args.note is not None
        session = TriageSession.open(map_dir, tree_members(reader), config, write=bool(changes))
        try:
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
        return _error(str(error))
    if annotation is None:
        print(_describe(node_id, config.statuses[0], (), "") + " (not annotated)")
    else:
        print(("saved " if changes else "") + _describe(node_id, annotation.status, annotation.tags, annotation.note))
    return 0


@contextmanager
def reading(
    args: argparse.Namespace,
) -> Iterator[tuple[MapReader, TriageConfig, AnnotationStore, dict[str, list[str]]]]:
    """The map, config and store of a reading command (reconciled when the store exists and can be
    written, else read-only); the store is closed on leaving."""
    map_dir = _map_dir(args)
    reader = _reader(map_dir)
    config = _config(args)
    writable = (map_dir / "annotations.sqlite").exists()
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


# -- triage-status -----------------------------------------------------------------------------


def cmd_triage_status(args: argparse.Namespace) -> int:
    """Print nodes per status over the current tree; 0 done, 2 bad input."""
    try:
        with reading(args) as (reader, config, store, members):
            session = TriageSession(store, members, config.statuses, config.author)
            progress, orphans = session.progress(), session.orphan_count()
    except (MapError, AnnotationError, ValueError) as error:
        return _error(str(error))
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


# -- export ------------------------------------------------------------------------------------


def export_rows(reader: MapReader, store: AnnotationStore, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """The export's rows (schema in the module docstring)."""
    ids = reader.context_ids
    annotations = store.all()
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for node in reader.tree:
        note = annotations.get(node.node_id)
        seen.add(node.node_id)
        rows.append(
            {
                "node_id": node.node_id,
                "parent_id": node.parent_id,
                "depth": int(node.depth),
                "kind": str(node.kind),
                "size": int(node.size),
                "keywords": [str(k) for k in node.labels.keywords],
                "visual_prompt": node.labels.visual_prompt,
                "llm_label": node.labels.llm_label,
                "status": note.status if note else statuses[0],
                "tags": list(note.tags) if note else [],
                "note": note.note if note else "",
                "author": note.author if note else "",
                "updated": note.updated if note else "",
                "member_context_ids": sorted(ids[int(i)] for i in node.members),
            }
        )
    for node_id in sorted(set(annotations) - seen):
        note = annotations[node_id]
        member_ids = sorted(store.members(node_id))
        rows.append(
            {
                "node_id": node_id,
                "parent_id": None,
                "depth": None,
                "kind": "orphan",
                "size": len(member_ids),
                "keywords": [],
                "visual_prompt": "",
                "llm_label": "",
                "status": note.status,
                "tags": list(note.tags),
                "note": note.note,
                "author": note.author,
                "updated": note.updated,
                "member_context_ids": member_ids,
            }
        )
    return rows


def export_schema() -> Any:
    """The Parquet schema of the export."""
    import pyarrow as pa

    types = {"depth": pa.int64(), "size": pa.int64()}
    fields = [
        pa.field(name, pa.list_(pa.string()) if name in LIST_COLUMNS else types.get(name, pa.string()))
        for name in EXPORT_COLUMNS
    ]
    return pa.schema(fields, metadata={"vista_export_schema": str(EXPORT_SCHEMA_VERSION)})


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: json.dumps(value, ensure_ascii=False) if key in LIST_COLUMNS else ("" if value is None else value)
                for key, value in row.items()
            }
        )
    return buffer.getvalue().encode("utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export to --output (or stdout); 0 done, 2 bad input."""
    if args.format == "parquet" and not args.output:
        return _error("--format parquet needs --output FILE (Parquet is not written to a terminal)")
    try:
        with reading(args) as (reader, config, store, _):
            rows = export_rows(reader, store, config.statuses)
        if args.format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows, schema=export_schema())
            atomic_write(Path(args.output), lambda handle: pq.write_table(table, handle))
        else:
            data = _jsonl(rows) if args.format == "jsonl" else _csv(rows)
            if args.output:
                atomic_write(Path(args.output), lambda handle: handle.write(data))
            else:
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
    except (MapError, AnnotationError, ValueError, OSError) as error:
        return _error(str(error))
    if args.output:
        print(f"exported {len(rows)} rows to {args.output}", file=sys.stderr)
    return 0


# -- import-explanations -----------------------------------------------------------------------


def read_explanations(path: Path) -> list[dict[str, Any]]:
    """The objects of a Neuronpedia explanations export (JSON list, {'explanations': [...]}, or JSONL)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path} ({error})") from None
    try:
        parsed: Any = json.loads(text)
    except json.JSONDecodeError:
        parsed = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is neither JSON nor JSON lines ({error.msg})") from None
    if isinstance(parsed, dict):
        parsed = parsed.get("explanations", [parsed])
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise ValueError(f"{path} should hold a list of explanation objects")
    return parsed


def _explanation(item: dict[str, Any], number: int, path: Path) -> dict[str, Any]:
    text = item.get("description", item.get("explanation"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{path} item {number} has no 'description' or 'explanation' text")
    score = item.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    return {
        "description": text.strip(),
        "model_id": item.get("modelId"),
        "layer": item.get("layer"),
        "index": item.get("index"),
        "explanation_model": item.get("explanationModelName"),
        "score": score if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
    }


def _index_of(item: dict[str, Any]) -> int | None:
    index = item.get("index")
    if index is None:
        return None
    try:
        return int(str(index).strip())
    except ValueError:
        return None


def cmd_import_explanations(args: argparse.Namespace) -> int:
    """Store the explanations of the map's latent in `<map>/explanations.json`; 0 done, 2 bad input."""
    try:
        map_dir = _map_dir(args)
        latent = read_manifest(map_dir).provenance.latent
        path = Path(args.file)
        items = read_explanations(path)
        if not items:
            raise ValueError(f"{path} holds no explanations")
        has_index = any(item.get("index") is not None for item in items)
        kept = [
            _explanation(item, number, path)
            for number, item in enumerate(items, start=1)
            if not has_index or _index_of(item) == latent
        ]
        if not kept:
            indices = sorted({str(item.get("index")) for item in items})
            raise ValueError(
                f"no explanation in {path} is for latent {latent} of map {map_dir.name} "
                f"(its indices: {', '.join(indices[:5])}{' …' if len(indices) > 5 else ''})"
            )
        target = map_dir / EXPLANATIONS_FILE
        existing: list[dict[str, Any]] = []
        if target.is_file():
            try:
                existing = list(json.loads(target.read_text(encoding="utf-8")).get("explanations", []))
            except (OSError, ValueError, AttributeError):
                raise ValueError(f"{target} is unreadable; move it aside and import again") from None
        now = utc_now()
        keys = {(e.get("description"), e.get("model_id"), e.get("explanation_model")) for e in existing}
        added = 0
        for explanation in kept:
            key = (explanation["description"], explanation["model_id"], explanation["explanation_model"])
            if key not in keys:
                keys.add(key)
                existing.append({**explanation, "source": str(path), "imported": now})
                added += 1
        payload = {"schema_version": 1, "latent": latent, "explanations": existing}
        data = json.dumps(payload, indent=2, ensure_ascii=False).encode("utf-8")
        atomic_write(target, lambda handle: handle.write(data))
    except (MapError, ValueError, OSError) as error:
        return _error(str(error))
    print(
        f"imported {added} explanation{'s' if added != 1 else ''} for latent {latent} into {target}"
        + (f" ({len(kept) - added} already there)" if len(kept) != added else "")
    )
    return 0
