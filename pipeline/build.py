"""The whole pipeline for one model + SAE + corpus and several latents: harvest once, then one map per latent.

Every step has an id (its parameters, code version and upstream id); a rerun reuses a
cached harvest and skips the steps whose id the existing map already records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import cluster, fidelity, harvest, keywords, layout
from pipeline.steps import Progress, make_record, params_of, step_id, timed
from vista_tui.mapdata import (
    ClusterNode,
    FidelityCurve,
    MapError,
    MapReader,
    MapWriter,
    StepRecord,
    Store,
)

DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "layout": ("numpy", "scipy", "umap-learn", "pynndescent", "numba"),
    "cluster": ("numpy", "hdbscan", "scikit-learn"),
    "keywords": ("numpy", "scipy", "scikit-learn"),
    "fidelity": ("numpy", "scipy"),
}
"""The packages whose versions shape each step's output (recorded in the manifest)."""

MIN_CONTEXTS = 10
"""Fewer contexts than this make no map: UMAP and HDBSCAN need a neighbourhood."""


class BuildError(ValueError):
    """A build cannot go on; the message is one line for the user."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything a map build depends on."""

    harvest: harvest.HarvestConfig
    layout: layout.LayoutConfig = field(default_factory=layout.LayoutConfig)
    cluster: cluster.ClusterConfig = field(default_factory=cluster.ClusterConfig)
    keywords: keywords.KeywordsConfig = field(default_factory=keywords.KeywordsConfig)
    fidelity: fidelity.FidelityConfig = field(default_factory=fidelity.FidelityConfig)
    map_prefix: str = ""
    """Map ids are `<prefix>L<latent>`; empty means derived from model, hook and SAE."""
    force: bool = False
    """Recompute every step even when its output is already there."""

    def __post_init__(self) -> None:
        if self.map_prefix and not re.fullmatch(r"[A-Za-z0-9._-]+", self.map_prefix):
            raise ValueError(f"map_prefix {self.map_prefix!r} may hold only letters, digits, '.', '_' and '-'")
        if self.layout.lam != self.fidelity.lam:
            raise ValueError(
                f"layout lam {self.layout.lam} and fidelity lam {self.fidelity.lam} differ: "
                "fidelity must measure the layout against the distance it was made from"
            )


@dataclass(frozen=True)
class BuiltMap:
    """A map the build wrote or found up to date."""

    map_id: str
    path: Path
    reused_steps: tuple[str, ...]
    computed_steps: tuple[str, ...]


StepReporter = Callable[[str, str], Progress]
"""Given (step name, description) returns the Progress callback for that step."""


def _slug(text: str) -> str:
    text = text.rstrip("/").split("/")[-1] if "/" in text and Path(text).exists() else text
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()[:40] or "x"


def map_prefix(cfg: harvest.HarvestConfig) -> str:
    """The default map-id prefix: which model, hook and SAE (not the corpus or step parameters).

    Maps of the same latent keep their id across rebuilds with other parameters, so their
    annotations stay with them.
    """
    sae = cfg.sae_path if cfg.sae_path else f"{cfg.sae_release}-{cfg.sae_id}"
    sae_name = Path(sae).name if cfg.sae_path else sae
    return f"{_slug(cfg.model)}_h{_slug(cfg.hook)}_{_slug(sae_name)}_"


def map_id_for(cfg: BuildConfig, latent: int) -> str:
    return f"{cfg.map_prefix or map_prefix(cfg.harvest)}L{latent}"


def _load_or_run_harvest(cfg: BuildConfig, store: Store, report: StepReporter) -> harvest.HarvestResult:
    key = step_id(harvest.STEP, harvest.VERSION, params_of(cfg.harvest), None)
    cache_dir = store.artefact_dir("harvests", key)
    if not cfg.force and (cache_dir / harvest.DONE_FILE).is_file():
        try:
            return harvest.load(cache_dir)
        except (OSError, ValueError, MapError):
            pass  # a damaged cache is rebuilt below
    result = harvest.run(cfg.harvest, progress=report("harvest", "harvest: model + SAE over the corpus"))
    harvest.save(result, cache_dir)
    return result


def build(cfg: BuildConfig, store: Store, report: StepReporter) -> list[BuiltMap]:
    """Harvest once, then build (or bring up to date) one map per requested latent."""
    result = _load_or_run_harvest(cfg, store, report)
    never = list(result.never_fired)
    few = {
        latent: result.latents[latent].n_contexts
        for latent in cfg.harvest.latents
        if latent not in never and result.latents[latent].n_contexts < MIN_CONTEXTS
    }
    built = [
        _build_map(cfg, store, result, latent, report)
        for latent in cfg.harvest.latents
        if latent not in never and latent not in few
    ]
    problems = []
    if never:
        problems.append(
            f"latent{'s' if len(never) > 1 else ''} {', '.join(map(str, never))} never fired on "
            f"{result.n_tokens_seen:,} tokens of the corpus; pick other latents or a larger corpus"
        )
    if few:
        listed = ", ".join(f"{latent} ({n})" for latent, n in few.items())
        problems.append(f"too few contexts for a map (at least {MIN_CONTEXTS} needed): latent {listed}")
    if problems:
        raise BuildError("; ".join(problems) + (f" (built {len(built)} other map(s))" if built else ""))
    return built


def _existing(map_dir: Path) -> MapReader | None:
    try:
        return MapReader(map_dir)
    except MapError:
        return None


def _build_map(
    cfg: BuildConfig, store: Store, result: harvest.HarvestResult, latent: int, report: StepReporter
) -> BuiltMap:
    map_id = map_id_for(cfg, latent)
    map_dir = store.map_path(map_id)
    latent_harvest = result.latents[latent]
    table, codes = latent_harvest.table, latent_harvest.codes
    activations = table.column("activation").to_numpy().astype(np.float32)
    context_ids = table.column("context_id").to_pylist()

    harvest_record = result.record_for(latent)
    harvest_id = harvest_record.step_id
    ids = {"harvest": harvest_id}
    ids["layout"] = step_id(layout.STEP, layout.VERSION, params_of(cfg.layout), harvest_id)
    ids["cluster"] = step_id(cluster.STEP, cluster.VERSION, params_of(cfg.cluster), ids["layout"])
    ids["keywords"] = step_id(keywords.STEP, keywords.VERSION, params_of(cfg.keywords), ids["cluster"])
    ids["fidelity"] = step_id(fidelity.STEP, fidelity.VERSION, params_of(cfg.fidelity), ids["layout"])

    previous = None if cfg.force else _existing(map_dir)

    def reusable(name: str) -> bool:
        return (
            previous is not None
            and name in previous.manifest.steps
            and previous.manifest.steps[name].step_id == ids[name]
        )

    if previous is not None and all(reusable(name) for name in ids) and _complete(previous):
        return BuiltMap(map_id, map_dir, tuple(ids), ())

    steps: dict[str, StepRecord] = {"harvest": harvest_record}
    reused: list[str] = ["harvest"]
    computed: list[str] = []

    if reusable("layout"):
        xy = previous.layout  # type: ignore[union-attr]
        steps["layout"] = previous.manifest.steps["layout"]  # type: ignore[union-attr]
        reused.append("layout")
    else:
        with timed() as seconds:
            xy = layout.run(cfg.layout, codes, activations, progress=report("layout", f"L{latent} layout (UMAP)"))
        steps["layout"] = make_record(
            layout.STEP, layout.VERSION, params_of(cfg.layout), harvest_id, DISTRIBUTIONS["layout"], seconds[0]
        )
        computed.append("layout")

    nodes: list[ClusterNode]
    if reusable("cluster") and reusable("keywords") and reusable("layout"):
        nodes = list(previous.tree)  # type: ignore[union-attr]
        steps["cluster"] = previous.manifest.steps["cluster"]  # type: ignore[union-attr]
        steps["keywords"] = previous.manifest.steps["keywords"]  # type: ignore[union-attr]
        reused += ["cluster", "keywords"]
    else:
        with timed() as seconds:
            tree = cluster.run(
                cfg.cluster, xy, activations, context_ids, progress=report("cluster", f"L{latent} cluster tree")
            )
        steps["cluster"] = make_record(
            cluster.STEP, cluster.VERSION, params_of(cfg.cluster), ids["layout"], DISTRIBUTIONS["cluster"], seconds[0]
        )
        with timed() as seconds:
            nodes = keywords.run(
                cfg.keywords,
                tree.nodes,
                table.column("tokens").to_pylist(),
                table.column("focus").to_numpy(),
                progress=report("keywords", f"L{latent} keywords"),
            )
        steps["keywords"] = make_record(
            keywords.STEP,
            keywords.VERSION,
            params_of(cfg.keywords),
            ids["cluster"],
            DISTRIBUTIONS["keywords"],
            seconds[0],
        )
        computed += ["cluster", "keywords"]

    curve: FidelityCurve
    if reusable("fidelity") and reusable("layout") and previous is not None and previous.fidelity is not None:
        curve = previous.fidelity
        steps["fidelity"] = previous.manifest.steps["fidelity"]
        reused.append("fidelity")
    else:
        progress = report("fidelity", f"L{latent} fidelity (mutual-kNN gain)")
        with timed() as seconds:
            curve = fidelity.run(cfg.fidelity, codes, activations, xy)
        progress(1, 1)
        steps["fidelity"] = make_record(
            fidelity.STEP,
            fidelity.VERSION,
            params_of(cfg.fidelity),
            ids["layout"],
            DISTRIBUTIONS["fidelity"],
            seconds[0],
        )
        computed.append("fidelity")

    leaf_of = _leaf_of(nodes, len(context_ids))
    table = _with_layout(table, xy, leaf_of)
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(codes)
    writer.write_tree(nodes)
    writer.write_fidelity(curve)
    writer.commit(
        map_id=map_id,
        provenance=result.provenance(latent),
        steps=steps,
        previous=previous.manifest if previous is not None else None,
    )
    return BuiltMap(map_id, map_dir, tuple(reused), tuple(computed))


def _complete(reader: MapReader) -> bool:
    """Every data file is there with the size the manifest records, and none is missing."""
    if not {"contexts", "codes", "tree", "fidelity"} <= set(reader.manifest.files):
        return False
    try:
        reader.verify()
    except MapError:
        return False
    return True


def _leaf_of(nodes: list[ClusterNode], n: int) -> list[str]:
    """For each context row, the deepest node that holds it (parents come before children)."""
    leaf = [""] * n
    for node in nodes:
        for row in node.members.tolist():
            leaf[row] = node.node_id
    return leaf


def _with_layout(table: pa.Table, xy: np.ndarray, leaf_of: list[str]) -> pa.Table:
    table = table.set_column(table.schema.get_field_index("x"), "x", pa.array(xy[:, 0].astype(np.float32)))
    table = table.set_column(table.schema.get_field_index("y"), "y", pa.array(xy[:, 1].astype(np.float32)))
    return table.set_column(table.schema.get_field_index("leaf_node"), "leaf_node", pa.array(leaf_of, pa.string()))
