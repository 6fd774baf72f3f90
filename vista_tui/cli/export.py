"""`vista export`: every node of a map with its labels, scores and annotation, as JSONL, CSV or Parquet.

The map and its annotations are opened as `vista triage-status` opens them (`triage.reading`):
the same checks, the same reconcile, the same one-line errors. The schema is `EXPORT_FIELDS`,
and `vista export --help` prints it (`schema_help`), so users read it where they run the command.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.cli.console import fail
from vista_tui.cli.triage import add_triage_arguments, reading
from vista_tui.core.annotations import AnnotationError, AnnotationStore
from vista_tui.mapdata import READING_KINDS, SCORERS, MapError, atomic_write, map_scores

if TYPE_CHECKING:
    from vista_tui.mapdata import MapReader, MapScores

EXPORT_SCHEMA_VERSION = 2
"""2 added the score columns."""
SCORE_COLUMNS = tuple(f"score_{kind}_{scorer}" for kind in READING_KINDS for scorer in SCORERS)
"""One column per reading and scorer: `score_<reading>_<scorer>`."""
_SCORE_MEANING = {
    "detection": "an LLM's balanced accuracy",
    "fuzzing": "an LLM's balanced accuracy",
    "embedding": "MiniLM cosine's ROC AUC",
}
EXPORT_FIELDS = (
    ("node_id", "string", "stable node id (hash of the sorted member context ids)"),
    ("parent_id", "string/null", "parent's node id; null for the root and for orphans"),
    ("depth", "int/null", "0 for the root; null for orphans"),
    ("kind", "string", "root, cluster, noise, or orphan"),
    ("size", "int", "number of member contexts"),
    ("keywords", "list[string]", "offline keywords (class-based TF-IDF); empty for orphans"),
    ("visual_prompt", "string", "the prompt the node is rendered from"),
    ("llm_label", "string", 'an LLM\'s name for the node ("" when none)'),
    ("status", "string", "triage status; the first configured status when not annotated"),
    ("tags", "list[string]", "tags, in the order they were added"),
    ("note", "string", "free-text note"),
    ("author", "string", 'who made the latest change ("" when not annotated)'),
    ("updated", "string", 'ISO-8601 UTC time of the latest change ("" when not annotated)'),
    ("member_context_ids", "list[string]", "the member context ids, sorted"),
    *(
        (f"score_{kind}_{scorer}", "float/null", f"{kind} scored by {scorer}: {_SCORE_MEANING[scorer]}")
        for kind in READING_KINDS
        for scorer in SCORERS
    ),
)
"""The export's columns, in order: name, type, meaning (schema version `EXPORT_SCHEMA_VERSION`)."""
EXPORT_COLUMNS = tuple(name for name, _, _ in EXPORT_FIELDS)
LIST_COLUMNS = ("keywords", "tags", "member_context_ids")


def schema_help() -> str:
    """The export's schema as `vista export --help` shows it: the rows, one line per column, the formats."""
    width = max(len(name) for name in EXPORT_COLUMNS)
    type_width = max(len(kind) for _, kind, _ in EXPORT_FIELDS)
    columns = "\n".join(f"  {name:<{width}}  {kind:<{type_width}}  {meaning}" for name, kind, meaning in EXPORT_FIELDS)
    return (
        f"columns (export schema version {EXPORT_SCHEMA_VERSION}):\n{columns}\n\n"
        "A score column is null where `vista score` has not scored that reading with that scorer\n"
        "(0.5 is chance for every scorer).\n"
        "JSONL writes lists as JSON arrays and null as null; CSV writes lists as JSON arrays in one\n"
        "cell and null as an empty cell; Parquet uses list<string>, nullable int64 and float64 columns (its\n"
        f"schema metadata holds vista_export_schema={EXPORT_SCHEMA_VERSION})."
    )


def add_export_parser(subparsers: Any) -> None:
    """Add `export` to `vista`'s subcommands (sets `run=cmd_export`)."""
    export = subparsers.add_parser(
        "export",
        help="write every node with its labels, scores and annotation as JSONL, CSV or Parquet",
        description="One row per node of the map's current tree, parents before children, then one row per\n"
        'annotation whose node is no longer in the tree (kind "orphan").',
        epilog=schema_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_triage_arguments(export)
    export.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl", help="default: jsonl")
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default=None,
        help="write FILE (atomically) instead of stdout; Parquet goes to stdout only when it is redirected "
        "to a file or a pipe, not to a terminal",
    )
    export.set_defaults(run=cmd_export)


def export_rows(reader: MapReader, store: AnnotationStore, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    """The export's rows (columns: `EXPORT_FIELDS`)."""
    ids = reader.context_ids
    annotations = store.all()
    scores = map_scores(reader.path)
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
                **score_cells(scores, node.node_id),
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
                **dict.fromkeys(SCORE_COLUMNS),
            }
        )
    return rows


def score_cells(scores: MapScores, node_id: str) -> dict[str, float | None]:
    """A node's `score_<reading>_<scorer>` cells: the score, None where there is none (or it is NaN)."""
    cells: dict[str, float | None] = {}
    for kind in READING_KINDS:
        for scorer in SCORERS:
            found = scores.get(node_id, kind, scorer)
            value = None if found is None else found.score
            cells[f"score_{kind}_{scorer}"] = value if value is not None and math.isfinite(value) else None
    return cells


def export_schema() -> Any:
    """The Parquet schema of the export."""
    import pyarrow as pa

    types = {"depth": pa.int64(), "size": pa.int64()} | dict.fromkeys(SCORE_COLUMNS, pa.float64())
    fields = [
        pa.field(name, pa.list_(pa.string()) if name in LIST_COLUMNS else types.get(name, pa.string()))
        for name in EXPORT_COLUMNS
    ]
    return pa.schema(fields, metadata={"vista_export_schema": str(EXPORT_SCHEMA_VERSION)})


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    """The rows as JSON lines."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _csv(rows: list[dict[str, Any]]) -> bytes:
    """The rows as CSV: lists as JSON arrays in one cell, null as an empty cell."""
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


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    """The rows as a Parquet file (schema `export_schema`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=export_schema()), buffer)
    return buffer.getvalue()


def cmd_export(args: argparse.Namespace) -> int:
    """Write the export to --output (or stdout); 0 done, 2 bad input."""
    # Parquet is binary: refused only where it would land on a screen. A redirect to a file or a
    # pipe is what the user asked for.
    if args.format == "parquet" and not args.output and sys.stdout.isatty():
        return fail("--format parquet is binary and stdout is a terminal: redirect it (> FILE, | …) or give -o FILE")
    try:
        with reading(args) as (reader, config, store, _):
            rows = export_rows(reader, store, config.statuses)
        encode = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[args.format]
        data = encode(rows)
        if args.output:
            atomic_write(Path(args.output), lambda handle: handle.write(data))
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    except (MapError, AnnotationError, ValueError, OSError) as error:
        return fail(error)
    if args.output:
        print(f"exported {len(rows)} rows to {args.output}", file=sys.stderr)
    return 0
