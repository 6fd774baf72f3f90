"""The on-disk map format: the contract between the pipeline and the TUI.

Headless: numpy and pyarrow, never textual, torch or the pipeline. The names load on first
use (PEP 562), so that what needs only the manifest and the store — the CLI, the picker, the
first screen of the explorer — starts without importing numpy or pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vista_tui.mapdata.agreement import (
        AGREEMENT_FILE,
        LatentAgreement,
        cluster_agreement,
        read_agreement,
        write_agreement,
    )
    from vista_tui.mapdata.atlas import (
        ATLAS_MANIFEST,
        ATLAS_SCHEMA_VERSION,
        ATLASES_DIR,
        LATENTS_FILE,
        Atlas,
        AtlasEntry,
        AtlasManifest,
        LatentRow,
        is_atlas_dir,
        latents_schema,
        latents_table,
        map_root_id,
        read_atlas,
        read_atlas_manifest,
        read_latents,
        update_latent_rows,
        write_atlas,
    )
    from vista_tui.mapdata.atomic import atomic_write, atomic_write_json, utc_now
    from vista_tui.mapdata.errors import MapCorruptError, MapError, MapNotFoundError, SchemaVersionError
    from vista_tui.mapdata.explanations import (
        EXPLANATIONS_FILE,
        PublishedExplanation,
        PublishedExplanations,
        published_descriptions,
        read_published_explanations,
        write_published_explanations,
    )
    from vista_tui.mapdata.label_cache import LABEL_CACHE_FILE, CachedLabel, LabelCacheWriter, read_label_cache
    from vista_tui.mapdata.reader import MapReader, context_from_row, context_from_table
    from vista_tui.mapdata.schema import (
        SCHEMA_VERSION,
        ClusterNode,
        Context,
        FidelityCurve,
        FileEntry,
        FocusToken,
        Manifest,
        NodeLabels,
        Provenance,
        SparseCodes,
        StepRecord,
        context_id_for,
        node_id_for,
    )
    from vista_tui.mapdata.stats import (
        STATS_FILE,
        DecoderLogits,
        Histogram,
        LatentStats,
        NodeStats,
        QuantileExample,
        QuantileExamples,
        TokenLogit,
        read_latent_stats,
        write_latent_stats,
    )
    from vista_tui.mapdata.store import MapEntry, Store, read_manifest, resolve_store, verify_map
    from vista_tui.mapdata.writer import MapWriter, contexts_table, update_tree

_MODULES = (
    "errors",
    "store",
    "schema",
    "atomic",
    "atlas",
    "explanations",
    "agreement",
    "label_cache",
    "stats",
    "reader",
    "writer",
)
"""Where the names of `__all__` live, light first: a name is looked up in order, so that
asking for a manifest-level name or a side file's never imports the modules that need numpy
and pyarrow."""

__all__ = [
    "AGREEMENT_FILE",
    "ATLASES_DIR",
    "ATLAS_MANIFEST",
    "ATLAS_SCHEMA_VERSION",
    "EXPLANATIONS_FILE",
    "LABEL_CACHE_FILE",
    "LATENTS_FILE",
    "SCHEMA_VERSION",
    "STATS_FILE",
    "Atlas",
    "AtlasEntry",
    "AtlasManifest",
    "CachedLabel",
    "ClusterNode",
    "Context",
    "DecoderLogits",
    "FidelityCurve",
    "FileEntry",
    "FocusToken",
    "Histogram",
    "LabelCacheWriter",
    "LatentAgreement",
    "LatentRow",
    "LatentStats",
    "Manifest",
    "MapCorruptError",
    "MapEntry",
    "MapError",
    "MapNotFoundError",
    "MapReader",
    "MapWriter",
    "NodeLabels",
    "NodeStats",
    "Provenance",
    "PublishedExplanation",
    "PublishedExplanations",
    "QuantileExample",
    "QuantileExamples",
    "SchemaVersionError",
    "SparseCodes",
    "StepRecord",
    "Store",
    "TokenLogit",
    "atomic_write",
    "atomic_write_json",
    "cluster_agreement",
    "context_from_row",
    "context_from_table",
    "context_id_for",
    "contexts_table",
    "is_atlas_dir",
    "latents_schema",
    "latents_table",
    "map_root_id",
    "node_id_for",
    "published_descriptions",
    "read_agreement",
    "read_atlas",
    "read_atlas_manifest",
    "read_label_cache",
    "read_latent_stats",
    "read_latents",
    "read_manifest",
    "read_published_explanations",
    "resolve_store",
    "update_latent_rows",
    "update_tree",
    "utc_now",
    "verify_map",
    "write_agreement",
    "write_atlas",
    "write_latent_stats",
    "write_published_explanations",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for module in _MODULES:
            namespace = importlib.import_module(f"{__name__}.{module}")
            if name in vars(namespace):
                value = vars(namespace)[name]
                globals()[name] = value  # once: later lookups are plain attribute reads
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
