"""`opening.npz`: what the explorer's first frame reads, in a file that needs no pyarrow.

Opening a map from its parquet files costs pyarrow's import (~40 ms, and pyarrow loads numpy) and
three reads: the tree, the activation, x, y and context-id columns, and the row group of the
root's strongest contexts. The explorer draws its first frame from this file instead and reads
parquet after it, so the map is drawn sooner (benchmarks/tui.py, part a).

It holds copies, never anything of its own: the nodes (as the tree file's rows, members aside),
those four columns, how many rows each row group of the contexts file has, and the root's first
page of contexts (`FIRST_PAGE`, strongest first). `MapWriter.commit` writes it with every commit
that has a tree and contexts; the manifest lists it like any other file.

A copy must never be stale. It records the tree file (name, size, SHA-256) and the contexts file
(name, size, SHA-256 of its footer) it was made from, and `read_opening` uses it only when the
manifest still lists those very files and they still hash so. Else (an older map, a tree
rewritten by a tool that does not know this file, a torn or foreign file) it returns None and
the reader reads the parquet files, as it always did.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from vista_tui.mapdata.errors import MapError
from vista_tui.mapdata.schema import ClusterNode, Context, FileEntry, Manifest
from vista_tui.mapdata.store import checked_file

OPENING_FILE = "opening.npz"
OPENING_VERSION = 1
"""Bumped when the file's layout changes; a reader ignores any other version (and reads parquet)."""
FIRST_PAGE = 64
"""Contexts of the root kept here: more than the contexts panel shows at once on a tall terminal."""


@dataclass(frozen=True)
class Opening:
    """The contents of `opening.npz`, as the reader hands them out."""

    nodes: list[ClusterNode]
    activations: np.ndarray
    """(N,) float32, as the contexts file's `activation` column."""
    layout: np.ndarray
    """(N, 2) float32, its `x` and `y` columns."""
    context_ids: list[str]
    group_rows: np.ndarray
    """(G,) int64: rows in each row group of the contexts file."""
    first_page: dict[int, Context]
    """The root's strongest contexts by row (`rows_by_activation`), at most FIRST_PAGE of them."""


def rows_by_activation(members: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """`members` ordered by activation, highest first (ties keep their order): the contexts panel's order."""
    return members[np.argsort(-activations[members], kind="stable")]


TAIL_BYTES = 1 << 16
"""The contexts file is checked by its last 64 KiB (parquet's footer: its schema, row groups and
statistics), not hashed whole: it can be hundreds of MB, and the tree file is small."""


def file_source(map_dir: Path, files: dict[str, FileEntry]) -> dict[str, Any]:
    """What an opening file made from the map's current tree and contexts files records of them (raises OSError)."""
    tree, contexts = files["tree"], files["contexts"]
    with open(Path(map_dir) / contexts.name, "rb") as handle:
        handle.seek(max(0, contexts.size - TAIL_BYTES))
        tail = hashlib.sha256(handle.read(TAIL_BYTES)).hexdigest()
    return {
        "tree": {
            "name": tree.name,
            "size": tree.size,
            "sha256": hashlib.sha256((Path(map_dir) / tree.name).read_bytes()).hexdigest(),
        },
        "contexts": {"name": contexts.name, "size": contexts.size, "tail_sha256": tail},
    }


def _blob(value: Any) -> np.ndarray:
    # NaN stays NaN (json writes it as such); ensure_ascii keeps any lone surrogate readable back.
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode("ascii"), dtype=np.uint8)


def _unblob(array: np.ndarray) -> Any:
    return json.loads(array.tobytes().decode("ascii"))


def write_opening_file(
    handle: BinaryIO,
    *,
    source: dict[str, Any],
    node_rows: list[dict[str, Any]],
    members: list[np.ndarray],
    activations: np.ndarray,
    layout: np.ndarray,
    context_ids: list[str],
    group_rows: list[int],
    first_page: dict[int, Context],
) -> None:
    """Write the file's arrays to `handle` (the writer gathers them: `MapWriter.commit`).

    node_rows: the tree file's rows in its order, without `members` (`members` holds them, one array
    per node); first_page: row → context, for the rows `rows_by_activation` puts first in the root.
    """
    lengths = np.array([len(m) for m in members], dtype=np.int64)
    offsets = np.zeros(len(members) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    np.savez(
        handle,
        version=np.int64(OPENING_VERSION),
        source=_blob(source),
        nodes=_blob(node_rows),
        members=np.concatenate(members).astype(np.int32) if members else np.zeros(0, np.int32),
        member_offsets=offsets,
        activations=np.asarray(activations, dtype=np.float32),
        layout=np.asarray(layout, dtype=np.float32).reshape(-1, 2),
        context_ids=_blob(list(context_ids)),
        group_rows=np.asarray(group_rows, dtype=np.int64),
        first_rows=np.array(sorted(first_page), dtype=np.int64),
        first_contexts=_blob([asdict(first_page[row]) for row in sorted(first_page)]),
    )


def read_opening(map_dir: Path, manifest: Manifest) -> Opening | None:
    """The map's opening file, if it has one made from the tree and contexts files its manifest lists.

    None when there is none, when it is stale, torn, unreadable or of another version: the caller
    then reads the parquet files. Never raises for the file's sake.
    """
    if "opening" not in manifest.files or not {"tree", "contexts"} <= manifest.files.keys():
        return None
    try:
        path = checked_file(map_dir, manifest, "opening")
        with np.load(path, allow_pickle=False) as archive:
            if int(archive["version"]) != OPENING_VERSION:
                return None
            if _unblob(archive["source"]) != file_source(map_dir, manifest.files):
                return None
            members = archive["members"]
            offsets = archive["member_offsets"]
            rows = _unblob(archive["nodes"])
            nodes = [
                ClusterNode.from_row({**row, "members": members[offsets[i] : offsets[i + 1]]})
                for i, row in enumerate(rows)
            ]
            activations = archive["activations"]
            layout = archive["layout"]
            group_rows = archive["group_rows"]
            first_rows = archive["first_rows"].tolist()
            first_contexts = [Context(**fields) for fields in _unblob(archive["first_contexts"])]
            context_ids = _unblob(archive["context_ids"])
    except (MapError, OSError, KeyError, ValueError, TypeError, IndexError, zipfile.BadZipFile):
        return None
    n = int(group_rows.sum())
    if not (len(activations) == len(layout) == len(context_ids) == n and len(first_rows) == len(first_contexts)):
        return None
    return Opening(
        nodes=nodes,
        activations=activations,
        layout=layout,
        context_ids=context_ids,
        group_rows=group_rows,
        first_page=dict(zip(first_rows, first_contexts, strict=True)),
    )
