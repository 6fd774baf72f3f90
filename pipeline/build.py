"""The whole pipeline for one model + SAE + corpus and several latents: harvest once, then one map per latent.

Every step has an id (its parameters, code version and upstream id); a rerun reuses a
cached harvest and skips the steps whose id the existing map already records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline import cluster, fidelity, harvest, keywords, layout, models
from pipeline.corpus import STDLIB_DOCSTRINGS
from pipeline.harvest.stats import node_stats
from pipeline.steps import Progress, StepRun, make_record, params_of, reuse_or_run, step_id, step_id_of
from vista_tui.mapdata import (
    NEGATIVES_FILE,
    STATS_FILE,
    ClusterNode,
    FidelityCurve,
    MapError,
    MapReader,
    MapWriter,
    SparseCodes,
    StepRecord,
    Store,
    write_latent_stats,
    write_negatives,
)
from vista_tui.mapdata.children import CHILDREN_FILE, map_children, write_children

MIN_CONTEXTS = 10
"""Fewer contexts than this make no map: UMAP and HDBSCAN need a neighbourhood."""

CHILDREN_STEP = "children"
"""The map's step of `--also-sae` (children.json): SAE B's firings on the harvest's contexts, per node."""
CHILDREN_VERSION = 1
CHILDREN_DISTRIBUTIONS = ("torch", "sae-lens")


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
    force_hook: bool = False
    """Harvest `harvest.hook` even when the SAE records another hook (not part of any step id: the
    harvest's output depends on the hook, not on whether the SAE agreed)."""

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
Notice = Callable[[str], None]
"""Takes one line the build has to say before a long step (the CLI prints it on stderr)."""


def no_notice(line: str) -> None:
    """A Notice that says nothing."""


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
    """The id of the map of `latent` in this build."""
    return f"{cfg.map_prefix or map_prefix(cfg.harvest)}L{latent}"


def _load_or_run_harvest(
    cfg: BuildConfig, store: Store, report: StepReporter, notice: Notice = no_notice
) -> harvest.HarvestResult:
    key = step_id(harvest.STEP, harvest.VERSION, params_of(cfg.harvest), None)
    cache_dir = store.artefact_dir("harvests", key)
    if not cfg.force and (cache_dir / harvest.DONE_FILE).is_file():
        try:
            return harvest.load(cache_dir)
        except (OSError, ValueError, MapError):
            pass  # a damaged cache is rebuilt below
    notice(harvest_notice(cfg, store))
    model, sae = _load_model_and_sae(cfg.harvest, report)
    also_sae = None
    if cfg.harvest.children is not None:
        loading = report("load SAE B", f"loading --also-sae {cfg.harvest.children.sae_description}")
        also_sae = harvest.load_also_sae(cfg.harvest.children, model.device)
        loading(1, 1, model.device)
    # The harvest's bar starts once both are loaded: its time is the harvest's, the loads have their own.
    result = harvest.run(
        cfg.harvest,
        progress=report("harvest", "harvest: model + SAE over the corpus"),
        model=model,
        sae=sae,
        also_sae=also_sae,
        force_hook=cfg.force_hook,
    )
    harvest.save(result, cache_dir)
    return result


def _load_model_and_sae(cfg: harvest.HarvestConfig, report: StepReporter) -> tuple[models.LoadedModel, Any]:
    """The harvest's model and SAE, each loaded under a bar of its own."""
    loading = report("load model", f"loading model {cfg.model}")
    model = models.load_model(cfg.model, cfg.device)
    loading(1, 1, model.device)
    loading = report("load SAE", f"loading SAE {cfg.sae_description}")
    sae = models.load_sae(sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path, device=model.device)
    loading(1, 1, model.device)
    return model, sae


def _latents(latents: list[int] | tuple[int, ...]) -> str:
    """'latent 7' or 'latents 7, 9'."""
    return f"latent{'s' if len(latents) != 1 else ''} {', '.join(str(latent) for latent in latents)}"


@dataclass(frozen=True)
class SiblingHarvest:
    """A cached harvest of the same model, hook, SAE, corpus and parameters, for other latents."""

    latents: tuple[int, ...]
    n_documents: int
    n_tokens_seen: int


def sibling_harvest(cfg: harvest.HarvestConfig, store: Store) -> SiblingHarvest | None:
    """The newest finished harvest in the store that differs from `cfg` only in its latents, else None.

    It read the very corpus this harvest will read, so its counts say how long the pass is. Read
    from its harvest.json alone (its record's parameters and counts); an unreadable one is skipped.
    """
    wanted = {name: value for name, value in params_of(cfg).items() if name != "latents"}
    root = store.root / "harvests"
    found: list[tuple[float, str, SiblingHarvest]] = []
    for path in root.glob(f"*/{harvest.HARVEST_FILE}") if root.is_dir() else ():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            params = dict(raw["record"]["params"])
            latents = tuple(int(latent) for latent in params.pop("latents"))
            if params != wanted:
                continue
            sibling = SiblingHarvest(latents, int(raw.get("n_documents", 0)), int(raw["n_tokens_seen"]))
            found.append((path.stat().st_mtime, str(path), sibling))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return max(found, key=lambda item: item[:2])[2] if found else None


def _size(n_bytes: int) -> str:
    """A file size for people: '812 kB', '3.4 MB', '1.2 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{max(1, round(n_bytes / 1e3))} kB"


def corpus_extent(cfg: harvest.HarvestConfig) -> str:
    """What the corpus is, before it is read: each source with its size on disk, and the --max-tokens cap."""
    parts = []
    for source in cfg.corpus:
        if source == STDLIB_DOCSTRINGS:
            parts.append("the standard library's docstrings")
            continue
        try:
            parts.append(f"{Path(source).name}, {_size(Path(source).stat().st_size)}")
        except OSError:
            parts.append(Path(source).name)
    cap = f"; at most {cfg.max_tokens:,} tokens" if cfg.max_tokens is not None else ""
    return " + ".join(parts) + cap


def harvest_notice(cfg: BuildConfig, store: Store) -> str:
    """The line said before a harvest that no cached one serves: which latents, how long the pass over the
    corpus is (as a cached harvest of other latents counted it, else the corpus's size on disk), and how
    to share one pass between latents next time."""
    latents = cfg.harvest.latents
    if cfg.force:
        return (
            f"harvesting {_latents(latents)} again (--force): one pass over the corpus ({corpus_extent(cfg.harvest)})"
        )
    sibling = sibling_harvest(cfg.harvest, store)
    if sibling is None:
        return (
            f"harvesting {_latents(latents)}: one pass over the corpus ({corpus_extent(cfg.harvest)}) — "
            "harvest several latents at once with --latents a,b,c to share it"
        )
    together = ",".join(str(latent) for latent in dict.fromkeys((*sibling.latents, *latents)))
    return (
        f"harvesting {_latents(latents)}: one more pass over the corpus ({sibling.n_documents:,} documents / "
        f"{sibling.n_tokens_seen:,} tokens, as the cached harvest of {_latents(sibling.latents)} read it) — a "
        f"harvest serves only its own latents: harvest several at once with --latents {together} to share one pass"
    )


def build(cfg: BuildConfig, store: Store, report: StepReporter, notice: Notice = no_notice) -> list[BuiltMap]:
    """Harvest once, then build (or bring up to date) one map per requested latent.

    `notice` hears, before a harvest that no cached one serves, the line `harvest_notice` words.
    """
    result = _load_or_run_harvest(cfg, store, report, notice)
    never = list(result.never_fired)
    few = {
        latent: result.latents[latent].n_contexts
        for latent in cfg.harvest.latents
        if latent not in never and result.latents[latent].n_contexts < MIN_CONTEXTS
    }
    built = [
        build_map(cfg, store, result, latent, report)
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


def build_map(
    cfg: BuildConfig, store: Store, result: harvest.HarvestResult, latent: int, report: StepReporter
) -> BuiltMap:
    """Build (or bring up to date) the map of one harvested latent in `store`: layout, cluster, keywords,
    fidelity, each reused when the map already records its id. The atlas calls it once per latent."""
    map_id = map_id_for(cfg, latent)
    map_dir = store.map_path(map_id)
    latent_harvest = result.latents[latent]
    table, codes = latent_harvest.table, latent_harvest.codes
    activations = table.column("activation").to_numpy().astype(np.float32)
    context_ids = table.column("context_id").to_pylist()

    harvest_record = result.record_for(latent)
    ids = _step_ids(cfg, harvest_record.step_id)
    children_record = _children_record(cfg, result, ids)
    if children_record is not None:
        ids[CHILDREN_STEP] = children_record.step_id
    previous = None if cfg.force else _existing(map_dir)
    if previous is not None and _up_to_date(previous, ids):
        return BuiltMap(map_id, map_dir, tuple(ids), ())

    placed = reuse_or_run(
        layout,
        cfg.layout,
        ids["harvest"],
        previous,
        run=lambda: layout.run(cfg.layout, codes, activations, progress=report("layout", f"L{latent} layout (UMAP)")),
        reuse=lambda old: old.layout,
    )
    # The map keeps only the named tree (the cluster nodes with their keywords): cluster and
    # keywords are reused together, and only on the layout they were made from.
    tree_source = (
        previous if previous is not None and placed.reused and _recorded(previous, keywords.STEP, ids) else None
    )
    clustered = reuse_or_run(
        cluster,
        cfg.cluster,
        ids["layout"],
        tree_source,
        run=lambda: (
            cluster.run(
                cfg.cluster,
                placed.output,
                activations,
                context_ids,
                progress=report("cluster", f"L{latent} cluster tree"),
            ).nodes
        ),
        reuse=lambda old: list(old.tree),
    )
    named = reuse_or_run(
        keywords,
        cfg.keywords,
        ids["cluster"],
        previous if clustered.reused else None,
        run=lambda: keywords.run(
            cfg.keywords,
            clustered.output,
            table.column("tokens").to_pylist(),
            table.column("focus").to_numpy(),
            progress=report("keywords", f"L{latent} keywords"),
            activations=activations,
        ),
        reuse=lambda old: clustered.output,  # the reused tree carries its keywords already
    )
    measured = reuse_or_run(
        fidelity,
        cfg.fidelity,
        ids["layout"],
        previous if placed.reused else None,
        run=lambda: _fidelity(
            cfg.fidelity, codes, activations, placed.output, report("fidelity", f"L{latent} fidelity (mutual-kNN gain)")
        ),
        reuse=lambda old: old.fidelity,
    )

    runs: dict[str, StepRun[Any]] = {"layout": placed, "cluster": clustered, "keywords": named, "fidelity": measured}
    steps = {"harvest": harvest_record} | {name: done.record for name, done in runs.items()}
    if children_record is not None:
        steps[CHILDREN_STEP] = children_record
    nodes, curve = named.output, measured.output
    table = _with_layout(table, placed.output, _leaf_of(nodes, len(context_ids)))
    writer = MapWriter(map_dir)
    writer.write_contexts(table)
    writer.write_codes(codes)
    writer.write_tree(nodes)
    writer.write_fidelity(curve)
    _write_stats(map_dir, latent_harvest, nodes, activations)
    _write_negatives(map_dir, latent_harvest)
    _write_children(map_dir, result, latent, nodes)
    writer.commit(
        map_id=map_id,
        provenance=result.provenance(latent),
        steps=steps,
        previous=previous.manifest if previous is not None else None,
    )
    reused = ("harvest", *(name for name, done in runs.items() if done.reused))
    computed = tuple(name for name, done in runs.items() if not done.reused)
    computed += (CHILDREN_STEP,) if children_record is not None else ()
    return BuiltMap(map_id, map_dir, reused, computed)


def _children_record(cfg: BuildConfig, result: harvest.HarvestResult, ids: dict[str, str]) -> StepRecord | None:
    """The map's "children" step record with `--also-sae` (SAE B and k, on the map's harvest), else None."""
    children = cfg.harvest.children
    if children is None or result.children is None:
        return None
    params = {"sae": children.sae_description, "k": children.k}
    return make_record(
        CHILDREN_STEP, CHILDREN_VERSION, params, ids["harvest"], CHILDREN_DISTRIBUTIONS, result.children.seconds
    )


def _write_children(map_dir: Path, result: harvest.HarvestResult, latent: int, nodes: list[ClusterNode]) -> None:
    """`<map>/children.json` with `--also-sae`: per context row SAE B's firing neighbours, per node (every node of
    the tree, noise included) which of them dominate it. Without `--also-sae`, no file: a stale one is removed."""
    found = result.latents[latent].children
    if result.children is None or found is None:
        (map_dir / CHILDREN_FILE).unlink(missing_ok=True)
        return
    write_children(
        map_dir,
        map_children(
            sae=result.children.sae,
            d_sae=result.children.d_sae,
            latent=latent,
            neighbours=zip(found.neighbours.tolist(), found.cosines.tolist(), strict=True),
            contexts=found.contexts(),
            node_members={node.node_id: node.members.tolist() for node in nodes},
        ),
    )


def _write_stats(
    map_dir: Path, latent_harvest: harvest.LatentHarvest, nodes: list[ClusterNode], activations: np.ndarray
) -> None:
    """`<map>/stats.json`: the harvest's figures of the latent, with each node's members' histogram and
    position profile (positions only when the harvest recorded them). Without figures, no file: a stale
    one from an earlier build is removed."""
    stats = latent_harvest.stats
    if stats is None:
        (map_dir / STATS_FILE).unlink(missing_ok=True)
        return
    positions = latent_harvest.focus_positions
    if positions.size != len(activations):
        positions = np.full(len(activations), -1, dtype=np.int64)
    per_node = node_stats(stats, [node.members for node in nodes], activations, positions)
    nodes_stats = {node.node_id: figures for node, figures in zip(nodes, per_node, strict=True)}
    write_latent_stats(map_dir, replace(stats, nodes=nodes_stats))


def _write_negatives(map_dir: Path, latent_harvest: harvest.LatentHarvest) -> None:
    """`<map>/negatives.parquet`: the harvest's non-activating windows of the latent. Without any (a harvest
    made before they were drawn, or with `--negatives 0`), no file: a stale one is removed."""
    if latent_harvest.negatives is None:
        (map_dir / NEGATIVES_FILE).unlink(missing_ok=True)
        return
    write_negatives(map_dir, latent_harvest.negatives)


def _step_ids(cfg: BuildConfig, harvest_id: str) -> dict[str, str]:
    """Each step's id for this build, from its parameters and the id of the step it reads."""
    ids = {"harvest": harvest_id}
    ids["layout"] = step_id_of(layout, cfg.layout, ids["harvest"])
    ids["cluster"] = step_id_of(cluster, cfg.cluster, ids["layout"])
    ids["keywords"] = step_id_of(keywords, cfg.keywords, ids["cluster"])
    ids["fidelity"] = step_id_of(fidelity, cfg.fidelity, ids["layout"])
    return ids


def _recorded(previous: MapReader, name: str, ids: dict[str, str]) -> bool:
    """The previous map records step `name` with the id this build gives it."""
    record = previous.manifest.steps.get(name)
    return record is not None and record.step_id == ids[name]


def _up_to_date(previous: MapReader, ids: dict[str, str]) -> bool:
    """Every step has this build's id, every file is whole, and children.json is there exactly when this build
    asks for one (`--also-sae`): nothing to write."""
    children = CHILDREN_STEP in ids
    if not children and CHILDREN_STEP in previous.manifest.steps:
        return False
    if children != (previous.path / CHILDREN_FILE).is_file():
        return False
    return all(_recorded(previous, name, ids) for name in ids) and _complete(previous)


def _fidelity(
    cfg: fidelity.FidelityConfig,
    codes: SparseCodes,
    activations: np.ndarray,
    xy: np.ndarray,
    progress: Progress,
) -> FidelityCurve:
    """The fidelity curve, reported as one unit of progress once done."""
    curve = fidelity.run(cfg, codes, activations, xy)
    progress(1, 1)
    return curve


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
