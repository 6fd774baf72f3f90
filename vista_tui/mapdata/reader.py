"""Reads a map lazily: the manifest at open, every other file on first use.

pyarrow is imported on the first parquet read, not with this module: a map with an opening file
(`vista_tui.mapdata.opening`) gives its tree and small columns without it, and the explorer draws
its first frame before pyarrow loads.
"""

from __future__ import annotations

import json
import zipfile
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vista_tui.mapdata.errors import MapCorruptError
from vista_tui.mapdata.schema import (
    ClusterNode,
    Context,
    FidelityCurve,
    SparseCodes,
)
from vista_tui.mapdata.store import REBUILD_HINT, checked_file, read_manifest, verify_files

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vista_tui.mapdata.opening import Opening


def read_sparse_npz(path: Path) -> SparseCodes:
    """CSR rows saved as .npz (`indptr`, `indices`, `values`, `n_latents`), values as float32; raises
    OSError, KeyError, ValueError or zipfile.BadZipFile for a file it cannot read."""
    with np.load(path, allow_pickle=False) as archive:
        return SparseCodes(
            indptr=archive["indptr"].astype(np.int64),
            indices=archive["indices"].astype(np.int32),
            values=archive["values"].astype(np.float32),
            n_latents=int(archive["n_latents"]),
        )


class MapReader:
    """One map on disk. Opening reads only the manifest; tables load when first asked for."""

    def __init__(self, map_dir: Path | str) -> None:
        self.path = Path(map_dir)
        self.manifest = read_manifest(self.path)

    # -- files -----------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        return checked_file(self.path, self.manifest, key)

    def verify(self) -> None:
        """Check that every file the manifest lists is there with its recorded size (raises MapCorruptError)."""
        verify_files(self.path, self.manifest)

    def has(self, key: str) -> bool:
        return key in self.manifest.files

    def _parquet(self, key: str) -> pq.ParquetFile:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self._file(key)
        try:
            return pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as error:
            raise MapCorruptError(
                f"{path.name} in map {self.path.name} is unreadable ({error}): {REBUILD_HINT}"
            ) from None

    def _read(self, key: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow as pa

        parquet = self._parquet(key)
        try:
            return parquet.read(columns=columns)
        except (pa.ArrowException, OSError) as error:
            raise MapCorruptError(
                f"{self.manifest.files[key].name} in map {self.path.name} is unreadable ({error}): {REBUILD_HINT}"
            ) from None

    @cached_property
    def opening(self) -> Opening | None:
        """The map's opening file when it is current (see `vista_tui.mapdata.opening`), else None."""
        from vista_tui.mapdata.opening import read_opening

        return read_opening(self.path, self.manifest)

    # -- contexts --------------------------------------------------------------------------

    @cached_property
    def n_contexts(self) -> int:
        return int(self.group_rows.sum())

    @cached_property
    def group_rows(self) -> np.ndarray:
        """Rows in each row group of the contexts file, (G,) int64."""
        if self.opening is not None:
            return self.opening.group_rows
        metadata = self._parquet("contexts").metadata
        return np.array([metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)], dtype=np.int64)

    @property
    def first_page(self) -> dict[int, Context]:
        """The root's strongest contexts by row, from the opening file (empty without one)."""
        return self.opening.first_page if self.opening is not None else {}

    def contexts_file(self) -> pq.ParquetFile:
        """The contexts file, open for reading a row group at a time (its size checked first)."""
        return self._parquet("contexts")

    def contexts_table(self, columns: list[str] | None = None) -> pa.Table:
        """The contexts table (only the named columns, if given)."""
        return self._read("contexts", columns)

    @cached_property
    def activations(self) -> np.ndarray:
        if self.opening is not None:
            return self.opening.activations
        return float32_column(self.contexts_table(["activation"]).column(0))

    @cached_property
    def layout(self) -> np.ndarray:
        """(N, 2) float32 layout positions."""
        if self.opening is not None:
            return self.opening.layout
        table = self.contexts_table(["x", "y"])
        return np.column_stack([float32_column(table.column(0)), float32_column(table.column(1))])

    @cached_property
    def context_ids(self) -> list[str]:
        if self.opening is not None:
            return self.opening.context_ids
        return self.contexts_table(["context_id"]).column(0).to_pylist()

    def contexts(self, rows: np.ndarray | list[int]) -> list[Context]:
        """The contexts at the given row indices, in that order."""
        import pyarrow as pa

        table = self.contexts_table().take(pa.array(np.asarray(rows, dtype=np.int64)))
        return [context_from_row(row) for row in table.to_pylist()]

    def context(self, row: int) -> Context:
        return self.contexts([row])[0]

    # -- tree, codes, fidelity -------------------------------------------------------------

    @cached_property
    def tree(self) -> list[ClusterNode]:
        """The cluster nodes, parents before children."""
        if self.opening is not None:
            return self.opening.nodes
        return [ClusterNode.from_row(row) for row in self._read("tree").to_pylist()]

    def node(self, node_id: str) -> ClusterNode:
        for node in self.tree:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def children(self, node_id: str) -> list[ClusterNode]:
        return [node for node in self.tree if node.parent_id == node_id]

    @property
    def root(self) -> ClusterNode:
        return self.tree[0]

    @cached_property
    def codes(self) -> SparseCodes:
        path = self._file("codes")
        try:
            return read_sparse_npz(path)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise MapCorruptError(
                f"{path.name} in map {self.path.name} is unreadable ({error}): {REBUILD_HINT}"
            ) from None

    @cached_property
    def fidelity(self) -> FidelityCurve | None:
        if not self.has("fidelity"):
            return None
        path = self._file("fidelity")
        try:
            return FidelityCurve.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise MapCorruptError(
                f"{path.name} in map {self.path.name} is unreadable ({error}): {REBUILD_HINT}"
            ) from None


def float32_column(column: pa.ChunkedArray) -> np.ndarray:
    """A float column as a float32 array, straight from Arrow's buffers.

    pyarrow's `to_numpy` imports pandas whenever it is installed (it is, with the pipeline):
    that costs the TUI ~300 ms and ~40 MB at start-up, for a copy we can make in microseconds.
    """
    import pyarrow as pa

    parts = []
    for chunk in column.chunks:
        if chunk.null_count or not pa.types.is_float32(chunk.type):
            parts.append(np.asarray(chunk.to_pylist(), dtype=np.float32))
        else:
            parts.append(np.frombuffer(chunk.buffers()[1], np.float32, count=len(chunk), offset=chunk.offset * 4))
    return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def context_from_row(row: dict[str, Any]) -> Context:
    """One row of the contexts table (as `pa.Table.to_pylist` gives it) as a Context."""
    return Context(
        context_id=row["context_id"],
        doc_id=row["doc_id"],
        text=row["text"],
        tokens=list(row["tokens"] or []),
        focus=int(row["focus"]),
        activation=float(row["activation"]),
        token_activations=[float(v) for v in row["token_activations"] or []],
        x=float(row["x"]) if row["x"] is not None else float("nan"),
        y=float(row["y"]) if row["y"] is not None else float("nan"),
        leaf_node=row["leaf_node"] or "",
    )


_STRING_COLUMNS = ("context_id", "doc_id", "text", "leaf_node")


def context_from_table(table: pa.Table) -> Context:
    """The first row of a slice of the contexts table as a Context, invalid UTF-8 replaced, not raised.

    A corpus or a foreign writer can leave invalid UTF-8 in a map; one bad row must not stop a screen.
    """
    import pyarrow as pa

    try:
        return context_from_row(table.slice(0, 1).to_pylist()[0])
    except UnicodeDecodeError:
        pass
    # Strings viewed as bytes skip UTF-8 validation; decode them leniently.
    lenient = table.slice(0, 1)
    for name in _STRING_COLUMNS:
        index = lenient.schema.get_field_index(name)
        lenient = lenient.set_column(index, name, lenient.column(name).cast(pa.binary()))
    tokens = lenient.column("tokens").cast(pa.list_(pa.binary()))
    lenient = lenient.set_column(lenient.schema.get_field_index("tokens"), "tokens", tokens)
    row = lenient.to_pylist()[0]
    for name in _STRING_COLUMNS:
        row[name] = (row[name] or b"").decode("utf-8", errors="replace")
    row["tokens"] = [(t or b"").decode("utf-8", errors="replace") for t in row["tokens"] or []]
    return context_from_row(row)


def map_root_id(map_dir: Path) -> str:
    """The root node id of a map (the tree's first row), read without the rest of the tree; one-line MapError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    map_dir = Path(map_dir)
    path = checked_file(map_dir, read_manifest(map_dir), "tree")
    try:
        ids = pq.ParquetFile(path).read_row_group(0, columns=["node_id"]).column(0)
    except (pa.ArrowException, OSError, IndexError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(f"{path.name} in map {map_dir.name} is unreadable ({why}): {REBUILD_HINT}") from None
    if len(ids) == 0:
        raise MapCorruptError(f"{path.name} in map {map_dir.name} has no nodes: {REBUILD_HINT}")
    return str(ids[0].as_py())
