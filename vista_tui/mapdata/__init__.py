"""The on-disk map format: the contract between the pipeline and the TUI.

Headless: imports numpy and pyarrow, never textual, torch or the pipeline.
"""

from vista_tui.mapdata.errors import MapCorruptError, MapError, MapNotFoundError, SchemaVersionError
from vista_tui.mapdata.reader import MapReader, read_manifest
from vista_tui.mapdata.schema import (
    SCHEMA_VERSION,
    ClusterNode,
    Context,
    FidelityCurve,
    FileEntry,
    Manifest,
    NodeLabels,
    Provenance,
    SparseCodes,
    StepRecord,
    context_id_for,
    node_id_for,
)
from vista_tui.mapdata.store import MapEntry, Store, resolve_store
from vista_tui.mapdata.writer import MapWriter, atomic_write, atomic_write_json, contexts_table, update_tree, utc_now

__all__ = [
    "SCHEMA_VERSION",
    "ClusterNode",
    "Context",
    "FidelityCurve",
    "FileEntry",
    "Manifest",
    "MapCorruptError",
    "MapEntry",
    "MapError",
    "MapNotFoundError",
    "MapReader",
    "MapWriter",
    "NodeLabels",
    "Provenance",
    "SchemaVersionError",
    "SparseCodes",
    "StepRecord",
    "Store",
    "atomic_write",
    "atomic_write_json",
    "context_id_for",
    "contexts_table",
    "node_id_for",
    "read_manifest",
    "resolve_store",
    "update_tree",
    "utc_now",
]
