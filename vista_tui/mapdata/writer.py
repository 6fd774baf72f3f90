"""Writes a map: every file to a temporary name then renamed, the manifest last.

A reader trusts only files the manifest lists with the size it records, so a build
that dies half-way leaves either the previous map or one that says it is torn —
never a half map that looks whole. annotations.sqlite and renders/ are never touched.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vista_tui.mapdata.atomic import atomic_write, atomic_write_json, utc_now
from vista_tui.mapdata.opening import FIRST_PAGE, OPENING_FILE, file_source, rows_by_activation, write_opening_file
from vista_tui.mapdata.schema import (
    SCHEMA_VERSION,
    ClusterNode,
    FidelityCurve,
    FileEntry,
    Manifest,
    Provenance,
    SparseCodes,
    StepRecord,
)
from vista_tui.mapdata.store import MANIFEST

CONTEXTS_FILE = "contexts.parquet"
CODES_FILE = "codes.npz"
TREE_FILE = "tree.parquet"
FIDELITY_FILE = "fidelity.json"

CONTEXTS_SCHEMA = pa.schema(
    [
        ("context_id", pa.string()),
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("tokens", pa.list_(pa.string())),
        ("focus", pa.int32()),
        ("activation", pa.float32()),
        ("token_activations", pa.list_(pa.float32())),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("leaf_node", pa.string()),
    ]
)

FOCUS_TOKEN_TYPE = pa.struct(
    [("token", pa.string()), ("count", pa.int32()), ("mass", pa.float32()), ("score", pa.float32())]
)
"""One entry of a node's `focus_tokens` (see `FocusToken`)."""

TREE_SCHEMA = pa.schema(
    [
        ("node_id", pa.string()),
        ("parent_id", pa.string()),
        ("depth", pa.int32()),
        ("kind", pa.string()),
        ("size", pa.int32()),
        ("members", pa.list_(pa.int32())),
        ("centroid_x", pa.float32()),
        ("centroid_y", pa.float32()),
        ("bbox", pa.list_(pa.float32(), 4)),
        ("mean_activation", pa.float32()),
        ("max_activation", pa.float32()),
        ("stability", pa.float32()),
        ("keywords", pa.list_(pa.string())),
        ("focus_tokens", pa.list_(FOCUS_TOKEN_TYPE)),
        ("visual_prompt", pa.string()),
        ("llm_label", pa.string()),
        ("llm_explanation", pa.string()),
        ("label_status", pa.string()),
        ("agreement", pa.float32()),
    ]
)


def contexts_table(
    *,
    context_ids: Sequence[str],
    doc_ids: Sequence[str],
    texts: Sequence[str],
    tokens: Sequence[Sequence[str]],
    focus: np.ndarray,
    activations: np.ndarray,
    token_activations: Sequence[Sequence[float]],
    xy: np.ndarray | None = None,
    leaf_nodes: Sequence[str] | None = None,
) -> pa.Table:
    """The contexts table in the on-disk schema (x, y, leaf_node empty until layout and clustering)."""
    n = len(context_ids)
    if xy is None:
        xy = np.full((n, 2), np.nan, dtype=np.float32)
    return pa.table(
        {
            "context_id": pa.array(list(context_ids), pa.string()),
            "doc_id": pa.array(list(doc_ids), pa.string()),
            "text": pa.array(list(texts), pa.string()),
            "tokens": pa.array([list(t) for t in tokens], pa.list_(pa.string())),
            "focus": pa.array(np.asarray(focus, dtype=np.int32)),
            "activation": pa.array(np.asarray(activations, dtype=np.float32)),
            "token_activations": pa.array(
                [np.asarray(t, dtype=np.float32) for t in token_activations], pa.list_(pa.float32())
            ),
            "x": pa.array(np.asarray(xy[:, 0], dtype=np.float32)),
            "y": pa.array(np.asarray(xy[:, 1], dtype=np.float32)),
            "leaf_node": pa.array(list(leaf_nodes) if leaf_nodes is not None else [""] * n, pa.string()),
        },
        schema=CONTEXTS_SCHEMA,
    )


def tree_table(nodes: Sequence[ClusterNode]) -> pa.Table:
    """The tree in the on-disk schema, one row per node, parents before children."""
    columns: dict[str, list[Any]] = {name: [] for name in TREE_SCHEMA.names}
    for node in nodes:
        columns["node_id"].append(node.node_id)
        columns["parent_id"].append(node.parent_id)
        columns["depth"].append(node.depth)
        columns["kind"].append(node.kind)
        columns["size"].append(node.size)
        columns["members"].append(np.asarray(node.members, dtype=np.int32))
        columns["centroid_x"].append(node.centroid[0])
        columns["centroid_y"].append(node.centroid[1])
        columns["bbox"].append(list(node.bbox))
        columns["mean_activation"].append(node.mean_activation)
        columns["max_activation"].append(node.max_activation)
        columns["stability"].append(node.stability)
        columns["keywords"].append(list(node.labels.keywords))
        columns["focus_tokens"].append([asdict(entry) for entry in node.labels.focus_tokens])
        columns["visual_prompt"].append(node.labels.visual_prompt)
        columns["llm_label"].append(node.labels.llm_label)
        columns["llm_explanation"].append(node.labels.llm_explanation)
        columns["label_status"].append(node.labels.label_status)
        columns["agreement"].append(node.labels.agreement)
    return pa.table(columns, schema=TREE_SCHEMA)


def _write_parquet(table: pa.Table) -> Callable[[BinaryIO], None]:
    # Row groups of 8k rows let the reader page through a 100k-context map.
    return lambda handle: pq.write_table(table, handle, row_group_size=8192, compression="zstd")


def _write_codes(codes: SparseCodes) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        np.savez(
            handle,
            indptr=codes.indptr.astype(np.int64),
            indices=codes.indices.astype(np.int32),
            values=codes.values.astype(np.float16),
            n_latents=np.int64(codes.n_latents),
        )

    return write


class MapWriter:
    """Writes one map directory; call `commit` last (it also writes the opening file)."""

    def __init__(self, map_dir: Path) -> None:
        self.map_dir = Path(map_dir)
        self._files: dict[str, FileEntry] = {}
        self._nodes: Sequence[ClusterNode] | None = None
        self._contexts: pa.Table | None = None

    def _put(self, key: str, name: str, write: Callable[[BinaryIO], None]) -> None:
        size = atomic_write(self.map_dir / name, write)
        self._files[key] = FileEntry(name=name, size=size)

    def write_contexts(self, table: pa.Table) -> None:
        self._contexts = table.cast(CONTEXTS_SCHEMA)
        self._put("contexts", CONTEXTS_FILE, _write_parquet(self._contexts))

    def write_codes(self, codes: SparseCodes) -> None:
        self._put("codes", CODES_FILE, _write_codes(codes))

    def write_tree(self, nodes: Sequence[ClusterNode]) -> None:
        self._nodes = nodes
        self._put("tree", TREE_FILE, _write_parquet(tree_table(nodes)))

    def write_fidelity(self, curve: FidelityCurve) -> None:
        data = json.dumps(curve.to_dict(), indent=2).encode("utf-8")
        self._put("fidelity", FIDELITY_FILE, lambda handle: handle.write(data))

    def commit(
        self,
        *,
        map_id: str,
        provenance: Provenance,
        steps: dict[str, StepRecord],
        previous: Manifest | None = None,
    ) -> Manifest:
        """Write the manifest naming every file written (plus those of `previous` not rewritten).

        With a tree and contexts, the opening file is written first, from them, unless neither
        changed and it is there already.
        """
        files = dict(previous.files) if previous else {}
        files.update(self._files)
        if {"tree", "contexts"} <= files.keys() and (
            {"tree", "contexts"} & self._files.keys() or "opening" not in files
        ):
            files["opening"] = self._write_opening(files)
        manifest = Manifest(
            map_id=map_id,
            provenance=provenance,
            steps=steps,
            files=files,
            created=previous.created if previous else utc_now(),
            schema_version=SCHEMA_VERSION,
        )
        atomic_write_json(self.map_dir / MANIFEST, manifest.to_dict())
        return manifest

    def _write_opening(self, files: dict[str, FileEntry]) -> FileEntry:
        """Write opening.npz from the map's tree and contexts: those written here, else the files
        (then only the columns it copies, and the row groups of the root's first page)."""
        from vista_tui.mapdata.reader import context_from_table, float32_column

        if self._nodes is not None and "tree" in self._files:
            nodes_table = tree_table(self._nodes)
            members = [np.asarray(node.members, dtype=np.int32) for node in self._nodes]
        else:
            nodes_table = pq.read_table(self.map_dir / files["tree"].name)
            members = [np.asarray(m or [], dtype=np.int32) for m in nodes_table.column("members").to_pylist()]
        parquet = pq.ParquetFile(self.map_dir / files["contexts"].name)
        group_rows = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
        written = self._contexts if "contexts" in self._files else None
        table = written if written is not None else parquet.read(columns=["context_id", "activation", "x", "y"])
        activations = float32_column(table.column("activation"))
        first = rows_by_activation(members[0], activations)[:FIRST_PAGE] if members else np.zeros(0, np.int64)
        first_page = {}
        if written is not None:
            first_page = {int(row): context_from_table(written.slice(int(row), 1)) for row in first}
        else:  # the row groups that hold the page, one at a time
            starts = np.concatenate([[0], np.cumsum(group_rows)])
            for group in sorted({int(np.searchsorted(starts, row, side="right") - 1) for row in first}):
                rows = parquet.read_row_group(group)
                for row in first[(first >= starts[group]) & (first < starts[group + 1])]:
                    first_page[int(row)] = context_from_table(rows.slice(int(row - starts[group]), 1))
        ids = table.column("context_id").cast(pa.binary()).to_pylist()
        data = {
            "source": file_source(self.map_dir, files),
            "node_rows": nodes_table.drop_columns(["members"]).to_pylist(),
            "members": members,
            "activations": activations,
            "layout": np.column_stack([float32_column(table.column("x")), float32_column(table.column("y"))]),
            "context_ids": [(i or b"").decode("utf-8", errors="replace") for i in ids],
            "group_rows": group_rows,
            "first_page": first_page,
        }
        size = atomic_write(self.map_dir / OPENING_FILE, lambda handle: write_opening_file(handle, **data))
        return FileEntry(name=OPENING_FILE, size=size)


def update_tree(map_dir: Path, manifest: Manifest, nodes: Sequence[ClusterNode], step: StepRecord) -> Manifest:
    """Rewrite only the tree (e.g. after labelling) and record the step that did it."""
    writer = MapWriter(map_dir)
    writer.write_tree(nodes)
    steps = dict(manifest.steps)
    steps[step.name] = step
    return writer.commit(map_id=manifest.map_id, provenance=manifest.provenance, steps=steps, previous=manifest)
