"""An atlas end to end: harvest every requested latent once, cache each latent's harvest, build its map.

```
<store>/atlases/<atlas_id>/
  manifest.json, latents.parquet   (vista_tui.mapdata.atlas: written through write_atlas/update_latent_rows)
  maps/<map_id>/                   one normal map per latent (pipeline.build.build_map)
  harvest/L<latent>/               the latent's harvest (pipeline.harvest.save of it alone)
  harvest/done.json                written last: the harvest is whole, a rerun does not run the model again
```

The atlas id hashes what the atlas is of (model, hook, SAE, corpus, latents and every harvest and map
parameter except the device), so the same command finds the same atlas again. A rerun then skips
the two passes (`harvest/done.json`) and every latent whose map is whole, and builds the rest: an
interrupted or half-failed atlas is finished by running the same command again. Rows are written
as builds finish, a few at a time, so the browser shows progress and a crash loses little.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline import cluster, fidelity, harvest, keywords, layout
from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.engine import Engine, StageReporter
from pipeline.atlas.maps import MapJob, MapOutcome, built_row, unbuilt_row
from pipeline.build import BuildConfig, map_prefix
from pipeline.steps import params_of
from vista_tui.mapdata import (
    AtlasManifest,
    LatentRow,
    MapError,
    Store,
    atomic_write_json,
    read_atlas,
    update_latent_rows,
    utc_now,
    write_atlas,
)

HARVEST_DIR = "harvest"
HARVEST_DONE = "done.json"
"""Written last into HARVEST_DIR: the per-latent harvests are all there."""
FLUSH_SECONDS = 2.0
"""Built rows are written to latents.parquet at most this often (and at the end)."""


@dataclass(frozen=True)
class AtlasConfig:
    """What an atlas is of and how its maps are built."""

    harvest: AtlasHarvestConfig
    layout: layout.LayoutConfig = field(default_factory=layout.LayoutConfig)
    cluster: cluster.ClusterConfig = field(default_factory=cluster.ClusterConfig)
    keywords: keywords.KeywordsConfig = field(default_factory=keywords.KeywordsConfig)
    fidelity: fidelity.FidelityConfig = field(default_factory=fidelity.FidelityConfig)
    first: tuple[int, ...] = ()
    """The order the atlas is asked for (the demo: most varied first): these latents' maps are built first,
    in this order, the rest ascending, and each row's `order` is its position here (-1 for the rest). Empty:
    a rerun keeps the order the atlas has."""
    force: bool = False
    """Harvest again and rebuild every map."""

    def __post_init__(self) -> None:
        """Raise ValueError naming a bad field (no I/O); the map steps' configs check themselves."""
        self.build_config()  # the map build's own checks (lam of layout and fidelity)
        if any(not isinstance(latent, int) or latent < 0 for latent in self.first):
            raise ValueError(f"first must list latent indices, got {self.first!r}")

    def build_config(self) -> BuildConfig:
        """The per-map build's config (its harvest config names the model, hook and SAE for map ids)."""
        latents = (0,) if self.harvest.latents == "all" else tuple(self.harvest.latents)
        return BuildConfig(
            harvest=self.harvest.harvest_config(latents),
            layout=self.layout,
            cluster=self.cluster,
            keywords=self.keywords,
            fidelity=self.fidelity,
            force=self.force,
        )


def atlas_id_for(cfg: AtlasConfig) -> str:
    """`<model>_h<hook>_<sae>_<hash>`: readable, and the same for the same atlas (the device is not part of it)."""
    params = params_of(cfg)
    params["harvest"].pop("device", None)
    params.pop("first", None)
    params.pop("force", None)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:10]
    return f"{map_prefix(cfg.build_config().harvest)}{digest}"


@dataclass(frozen=True)
class AtlasReport:
    """What a build did, for the CLI's summary."""

    atlas_dir: Path
    n_latents: int
    built_now: int
    up_to_date: int
    failed: dict[int, str]
    """Latent -> why its build failed (a rerun tries again)."""
    unbuildable: dict[int, str]
    """Latent -> why it has no map (never fired, too few contexts)."""


def build_atlas(cfg: AtlasConfig, store: Store, engine: Engine, report: StageReporter) -> AtlasReport:
    """Harvest (or reuse the harvest), write the atlas files, then build every latent's map not yet built."""
    atlas_dir = store.atlas_path(atlas_id_for(cfg))
    harvest_dir = atlas_dir / HARVEST_DIR
    build_cfg = cfg.build_config()
    if cfg.force or not (harvest_dir / HARVEST_DONE).is_file() or not _readable(atlas_dir):
        result = engine.harvest(cfg.harvest, report)
        _save_harvest(cfg, atlas_dir, result, report)  # rows without an order: set below
    atlas = read_atlas(atlas_dir)
    latents = list(atlas.manifest.latents)
    rows = {row.latent: row for row in atlas.rows()}
    order = {latent: rank for rank, latent in enumerate(cfg.first)} if cfg.first else {}
    placed = (lambda latent: order.get(latent, -1)) if cfg.first else (lambda latent: rows[latent].order)
    misplaced = [replace(row, order=placed(latent)) for latent, row in rows.items() if row.order != placed(latent)]
    if misplaced:  # asked for another order than the atlas has (the atlas id does not hold it)
        update_latent_rows(atlas_dir, misplaced)
        rows.update((row.latent, row) for row in misplaced)
    done: dict[int, LatentRow] = {}
    if not cfg.force:
        for latent, row in rows.items():
            if row.error and not row.error.startswith("map build failed"):
                done[latent] = row  # never fired / too few contexts: the harvest will not change
            elif row.built and (found := built_row(build_cfg, atlas_dir, latent)) is not None:
                done[latent] = replace(found, order=row.order)
    todo = sorted((latent for latent in latents if latent not in done), key=lambda x: (order.get(x, len(order)), x))
    jobs = [MapJob(latent, str(harvest_dir / f"L{latent}"), str(atlas_dir), build_cfg) for latent in todo]
    progress = report("maps", "maps: one per latent (layout, clusters, keywords, fidelity)")
    progress(0, len(jobs), f"{len(done)} already built or without a map")
    outcomes: list[MapOutcome] = []
    pending: list[LatentRow] = []
    last_flush = time.monotonic()
    for finished, outcome in enumerate(engine.build_maps(jobs), start=1):
        outcomes.append(outcome)
        pending.append(replace(outcome.row, order=placed(outcome.row.latent)))
        if time.monotonic() - last_flush >= FLUSH_SECONDS:
            update_latent_rows(atlas_dir, pending)
            pending, last_flush = [], time.monotonic()
        progress(finished, len(jobs), f"latent {outcome.row.latent}")
    if pending:
        update_latent_rows(atlas_dir, pending)
    failed = {o.row.latent: o.row.error for o in outcomes if o.row.error.startswith("map build failed")}
    unbuildable = {
        latent: row.error
        for latent, row in ({**done, **{o.row.latent: o.row for o in outcomes}}).items()
        if not row.built and row.error and latent not in failed
    }
    return AtlasReport(
        atlas_dir=atlas_dir,
        n_latents=len(latents),
        built_now=sum(1 for o in outcomes if o.row.built and o.computed),
        up_to_date=sum(1 for o in outcomes if o.row.built and not o.computed)
        + sum(1 for row in done.values() if row.built),
        failed=failed,
        unbuildable=unbuildable,
    )


def _readable(atlas_dir: Path) -> bool:
    """Whether the atlas's manifest and table read (a harvest without them is written again)."""
    try:
        read_atlas(atlas_dir)
    except MapError:
        return False
    return True


def _save_harvest(cfg: AtlasConfig, atlas_dir: Path, result: harvest.HarvestResult, report: StageReporter) -> None:
    """Each latent's harvest into its own folder, the atlas files with a pending row per latent, then done.json."""
    harvest_dir = atlas_dir / HARVEST_DIR
    latents = sorted(result.latents)
    progress = report("save", "saving each latent's harvest")
    rows = []
    for i, latent in enumerate(latents, start=1):
        alone = replace(
            result,
            latents={latent: result.latents[latent]},
            never_fired=[latent] if latent in result.never_fired else [],
        )
        harvest.save(alone, harvest_dir / f"L{latent}")
        rows.append(pending_row(result, latent))
        progress(i, len(latents))
    manifest = AtlasManifest(
        atlas_id=atlas_dir.name,
        created=utc_now(),
        model=result.model,
        hook=result.hook,
        sae=result.sae,
        d_sae=result.d_sae,
        d_model=result.d_model,
        corpus=result.corpus,
        n_tokens_seen=result.n_tokens_seen,
        n_documents=result.n_documents,
        latents=tuple(latents),
        params=params_of(cfg.harvest) | {"candidates": cfg.harvest.candidates},
    )
    write_atlas(atlas_dir, manifest, rows)
    atomic_write_json(harvest_dir / HARVEST_DONE, {"atlas_id": atlas_dir.name, "latents": len(latents)})


def pending_row(result: harvest.HarvestResult, latent: int) -> LatentRow:
    """A latent's row before its map is built: pass 1's figures, no map yet."""
    return unbuilt_row(result.latents[latent], result.n_tokens_seen, "")
