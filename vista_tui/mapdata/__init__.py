"""The on-disk map format: the contract between the pipeline and the TUI.

Headless: numpy and pyarrow, never textual, torch or the pipeline. The names load on first
use (PEP 562), so that what needs only the manifest and the store — the CLI, the picker, the
first screen of the explorer — starts without importing numpy or pyarrow.
"""

# ruff: noqa: F401 - the imports below are for type checkers; `__all__` is built from `_NAMES`, which lists them again

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
        read_atlas,
        read_atlas_manifest,
        read_latents,
        update_latent_rows,
        write_atlas,
    )
    from vista_tui.mapdata.atomic import append_line, atomic_write, atomic_write_json, utc_now
    from vista_tui.mapdata.children import (
        CHILDREN_FILE,
        ChildShare,
        MapChildren,
        NodeChildren,
        dominant_child,
        map_children,
        node_children,
        read_children,
        write_children,
    )
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
    from vista_tui.mapdata.matches import (
        MATCH_MANIFEST,
        MATCH_SCHEMA_VERSION,
        MATCH_TABLE_FILE,
        MATCHES_DIR,
        LatentMatches,
        MatchEntry,
        MatchManifest,
        MatchTable,
        SaeRef,
        list_match_tables,
        match_id_for,
        matches_schema,
        matches_table,
        read_match_manifest,
        read_match_table,
        sae_key,
        tables_for_sae,
        write_match_table,
    )
    from vista_tui.mapdata.negatives import (
        NEGATIVES_FILE,
        negatives_schema,
        negatives_table,
        read_negatives,
        write_negatives,
    )
    from vista_tui.mapdata.opening import OPENING_FILE, Opening, read_opening, rows_by_activation
    from vista_tui.mapdata.reader import MapReader, context_from_row, context_from_table, map_root_id
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
    from vista_tui.mapdata.score_cache import SCORE_CACHE_FILE, CachedAnswer, ScoreCacheWriter, read_score_cache
    from vista_tui.mapdata.scores import (
        MIN_COVERAGE_SHARE,
        READING_KINDS,
        SCORERS,
        SCORES_FILE,
        ClusterCoverage,
        Coverage,
        MapScores,
        NodeScores,
        ReadingScore,
        map_scores,
        read_scores,
        write_scores,
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

_NAMES: dict[str, tuple[str, ...]] = {
    "agreement": ("AGREEMENT_FILE", "LatentAgreement", "cluster_agreement", "read_agreement", "write_agreement"),
    "atlas": (
        "ATLAS_MANIFEST",
        "ATLAS_SCHEMA_VERSION",
        "ATLASES_DIR",
        "LATENTS_FILE",
        "Atlas",
        "AtlasEntry",
        "AtlasManifest",
        "LatentRow",
        "is_atlas_dir",
        "latents_schema",
        "latents_table",
        "read_atlas",
        "read_atlas_manifest",
        "read_latents",
        "update_latent_rows",
        "write_atlas",
    ),
    "atomic": ("append_line", "atomic_write", "atomic_write_json", "utc_now"),
    "children": (
        "CHILDREN_FILE",
        "ChildShare",
        "MapChildren",
        "NodeChildren",
        "dominant_child",
        "map_children",
        "node_children",
        "read_children",
        "write_children",
    ),
    "errors": ("MapCorruptError", "MapError", "MapNotFoundError", "SchemaVersionError"),
    "explanations": (
        "EXPLANATIONS_FILE",
        "PublishedExplanation",
        "PublishedExplanations",
        "published_descriptions",
        "read_published_explanations",
        "write_published_explanations",
    ),
    "label_cache": ("LABEL_CACHE_FILE", "CachedLabel", "LabelCacheWriter", "read_label_cache"),
    "matches": (
        "MATCH_MANIFEST",
        "MATCH_SCHEMA_VERSION",
        "MATCH_TABLE_FILE",
        "MATCHES_DIR",
        "LatentMatches",
        "MatchEntry",
        "MatchManifest",
        "MatchTable",
        "SaeRef",
        "list_match_tables",
        "match_id_for",
        "matches_schema",
        "matches_table",
        "read_match_manifest",
        "read_match_table",
        "sae_key",
        "tables_for_sae",
        "write_match_table",
    ),
    "negatives": ("NEGATIVES_FILE", "negatives_schema", "negatives_table", "read_negatives", "write_negatives"),
    "opening": ("OPENING_FILE", "Opening", "read_opening", "rows_by_activation"),
    "reader": ("MapReader", "context_from_row", "context_from_table", "map_root_id"),
    "schema": (
        "SCHEMA_VERSION",
        "ClusterNode",
        "Context",
        "FidelityCurve",
        "FileEntry",
        "FocusToken",
        "Manifest",
        "NodeLabels",
        "Provenance",
        "SparseCodes",
        "StepRecord",
        "context_id_for",
        "node_id_for",
    ),
    "score_cache": ("SCORE_CACHE_FILE", "CachedAnswer", "ScoreCacheWriter", "read_score_cache"),
    "scores": (
        "MIN_COVERAGE_SHARE",
        "READING_KINDS",
        "SCORERS",
        "SCORES_FILE",
        "ClusterCoverage",
        "Coverage",
        "MapScores",
        "NodeScores",
        "ReadingScore",
        "map_scores",
        "read_scores",
        "write_scores",
    ),
    "stats": (
        "STATS_FILE",
        "DecoderLogits",
        "Histogram",
        "LatentStats",
        "NodeStats",
        "QuantileExample",
        "QuantileExamples",
        "TokenLogit",
        "read_latent_stats",
        "write_latent_stats",
    ),
    "store": ("MapEntry", "Store", "read_manifest", "resolve_store", "verify_map"),
    "writer": ("MapWriter", "contexts_table", "update_tree"),
}
"""Each module of the package and the names it gives the package (the same as the imports above, which
tests/mapdata/test_package.py checks): a name loads its own module only, so that asking for a
manifest-level name or a side file's never imports the modules that need numpy and pyarrow, nor
any other module the caller does not use."""

_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
