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
    from vista_tui.mapdata.reader import FirstScreen, MapReader, context_from_row, context_from_table, map_root_id
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

_MODULES = (
    "errors",
    "store",
    "schema",
    "atomic",
    "atlas",
    "matches",
    "children",
    "explanations",
    "agreement",
    "label_cache",
    "score_cache",
    "scores",
    "stats",
    "negatives",
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
    "CHILDREN_FILE",
    "EXPLANATIONS_FILE",
    "LABEL_CACHE_FILE",
    "LATENTS_FILE",
    "MATCHES_DIR",
    "MATCH_MANIFEST",
    "MATCH_SCHEMA_VERSION",
    "MATCH_TABLE_FILE",
    "MIN_COVERAGE_SHARE",
    "NEGATIVES_FILE",
    "READING_KINDS",
    "SCHEMA_VERSION",
    "SCORERS",
    "SCORES_FILE",
    "SCORE_CACHE_FILE",
    "STATS_FILE",
    "Atlas",
    "AtlasEntry",
    "AtlasManifest",
    "CachedAnswer",
    "CachedLabel",
    "ChildShare",
    "ClusterCoverage",
    "ClusterNode",
    "Context",
    "Coverage",
    "DecoderLogits",
    "FidelityCurve",
    "FileEntry",
    "FirstScreen",
    "FocusToken",
    "Histogram",
    "LabelCacheWriter",
    "LatentAgreement",
    "LatentMatches",
    "LatentRow",
    "LatentStats",
    "Manifest",
    "MapChildren",
    "MapCorruptError",
    "MapEntry",
    "MapError",
    "MapNotFoundError",
    "MapReader",
    "MapScores",
    "MapWriter",
    "MatchEntry",
    "MatchManifest",
    "MatchTable",
    "NodeChildren",
    "NodeLabels",
    "NodeScores",
    "NodeStats",
    "Provenance",
    "PublishedExplanation",
    "PublishedExplanations",
    "QuantileExample",
    "QuantileExamples",
    "ReadingScore",
    "SaeRef",
    "SchemaVersionError",
    "ScoreCacheWriter",
    "SparseCodes",
    "StepRecord",
    "Store",
    "TokenLogit",
    "append_line",
    "atomic_write",
    "atomic_write_json",
    "cluster_agreement",
    "context_from_row",
    "context_from_table",
    "context_id_for",
    "contexts_table",
    "dominant_child",
    "is_atlas_dir",
    "latents_schema",
    "latents_table",
    "list_match_tables",
    "map_children",
    "map_root_id",
    "map_scores",
    "match_id_for",
    "matches_schema",
    "matches_table",
    "negatives_schema",
    "negatives_table",
    "node_children",
    "node_id_for",
    "published_descriptions",
    "read_agreement",
    "read_atlas",
    "read_atlas_manifest",
    "read_children",
    "read_label_cache",
    "read_latent_stats",
    "read_latents",
    "read_manifest",
    "read_match_manifest",
    "read_match_table",
    "read_negatives",
    "read_published_explanations",
    "read_score_cache",
    "read_scores",
    "resolve_store",
    "sae_key",
    "tables_for_sae",
    "update_latent_rows",
    "update_tree",
    "utc_now",
    "verify_map",
    "write_agreement",
    "write_atlas",
    "write_children",
    "write_latent_stats",
    "write_match_table",
    "write_negatives",
    "write_published_explanations",
    "write_scores",
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
