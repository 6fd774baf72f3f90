"""One latent of an atlas: its map built from its cached harvest, and its row of latents.parquet.

A `MapJob` names everything a build needs by value or by path (the latent, its harvest folder,
the atlas directory, the build config), so that the same function runs in this process or in a
Ray worker: a worker reads the latent's own harvest folder from disk instead of receiving the
whole harvest through the driver. The map is written by `pipeline.build.build_map` into
`Store(atlas_dir)`, so it is a normal map (`<atlas>/maps/<map_id>/`), and a map already up to date
is left as it is. The row comes from what the map holds: stats.json (density, maximum, firings),
the root's focus tokens and LLM label, the published explanation, the fidelity curve's argmax.

A latent with no map (it never fired, or has fewer than `MIN_CONTEXTS` contexts) gets a row with
`built=False` and the reason in `error`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline import harvest
from pipeline.build import MIN_CONTEXTS, BuildConfig, build_map, map_id_for
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import LatentRow, MapError, MapReader, Store, published_descriptions, read_latent_stats

FAIL_ONCE_ENV = "VISTA_ATLAS_FAIL_ONCE"
"""Test hook: a directory. A map build (and a pass-1 shard) that finds no marker file of its own there
writes one and kills its worker process (`os._exit`), once; Ray's retries must then finish the atlas.
Read by the CLI and handed to the engine, never read inside a worker."""


@dataclass(frozen=True)
class MapJob:
    """What one latent's map build needs, all of it picklable (it crosses to Ray workers)."""

    latent: int
    harvest_dir: str
    """The latent's own harvest folder (`pipeline.harvest.save` of this latent alone)."""
    atlas_dir: str
    build: BuildConfig
    fail_once: str | None = None
    """The FAIL_ONCE_ENV test hook's directory, or None."""


@dataclass(frozen=True)
class MapOutcome:
    """A latent's row, and which map steps its build computed (empty: the map was up to date or not built)."""

    row: LatentRow
    computed: tuple[str, ...] = ()


def silent(step: str, description: str) -> Progress:
    """A StepReporter that reports nothing: the atlas's one display counts whole latents."""
    return no_progress


def fail_once(directory: str | None, name: str) -> None:
    """The FAIL_ONCE_ENV test hook: the first call for `name` leaves a marker and kills this process."""
    if directory is None:
        return
    marker = Path(directory) / f"{name}.failed"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()), encoding="utf-8")
    os._exit(17)  # as a lost worker: no exception, no clean-up, the process is gone


def build_latent(job: MapJob) -> MapOutcome:
    """Build the map of `job.latent` (or find it up to date) and return its row; a latent with too little to map
    gets a row saying why. Raises only for errors that are not the latent's (a torn harvest folder, a full disk)."""
    fail_once(job.fail_once, f"map-{job.latent}")
    result = harvest.load(job.harvest_dir)
    latent_harvest = result.latents[job.latent]
    if job.latent in result.never_fired or latent_harvest.n_fired == 0:
        return MapOutcome(
            unbuilt_row(latent_harvest, result.n_tokens_seen, f"never fired on {result.n_tokens_seen:,} tokens")
        )
    if latent_harvest.n_contexts < MIN_CONTEXTS:
        why = f"too few contexts for a map ({latent_harvest.n_contexts}; at least {MIN_CONTEXTS} needed)"
        return MapOutcome(unbuilt_row(latent_harvest, result.n_tokens_seen, why))
    built = build_map(job.build, Store(Path(job.atlas_dir)), result, job.latent, silent)
    return MapOutcome(row_of_map(job.latent, built.path), built.computed_steps)


def unbuilt_row(latent_harvest: harvest.LatentHarvest, n_tokens_seen: int, error: str) -> LatentRow:
    """The row of a latent without a map: its harvest's figures and why there is no map."""
    stats = latent_harvest.stats
    acts = latent_harvest.table.column("activation").to_numpy() if latent_harvest.n_contexts else np.zeros(0)
    return LatentRow(
        latent=latent_harvest.latent,
        density=stats.density if stats is not None else latent_harvest.n_fired / max(n_tokens_seen, 1),
        n_fired=latent_harvest.n_fired,
        max_activation=stats.max_activation if stats is not None else float(acts.max(initial=0.0)),
        n_contexts=latent_harvest.n_contexts,
        built=False,
        error=error,
    )


def row_of_map(latent: int, map_dir: Path) -> LatentRow:
    """A built latent's row, read back from its map (stats.json, the root node, explanations, fidelity)."""
    reader = MapReader(map_dir)
    root = reader.tree[0]
    stats = read_latent_stats(map_dir)
    curve = reader.fidelity
    fidelity_k, fidelity_gain = -1, math.nan
    if curve.gain:
        best = int(np.argmax(curve.gain))
        fidelity_k, fidelity_gain = int(curve.k[best]), float(curve.gain[best])
    focus = root.labels.focus_tokens
    descriptions = published_descriptions(map_dir)
    n_contexts = reader.manifest.provenance.n_contexts
    return LatentRow(
        latent=latent,
        density=stats.density if stats is not None else math.nan,
        n_fired=stats.n_fired if stats is not None else 0,
        max_activation=stats.max_activation if stats is not None else float(root.max_activation),
        n_contexts=n_contexts,
        top_tokens=tuple(token.token for token in focus),
        top_counts=tuple(int(token.count) for token in focus),
        explanation=descriptions[0] if descriptions else "",
        llm_label=root.labels.llm_label,
        fidelity_k=fidelity_k,
        fidelity_gain=fidelity_gain,
        map_id=map_dir.name,
        built=True,
    )


def built_row(cfg: BuildConfig, atlas_dir: Path, latent: int) -> LatentRow | None:
    """The row of a latent whose map in the atlas is whole (its files are the sizes its manifest records), else
    None: what a rerun skips. Whether its steps are up to date is `build_map`'s to decide once it runs."""
    map_dir = Store(atlas_dir).map_path(map_id_for(cfg, latent))
    try:
        MapReader(map_dir).verify()
        return row_of_map(latent, map_dir)
    except (MapError, OSError, IndexError):
        return None


def with_error(row: LatentRow, error: str) -> LatentRow:
    """The row marked as not built, with `error` as its one-line reason."""
    return replace(row, built=False, map_id="", error=" ".join(error.split()))
