"""`python -m pipeline build|demo|…`: the precompute commands behind `vista build`, `vista demo`, `vista match`….

Progress and errors go to stderr; the paths of the maps (or tables) written go to stdout, one per line,
so that `vista` (which never imports this package) can show them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from pipeline import interrupts
from pipeline.argtypes import add_negatives_argument, add_quantile_arguments, int_list
from pipeline.steps import Progress as StepProgress
from vista_tui.mapdata import MapError, Store, resolve_store

if TYPE_CHECKING:
    from pipeline.atlas.build import AtlasConfig, AtlasReport
    from pipeline.build import BuildConfig, BuiltMap, StepReporter
    from pipeline.harvest.config import ChildrenConfig
    from pipeline.label import LabelConfig, LabelReport
    from pipeline.score import ScoreConfig as ScoreConfigType
    from pipeline.score import ScoreReport

# The codes of vista_tui.cli.console (which the pipeline may not import), as `vista` passes them on.
EXIT_FAILED = 1
"""The work was attempted and failed, or failed in part (`label`: some nodes labelled, some failed)."""
EXIT_BAD_INPUT = 2
"""Nothing was done: a bad argument or map, an LLM endpoint that is down or refuses (`label`: no node labelled)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C, as a shell reports SIGINT."""

LABEL_EXIT_STATUS = """\
exit status:
  0    every node asked for is labelled (answered now, or taken from MAP/labels.jsonl)
  1    some nodes were labelled and some failed (their label_status says why); a rerun
       asks only for what is missing
  2    no node was labelled: a bad argument or map; an endpoint that cannot be reached or
       that refuses (HTTP 4xx other than 429, or 501: stopped at once, with the URL); or
       every node failed
  130  interrupted; the answers that arrived are kept for the next run"""
"""The `label` command's exit codes, as its --help tells them."""

SCORE_EXIT_STATUS = """\
exit status:
  0    every reading asked for is scored (answers asked now, or taken from MAP/scores_cache.jsonl)
  1    some LLM requests failed (their items are counted as n_failed in MAP/scores.json); a
       rerun asks only for what is missing
  2    nothing was scored: a bad argument or map (no negatives.parquet: rebuild it or pick
       --negatives siblings/store); an endpoint that cannot be reached or that refuses; or
       every request failed
  130  interrupted; the answers that arrived are kept for the next run"""
"""The `score` command's exit codes, as its --help tells them."""

stderr = Console(stderr=True, highlight=False)


def say(line: str) -> None:
    """One line on stderr, as it is (no markup: it may quote paths), never wrapped."""
    stderr.print(line, soft_wrap=True, markup=False)


class DoneOfTotalColumn(ProgressColumn):
    """`done/total` with thousands separators ("1,234,567/9,876,543"), `done/?` while the total is unknown."""

    def render(self, task: Task) -> Text:
        """The task's count, for the bar's line."""
        total = f"{int(task.total):,}" if task.total is not None else "?"
        return Text(f"{int(task.completed):,}/{total}", style="progress.download")


@contextmanager
def rich_reporter(eta: bool = False) -> Iterator[StepReporter]:
    """A StepReporter drawing one rich progress bar per step (on stderr); `eta` adds the time left."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DoneOfTotalColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        *((TimeRemainingColumn(),) if eta else ()),
    )
    with Progress(*columns, console=stderr, transient=False) as bars, interrupts.live_display(bars.stop):

        def report(step: str, description: str) -> StepProgress:
            interrupts.hold_at(step)
            task = bars.add_task(description, total=None, note="")

            def update(done: int, total: int | None = None, note: str = "") -> None:
                bars.update(task, completed=done, total=total, note=note)

            return update

        try:
            yield report
        except BaseException:
            # A bar that never moved says nothing the error line will not: it is left off the screen.
            for task in list(bars.tasks):
                if task.completed == 0 and not task.finished:
                    bars.remove_task(task.id)
            raise


def add_model_argument(what: argparse._ArgumentGroup) -> None:
    """`--model`, as `build` and `atlas build` take it."""
    what.add_argument(
        "--model",
        required=True,
        help="Hugging Face model id (downloaded unless --offline) or directory; 'minilm' = the bundled all-MiniLM-L6-v2",
    )


def add_corpus_arguments(what: argparse._ArgumentGroup) -> None:
    """`--corpus` and `--text-field`, as `build` and `atlas build` take them."""
    what.add_argument(
        "--corpus",
        action="append",
        required=True,
        metavar="PATH",
        help="text / JSONL / parquet file, or 'python-stdlib-docstrings'; repeat for several",
    )
    what.add_argument(
        "--text-field", default="text", help="JSONL key / parquet column holding the text (default: text)"
    )


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `vista build`."""
    what = parser.add_argument_group("what to map")
    add_model_argument(what)
    what.add_argument(
        "--hook",
        help="layer index (output of that block) or a module path, e.g. 'model.layers.20' (default: the hook the"
        " SAE's config records)",
    )
    what.add_argument(
        "--force-hook",
        action="store_true",
        help="harvest --hook even when the SAE's config records another hook (default: refuse)",
    )
    what.add_argument(
        "--sae",
        metavar="RELEASE/SAE_ID",
        help="sae-lens release and SAE id (downloaded unless --offline), e.g. 'gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical'",
    )
    what.add_argument("--sae-path", metavar="DIR", help="an SAE saved by sae-lens (cfg.json + weights)")
    add_corpus_arguments(what)
    what.add_argument(
        "--latents",
        type=int_list,
        action="extend",
        required=True,
        metavar="I[,J…]",
        help="latents to map, comma separated; repeatable",
    )

    harvest = add_harvest_arguments(parser)
    add_quantile_arguments(harvest)
    add_negatives_argument(harvest)

    children = parser.add_argument_group("children in a second SAE")
    children.add_argument(
        "--also-sae",
        metavar="RELEASE/SAE_ID",
        help="also encode the kept contexts with this SAE of the same hook (e.g. a wider one): each context records"
        " which of the latent's --children-k nearest decoder directions in it fire on its focus token, each node"
        " which of them dominate it (MAP/children.json; the map itself does not change)",
    )
    children.add_argument("--also-sae-path", metavar="DIR", help="as --also-sae, an SAE saved by sae-lens")
    children.add_argument(
        "--children-k",
        type=int,
        default=None,
        metavar="K",
        help="decoder neighbours in the --also-sae SAE to record (default: 8)",
    )

    add_shape_arguments(parser)

    out = parser.add_argument_group("output")
    out.add_argument(
        "--map-prefix", default="", help="map ids are PREFIX + 'L<latent>' (default: from model, hook, SAE)"
    )
    out.add_argument("--force", action="store_true", help="recompute every step, even those already done")
    add_cache_argument(out)
    add_offline_argument(out)


def add_harvest_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The harvest's options shared by `build` and `atlas build`; returns their group."""
    harvest = parser.add_argument_group("harvest")
    harvest.add_argument("--top-n", type=int, default=4000, help="contexts kept per latent (default: 4000)")
    harvest.add_argument(
        "--window", type=int, default=12, help="tokens kept each side of the focus token (default: 12)"
    )
    harvest.add_argument("--max-length", type=int, default=128, help="tokens per model input (default: 128)")
    harvest.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass (default: 32)")
    harvest.add_argument(
        "--max-tokens", type=int, default=None, help="stop after this many corpus tokens (default: all)"
    )
    harvest.add_argument(
        "--device", default="auto", help="torch device; 'auto' = cuda, else mps, else cpu (default: auto)"
    )
    harvest.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="keep every copy of a repeated context window (default: each window once, its highest activation)",
    )
    return harvest


def add_shape_arguments(parser: argparse.ArgumentParser) -> None:
    """The map steps' options (layout, clusters, keywords), shared by `build` and `atlas build`."""
    shape = parser.add_argument_group("layout, clusters, labels")
    shape.add_argument(
        "--lam", type=float, default=1.0, help="weight of the activation gap in the VISTA distance (default: 1)"
    )
    shape.add_argument("--n-neighbors", type=int, default=15, help="UMAP neighbours (default: 15)")
    shape.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (default: 0.1)")
    shape.add_argument("--seed", type=int, default=0, help="seed of UMAP and clustering (default: 0)")
    shape.add_argument("--min-cluster-size", type=int, default=None, help="HDBSCAN min_cluster_size (default: from N)")
    shape.add_argument("--min-samples", type=int, default=None, help="HDBSCAN min_samples (default: min_cluster_size)")
    shape.add_argument(
        "--max-depth", type=int, default=3, help="real splits in the cluster tree below the root (default: 3)"
    )
    shape.add_argument(
        "--lift-share",
        type=float,
        default=0.75,
        help="a child cluster holding more than this share of its parent is a pass-through: "
        "its children are shown in its place, 0.5-1 (default: 0.75)",
    )
    shape.add_argument("--n-keywords", type=int, default=8, help="keywords per node (default: 8)")


def add_offline_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--offline`: models and SAEs only from the local Hugging Face cache (as HF_HUB_OFFLINE=1)."""
    parser.add_argument(
        "--offline",
        action="store_true",
        help="load models and SAEs only from the local Hugging Face cache, never download "
        "(default: download what is missing, unless HF_HUB_OFFLINE=1)",
    )


def add_cache_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="the map store (default: $VISTA_CACHE, ./cache in a checkout, else the user cache dir)",
    )


def _sae_source(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    if bool(args.sae) == bool(args.sae_path):
        raise ValueError("give exactly one of --sae RELEASE/SAE_ID and --sae-path DIR")
    return _named_sae(args.sae, args.sae_path, "--sae")


def _named_sae(name: str | None, path: str | None, option: str) -> tuple[str | None, str | None, str | None]:
    """(release, sae_id, path) of an SAE named by `option` RELEASE/SAE_ID or its `-path` DIR (one of them given)."""
    if path:
        return None, None, path
    release, _, sae_id = (name or "").partition("/")
    if not release or not sae_id:
        raise ValueError(f"{option} wants RELEASE/SAE_ID, got {name!r}")
    return release, sae_id, None


def _children_source(args: argparse.Namespace) -> ChildrenConfig | None:
    """`--also-sae` / `--also-sae-path` with `--children-k`, or None when no second SAE is asked for."""
    from pipeline.harvest.config import ChildrenConfig

    if args.also_sae and args.also_sae_path:
        raise ValueError("give at most one of --also-sae RELEASE/SAE_ID and --also-sae-path DIR")
    if not args.also_sae and not args.also_sae_path:
        if args.children_k is not None:
            raise ValueError("--children-k needs --also-sae RELEASE/SAE_ID or --also-sae-path DIR")
        return None
    if args.children_k is not None and args.children_k < 1:
        raise ValueError(f"--children-k must be at least 1, got {args.children_k}")
    release, sae_id, path = _named_sae(args.also_sae, args.also_sae_path, "--also-sae")
    k = {} if args.children_k is None else {"k": args.children_k}
    return ChildrenConfig(sae_release=release, sae_id=sae_id, sae_path=path, **k)


def map_step_configs(args: argparse.Namespace) -> dict[str, Any]:
    """The layout, cluster, keywords and fidelity configs of a map, from the options `build` and
    `atlas build` share (`add_shape_arguments`)."""
    from pipeline import cluster, fidelity, keywords, layout  # imported with the build, not for --help

    return {
        "layout": layout.LayoutConfig(
            lam=args.lam, n_neighbors=args.n_neighbors, min_dist=args.min_dist, seed=args.seed
        ),
        "cluster": cluster.ClusterConfig(
            min_cluster_size=args.min_cluster_size,
            min_samples=args.min_samples,
            max_depth=args.max_depth,
            lift_share=args.lift_share,
            seed=args.seed,
        ),
        "keywords": keywords.KeywordsConfig(n_keywords=args.n_keywords),
        "fidelity": fidelity.FidelityConfig(lam=args.lam),
    }


def build_config_from_args(args: argparse.Namespace) -> BuildConfig:
    """A BuildConfig from parsed `build` options (configs validate themselves)."""
    from pipeline import harvest
    from pipeline.build import BuildConfig

    release, sae_id, sae_path = _sae_source(args)
    hook = args.hook
    if hook is None:
        from pipeline.harvest.preflight import default_hook

        hook = default_hook(sae_release=release, sae_id=sae_id, sae_path=sae_path)
    return BuildConfig(
        harvest=harvest.HarvestConfig(
            model=args.model,
            hook=hook,
            latents=tuple(dict.fromkeys(args.latents)),
            corpus=tuple(args.corpus),
            sae_release=release,
            sae_id=sae_id,
            sae_path=sae_path,
            top_n=args.top_n,
            window=args.window,
            max_length=args.max_length,
            batch_size=args.batch_size,
            text_field=args.text_field,
            device=args.device,
            max_tokens=args.max_tokens,
            dedupe=not args.keep_duplicates,
            quantiles=args.quantiles,
            per_quantile=args.per_quantile,
            negatives=args.negatives,
            children=_children_source(args),
        ),
        **map_step_configs(args),
        map_prefix=args.map_prefix,
        force=args.force,
        force_hook=args.force_hook,
    )


def cmd_build(args: argparse.Namespace) -> int:
    """`build`: check every input from small files first (one line, in seconds), then load, harvest and map."""
    from pipeline.build import build
    from pipeline.harvest.preflight import check

    cfg = build_config_from_args(args)
    check(cfg.harvest, force_hook=cfg.force_hook)
    store = Store(resolve_store(args.cache))
    with rich_reporter() as report:
        built = build(cfg, store, report, notice=say)
    return _announce(built)


def _announce(built: Sequence[BuiltMap]) -> int:
    """Say on stderr what each map needed; print its path on stdout (read by `vista`)."""
    for item in built:
        how = "up to date" if not item.computed_steps else f"computed {', '.join(item.computed_steps)}"
        stderr.print(f"[green]✓[/] {item.map_id} ({how})")
        print(item.path, flush=True)
    return 0


DEMO_RAY_MIN_CPUS = 3
"""The demo's atlas goes on Ray from this many cores: on two, Ray's start, one model load per actor and
a UMAP warm-up per worker cost more than they save (measured: a fresh demo took 4:19 in process and
5:17–7:30 on Ray), and the first demo must end within five minutes."""


def demo_on_ray(no_ray: bool, ray_installed: bool, cpus: int | None = None) -> bool:
    """Whether the demo builds its atlas on local Ray: when Ray is installed, not --no-ray, and the
    machine has at least DEMO_RAY_MIN_CPUS cores."""
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return ray_installed and not no_ray and cores >= DEMO_RAY_MIN_CPUS


def cmd_demo(args: argparse.Namespace) -> int:
    """`demo`: the SAE and the maps (their paths printed first), then the atlas on local Ray when
    `demo_on_ray` says so, else in this process; its path printed last."""
    from pipeline.atlas.build import build_atlas
    from pipeline.atlas.engine import open_engine, ray_available
    from pipeline.demo.run import DemoConfig, run_demo

    cfg = DemoConfig.from_args(args)
    store = Store(resolve_store(args.cache))
    with rich_reporter() as report:
        demo = run_demo(cfg, store, report, notice=say)
    code = _announce(demo.maps)
    if demo.atlas is None:
        return code
    engine = open_engine(demo_on_ray(args.no_ray, ray_available()), None)
    try:
        with interrupts.live_display(engine.close), rich_reporter(eta=True) as report:
            outcome = build_atlas(demo.atlas, store, engine, report)
    finally:
        engine.close()
    return announce_atlas(outcome)


def add_atlas_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `atlas build`."""
    what = parser.add_argument_group("what to map")
    add_model_argument(what)
    what.add_argument("--hook", required=True, help="layer index (output of that block) or a module path")
    what.add_argument(
        "--sae", metavar="RELEASE/SAE_ID", help="sae-lens release and SAE id (downloaded unless --offline)"
    )
    what.add_argument("--sae-release", metavar="R", help="sae-lens release (with --sae-id)")
    what.add_argument("--sae-id", metavar="I", help="SAE id within --sae-release")
    what.add_argument("--sae-path", metavar="DIR", help="an SAE saved by sae-lens (cfg.json + weights)")
    add_corpus_arguments(what)
    what.add_argument(
        "--latents",
        default="all",
        metavar="all|A-B|a,b,c",
        help="every latent, a range (both ends included) or a list, whose order the browser opens in (default: all)",
    )

    add_harvest_arguments(parser)
    add_shape_arguments(parser)

    run = parser.add_argument_group("where it runs")
    run.add_argument("--ray", action="store_true", help="run on a local Ray instance (passes sharded, maps as tasks)")
    run.add_argument("--ray-address", metavar="HOST:PORT", help="join the Ray cluster whose head is at HOST:PORT")
    out = parser.add_argument_group("output")
    out.add_argument("--force", action="store_true", help="harvest again and rebuild every map")
    add_cache_argument(out)
    add_offline_argument(out)


def atlas_config_from_args(args: argparse.Namespace) -> AtlasConfig:
    """An AtlasConfig from parsed `atlas build` options (configs validate themselves)."""
    from pipeline.atlas.build import AtlasConfig
    from pipeline.atlas.config import AtlasHarvestConfig, listed_order

    given = [bool(args.sae), bool(args.sae_release or args.sae_id), bool(args.sae_path)]
    if sum(given) != 1:
        raise ValueError("give exactly one of --sae RELEASE/SAE_ID, --sae-release R --sae-id I, and --sae-path DIR")
    release, sae_id = args.sae_release, args.sae_id
    if args.sae:
        release, _, sae_id = args.sae.partition("/")
    if not args.sae_path and (not release or not sae_id):
        raise ValueError("an SAE by name needs both a release and an id: --sae-release R --sae-id I")
    return AtlasConfig(
        harvest=AtlasHarvestConfig(
            model=args.model,
            hook=args.hook,
            corpus=tuple(args.corpus),
            latents=args.latents,
            sae_release=release if not args.sae_path else None,
            sae_id=sae_id if not args.sae_path else None,
            sae_path=args.sae_path,
            top_n=args.top_n,
            window=args.window,
            max_length=args.max_length,
            batch_size=args.batch_size,
            text_field=args.text_field,
            device=args.device,
            max_tokens=args.max_tokens,
            dedupe=not args.keep_duplicates,
        ),
        **map_step_configs(args),
        first=listed_order(args.latents),  # `--latents 9,3,5`: the browser opens in that order
        force=args.force,
    )


def cmd_atlas_build(args: argparse.Namespace) -> int:
    """`atlas build`: the atlas's maps and files; says what was built on stderr, prints the atlas's path."""
    from pipeline.atlas.build import build_atlas
    from pipeline.atlas.engine import open_engine
    from pipeline.atlas.maps import FAIL_ONCE_ENV

    cfg = atlas_config_from_args(args)
    store = Store(resolve_store(args.cache))
    engine = open_engine(args.ray, args.ray_address, fail_once_dir=os.environ.get(FAIL_ONCE_ENV) or None)
    try:
        with interrupts.live_display(engine.close), rich_reporter(eta=True) as report:
            outcome = build_atlas(cfg, store, engine, report)
    finally:
        engine.close()
    return announce_atlas(outcome)


def announce_atlas(outcome: AtlasReport) -> int:
    """Say on stderr what the atlas build did; print the atlas's path on stdout (read by `vista`).

    Exit status 1 when some maps failed to build (a rerun builds only those), else 0.
    """
    built = outcome.built_now + outcome.up_to_date
    stderr.print(
        f"[green]✓[/] atlas {escape(outcome.atlas_dir.name)}: {built} of {outcome.n_latents} latents mapped "
        f"({outcome.built_now} built now, {outcome.up_to_date} up to date)",
        soft_wrap=True,
    )
    if outcome.unbuildable:
        reasons: dict[str, list[int]] = {}
        for latent, why in outcome.unbuildable.items():
            reasons.setdefault(why.split(" (")[0].split(" on ")[0], []).append(latent)
        for why, latents in reasons.items():
            shown = ", ".join(map(str, latents[:8])) + (f" … ({len(latents)} in all)" if len(latents) > 8 else "")
            say(f"  no map, {why}: {shown}")
    print(outcome.atlas_dir, flush=True)
    if outcome.failed:
        latent, why = next(iter(outcome.failed.items()))
        stderr.print(
            f"[bold red]error:[/] {len(outcome.failed)} map build(s) failed (latent {latent}: {escape(why)}); "
            "run the same command again to build only those",
            soft_wrap=True,
        )
        return EXIT_FAILED
    return 0


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that name and drive the LLM, shared by `label` and `score`."""
    parser.add_argument(
        "--backend",
        choices=("openai", "transformers"),
        default="openai",
        help="an OpenAI-compatible endpoint, or a local transformers chat model (default: openai)",
    )
    parser.add_argument(
        "--base-url", help="OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (default: $VISTA_LLM_BASE_URL)"
    )
    parser.add_argument(
        "--model",
        help="model name sent to the endpoint (default: $VISTA_LLM_MODEL); with --backend transformers, "
        "the local model directory",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="requests in flight; with --backend transformers, prompts generated in one batch (default: 4)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    parser.add_argument(
        "--retries",
        type=int,
        default=4,
        help="retries on 429, 5xx and timeouts; never on a refused connection, another 4xx or 501 (default: 4)",
    )
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the API key (default: $VISTA_LLM_API_KEY or $OPENAI_API_KEY)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=300, help="longest reply, in tokens (default: 300)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy, reproducible answers (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampled answers (default: 0)")
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device of --backend transformers; 'auto' = cuda, else mps, else cpu (default: auto)",
    )
    parser.add_argument(
        "--price-in",
        type=float,
        metavar="USD",
        help="USD per million prompt tokens, for the cost estimate (default: $VISTA_LLM_PRICE_IN)",
    )
    parser.add_argument(
        "--price-out",
        type=float,
        metavar="USD",
        help="USD per million completion tokens (default: $VISTA_LLM_PRICE_OUT)",
    )


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `label`."""
    parser.add_argument(
        "map_dir",
        metavar="MAP",
        help="map id, a unique prefix or suffix of one, its latent (702 or L702), or a map directory",
    )
    add_cache_argument(parser)
    parser.add_argument(
        "--no-agreement", action="store_true", help="skip scoring how far the readings agree (MiniLM; on by default)"
    )
    parser.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="NODE",
        help="label only this node: its path (1.3), root, or at least 4 characters of its id "
        "(`vista tree MAP`); repeatable (default: all)",
    )
    add_llm_arguments(parser)
    parser.add_argument("--n-contexts", type=int, default=12, help="contexts quoted per node (default: 12)")


def _env(*names: str) -> str | None:
    """The first of the named environment variables that is set and not empty."""
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _env_price(name: str) -> float | None:
    """A price in USD per million tokens from the environment; None when unset."""
    value = _env(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"${name} must be a price in USD per million tokens, got {value!r}") from None


def label_config(args: argparse.Namespace) -> LabelConfig:
    """The `label` arguments as a LabelConfig; where an option is not given, the environment's default.

    The environment is read here, not in the config: LabelConfig stays plain data, validated without I/O.
    """
    from pipeline.label import LabelConfig

    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
    else:
        api_key = _env("VISTA_LLM_API_KEY", "OPENAI_API_KEY")
    return LabelConfig(
        backend=args.backend,
        base_url=args.base_url or _env("VISTA_LLM_BASE_URL", "OPENAI_BASE_URL"),
        model=args.model or _env("VISTA_LLM_MODEL"),
        api_key=api_key,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        retries=args.retries,
        n_contexts=getattr(args, "n_contexts", 12),
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
        device=args.device,
        price_in=args.price_in if args.price_in is not None else _env_price("VISTA_LLM_PRICE_IN"),
        price_out=args.price_out if args.price_out is not None else _env_price("VISTA_LLM_PRICE_OUT"),
    )


def label_targets(map_dir: Path, names: Sequence[str]) -> list[str]:
    """The node ids `--node` names (paths, `root`, ids or prefixes of 4 or more, as every `vista` command
    takes them); a one-line NodeNameError (a ValueError) for a name that picks no single node."""
    from vista_tui.core.node_names import NodeNames
    from vista_tui.mapdata import MapReader, verify_map

    verify_map(map_dir)
    names_of_map = NodeNames(MapReader(map_dir).tree, map_dir.name)
    return list(dict.fromkeys(names_of_map.resolve(name) for name in names))


def cmd_label(args: argparse.Namespace) -> int:
    """`label`: label the map's nodes, then score their agreement; prints the map's path."""
    from pipeline import label

    args.map_dir = Store(resolve_store(args.cache)).find_map(args.map_dir)
    if args.nodes:
        args.nodes = label_targets(args.map_dir, args.nodes)
    cfg = label_config(args)
    label.check_local_model(cfg)  # a wrong --model is one line, before any progress bar
    with rich_reporter() as report:
        result = label.run(cfg, args.map_dir, node_ids=args.nodes, progress=report("label", "label nodes (LLM)"))
        if result.n_ok and not args.no_agreement:
            from pipeline import agreement

            progress = report("agreement", "agreement: LLM label vs visual prompt vs keywords (MiniLM)")
            scored = agreement.run(agreement.Config(), args.map_dir)
            progress(1, 1, f"{scored} nodes")
    more = f"  … and {result.n_failed - 5} more (label_status in the tree)"
    return _finish(
        result.summary(), result.failures, more, result.map_dir, label_exit_code(result), lambda: label_problem(result)
    )


def _finish(
    summary: list[str], failures: dict[str, str], more: str, map_dir: Path, code: int, problem: Callable[[], str]
) -> int:
    """End a `label` or `score` run: its summary and first failures on stderr, the map's path on stdout, and,
    when `code` is not 0, one `error:` line saying what went wrong (`problem()`); returns `code`."""
    outcome, *details = summary
    mark = "[yellow]![/]" if failures else "[green]✓[/]"
    stderr.print(f"{mark} {escape(outcome)}", soft_wrap=True)
    for line in details:
        stderr.print(f"  {line}", soft_wrap=True, markup=False)
    for what, reason in list(failures.items())[:5]:
        stderr.print(f"  {what}: {reason}", soft_wrap=True, markup=False)
    if len(failures) > 5:
        stderr.print(more, soft_wrap=True, markup=False)
    print(map_dir, flush=True)
    if code != 0:
        # Last, so that the line a caller keeps (the TUI's toast) says what went wrong and what to do.
        stderr.print(f"[bold red]error:[/] {escape(_one_line(problem()))}", soft_wrap=True)
    return code


def label_exit_code(result: LabelReport) -> int:
    """0 when no node failed; EXIT_FAILED when some were labelled and some failed; EXIT_BAD_INPUT when none was."""
    if not result.failures:
        return 0
    return EXIT_FAILED if result.n_ok else EXIT_BAD_INPUT


def label_problem(result: LabelReport) -> str:
    """What went wrong in a run with failed nodes, and what to do, for the one `error:` line."""
    if result.stopped:
        return result.stopped
    first = next(iter(result.failures.values()))
    if result.n_ok:
        return (
            f"{result.n_failed} of {result.n_nodes} nodes could not be labelled (e.g. {first}); "
            "run it again to ask for those only"
        )
    return f"no node could be labelled ({result.n_failed} failed, e.g. {first}); see the reasons above"


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `score`."""
    from pipeline.score import LLM_SCORERS, NEGATIVE_SOURCES

    parser.add_argument(
        "map_dir",
        metavar="MAP",
        help="map id, a unique prefix or suffix of one, its latent (702 or L702), or a map directory",
    )
    add_cache_argument(parser)
    parser.add_argument(
        "--scorer",
        action="append",
        dest="scorers",
        choices=(*LLM_SCORERS, "embedding"),
        help="detection or fuzzing (an LLM: give --base-url or --backend transformers), or embedding (MiniLM, "
        "offline); repeatable (default: embedding)",
    )
    parser.add_argument(
        "--negatives",
        choices=NEGATIVE_SOURCES,
        default="random",
        help="non-activating items: random (the harvest's all-zero windows), siblings (the parent's other contexts), "
        "store (other maps' contexts) (default: random)",
    )
    parser.add_argument(
        "--node",
        action="append",
        dest="nodes",
        metavar="NODE",
        help="score only this node: its path (1.3), root, or at least 4 characters of its id (`vista tree MAP`); "
        "repeatable (default: every node but noise)",
    )
    parser.add_argument(
        "--n-positive", type=int, default=20, help="held-out contexts per node shown to an LLM scorer (default: 20)"
    )
    parser.add_argument(
        "--n-negative", type=int, default=20, help="non-activating items per node shown to an LLM scorer (default: 20)"
    )
    parser.add_argument("--items-per-request", type=int, default=10, help="items quoted per request (default: 10)")
    parser.add_argument(
        "--label-contexts",
        type=int,
        default=12,
        help="contexts `vista label` quoted per node (its --n-contexts): not held out (default: 12)",
    )
    add_llm_arguments(parser)


def score_config(args: argparse.Namespace) -> ScoreConfigType:
    """The `score` arguments as a ScoreConfig (the LLM's settings only when an LLM scorer is asked for)."""
    from pipeline.score import LLM_SCORERS, ScoreConfig

    scorers = tuple(args.scorers or ("embedding",))
    llm = label_config(args) if any(scorer in LLM_SCORERS for scorer in scorers) else None
    return ScoreConfig(
        scorers=scorers,
        negatives=args.negatives,
        llm=llm,
        n_positive=args.n_positive,
        n_negative=args.n_negative,
        items_per_request=args.items_per_request,
        label_contexts=args.label_contexts,
        seed=args.seed,
    )


def score_table(report: ScoreReport, map_dir: Path) -> Table:
    """This run's scores as a table: one row per node and reading, one column per scorer."""
    from vista_tui.core.node_names import NodeNames
    from vista_tui.core.sanitize import sanitize
    from vista_tui.mapdata import READING_KINDS, SCORERS, MapReader

    tree = MapReader(map_dir).tree
    names = NodeNames(tree, map_dir.name)
    scorers = [
        scorer
        for scorer in SCORERS
        if any(scorer in r for n in report.scores.nodes.values() for r in n.readings.values())
    ]
    table = Table(box=None, pad_edge=False)
    table.add_column("node")
    table.add_column("reading")
    table.add_column("text", max_width=48, no_wrap=True, overflow="ellipsis")
    for scorer in scorers:
        table.add_column(scorer, justify="right")
    for node_id in names.walk():
        scores = report.scores.nodes.get(node_id)
        if scores is None:
            continue
        first = True
        for kind in READING_KINDS:
            by_scorer = scores.readings.get(kind)
            if not by_scorer:
                continue
            text = next(iter(by_scorer.values())).explanation
            cells = []
            for scorer in scorers:
                found = by_scorer.get(scorer)
                cells.append("" if found is None else "–" if found.score != found.score else f"{found.score:.2f}")
            table.add_row(names.paths[node_id] if first else "", kind, Text(sanitize(text, 48)), *cells)
            first = False
    return table


def cmd_score(args: argparse.Namespace) -> int:
    """`score`: score every reading of the map's nodes; prints the table on stderr and the map's path on stdout."""
    from pipeline import score

    args.map_dir = Store(resolve_store(args.cache)).find_map(args.map_dir)
    if args.nodes:
        args.nodes = label_targets(args.map_dir, args.nodes)
    cfg = score_config(args)
    with rich_reporter() as report:
        result = score.run(cfg, args.map_dir, node_ids=args.nodes, progress=report("score", "score readings"))
    stderr.print(score_table(result, args.map_dir))
    more = f"  … and {result.n_failed - 5} more"
    code = score_exit_code(result)
    return _finish(result.summary(), result.failures, more, result.map_dir, code, lambda: score_problem(result))


def score_exit_code(result: ScoreReport) -> int:
    """0 when no request failed; EXIT_FAILED when some did and something was scored; EXIT_BAD_INPUT when nothing was."""
    if not result.n_scored:
        return EXIT_BAD_INPUT
    return EXIT_FAILED if result.failures else 0


def score_problem(result: ScoreReport) -> str:
    """What went wrong in a run that failed in part or whole, and what to do, for the one `error:` line."""
    if result.stopped:
        return result.stopped
    if not result.failures:
        return "nothing could be scored: no node has both held-out contexts and negatives"
    first = next(iter(result.failures.values()))
    if result.n_scored:
        return f"{result.n_failed} requests failed (e.g. {first}); run it again to ask for those only"
    return f"nothing could be scored ({result.n_failed} requests failed, e.g. {first}); see the reasons above"


MATCH_EXIT_STATUS = """\
exit status:
  0    the table is written (the last line says where)
  2    nothing was written: an SAE that is not there (a missing folder, an unknown release or
       id, not in the local cache with --offline), or two SAEs that read activations of
       different widths
  130  interrupted; nothing is written until the table is whole"""
"""The `match` command's exit codes, as its --help tells them."""

MATCH_DESCRIPTION = """\
Which latent of SAE B is which latent of SAE A, by the directions they write (decoder rows) and
read (encoder columns): a wider SAE of the same family, another seed, another L0.

SAE_A and SAE_B are named as `vista build` names them in a map: the folder sae-lens saved
(cfg.json + sae_weights.safetensors), or RELEASE/SAE_ID from sae-lens's pretrained directory,
e.g. gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical (downloaded unless --offline).
Both must read activations of the same width (one model and hook).

For every latent of A the table keeps:
  - its top-k latents of B by decoder cosine and by encoder cosine;
  - its partner in the one-to-one (Hungarian) matching that maximises the total decoder
    cosine, as Paulo & Belrose align SAEs across seeds.
The summary gives the mean matched cosine and the share of A's latents whose partner reaches
--threshold. A cosine near 1 is the same latent learnt twice; a latent that splits in a wider
SAE has several neighbours at similar, lower cosines (only one can be its partner).

Up to 2^24 pairs of latents (e.g. 2k x 8k) the matching is solved on the full
cosine matrix: exact. Wider (e.g. 16k x 16k) the matrix is never built: the matching is the
best among each latent's top --candidates partners in both directions (solved exactly on that
sparse graph), and it is compared with an upper bound (each latent's best cosine): the table
says "exact" when it reaches it, else how far below exact its mean cosine can be at most.

The table goes to STORE/matches/<A>__vs__<B>_<hash>/ (manifest.json + matches.parquet, see
cache/README.md); the explorer lists a map's latent's matches from it."""
"""The `match` command's --help text."""


def add_match_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `match`."""
    parser.add_argument("sae_a", metavar="SAE_A", help="the SAE whose latents are matched: a folder or RELEASE/SAE_ID")
    parser.add_argument("sae_b", metavar="SAE_B", help="the SAE they are matched in: a folder or RELEASE/SAE_ID")
    parser.add_argument(
        "--k", type=int, default=8, help="neighbours in B kept per latent of A, by decoder and by encoder (default: 8)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="COS",
        default=0.7,
        help="a matched pair counts as shared at or above this decoder cosine (default: 0.7)",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        metavar="C",
        default=32,
        help="above 2^24 pairs: partners considered per latent, in each direction (default: 32); more is "
        "slower and closer to exact",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="torch device for the cosines; 'auto' = cuda, else mps, else cpu (default: auto)",
    )
    add_offline_argument(parser)
    add_cache_argument(parser)


def cmd_match(args: argparse.Namespace) -> int:
    """`match`: the match table of two SAEs; its summary on stderr, the table's path on stdout."""
    from pipeline.match.run import MatchConfig, check, run

    cfg = MatchConfig(k=args.k, threshold=args.threshold, candidates=args.candidates, device=args.device)
    check(args.sae_a, args.sae_b)  # a wrong name or width is one line, before any progress bar
    store = Store(resolve_store(args.cache))
    with rich_reporter() as report:
        outcome = run(cfg, args.sae_a, args.sae_b, store, report)
    first, *rest = outcome.summary()
    stderr.print(f"[green]✓[/] {escape(first)}", soft_wrap=True)
    for line in rest:
        say(f"  {line}")
    print(outcome.path, flush=True)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vista", description="VISTA precompute pipeline")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build",
        help="harvest contexts of latents and build their maps",
        description="Run model + SAE over a corpus, keep each latent's top contexts, and build one map per "
        "latent (VISTA distance → UMAP → HDBSCAN cluster tree → keywords → mutual-kNN fidelity). "
        "Finished steps are reused when run again with the same inputs.",
    )
    add_build_arguments(build)
    build.set_defaults(run=cmd_build)
    demo = commands.add_parser(
        "demo",
        help="build the offline demo maps (MiniLM + a small SAE over stdlib docstrings)",
        description="Offline demo: trains (once) a TopK SAE on all-MiniLM-L6-v2 activations over the Python "
        "standard library's docstrings, picks latents with rich structure and builds their maps, then a small "
        "atlas of its most varied latents (on local Ray when installed).",
    )
    from pipeline.demo.run import add_demo_arguments

    add_demo_arguments(demo)
    add_cache_argument(demo)
    demo.set_defaults(run=cmd_demo)
    label_parser = commands.add_parser(
        "label",
        help="name every node of a map with an LLM (OpenAI-compatible endpoint or a local transformers model)",
        description="Ask an LLM for a label, an explanation and a visual prompt per node, leaves first.\n"
        "Answers are cached in MAP/labels.jsonl as they arrive, so a rerun asks only for what is missing.",
        epilog=LABEL_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_label_arguments(label_parser)
    label_parser.set_defaults(run=cmd_label)
    score_parser = commands.add_parser(
        "score",
        help="score every reading of every node (LLM label, explanation, visual prompt, keywords, focus tokens, "
        "published explanation) against the contexts",
        description="Score how well each reading of a node predicts where the latent fires: detection and fuzzing\n"
        "(an LLM, balanced accuracy) and embedding (MiniLM, ROC AUC), on the node's held-out contexts and\n"
        "non-activating items. Writes MAP/scores.json (merged: scorers run apart accumulate), with the\n"
        "published explanation's coverage of the first-level clusters. LLM answers are cached in\n"
        "MAP/scores_cache.jsonl as they arrive, so a rerun asks only for what is missing.",
        epilog=SCORE_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_score_arguments(score_parser)
    score_parser.set_defaults(run=cmd_score)
    match = commands.add_parser(
        "match",
        help="match two SAEs' latents by decoder direction: top-k neighbours and a one-to-one matching",
        description=MATCH_DESCRIPTION,
        epilog=MATCH_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_match_arguments(match)
    match.set_defaults(run=cmd_match)
    atlas = commands.add_parser("atlas", help="an atlas: every latent of an SAE, harvested once, a map each")
    atlas_commands = atlas.add_subparsers(dest="atlas_command", required=True, metavar="COMMAND")
    atlas_build = atlas_commands.add_parser(
        "build",
        help="harvest every requested latent in two passes and build a map per latent",
        description="Pass 1 keeps every requested latent's top-N tokens and statistics in one sweep of the corpus; "
        "pass 2 materialises the selected contexts; then one map per latent. In this process, or on Ray "
        "(--ray, --ray-address). A rerun skips the harvest and every map already built.",
    )
    add_atlas_arguments(atlas_build)
    atlas_build.set_defaults(run=cmd_atlas_build)
    return parser


OFFLINE_COMMANDS = ("demo", "label")
"""Commands that keep the Hugging Face hub off unless the user set HF_HUB_OFFLINE: the demo runs on what the
project ships, and `label` loads a chat model from a directory. `build` and `atlas build` download models
and SAEs as transformers and sae-lens do, unless `--offline`."""


def argv_command(argv: Sequence[str] | None) -> str | None:
    """The subcommand of a `python -m pipeline` command line (its first word), None when there is none."""
    words = list(sys.argv[1:] if argv is None else argv)
    return words[0] if words else None


def apply_offline(args: argparse.Namespace) -> None:
    """`--offline`: the hub stays off for this process (models and SAEs only from the local cache)."""
    if getattr(args, "offline", False):
        os.environ["HF_HUB_OFFLINE"] = "1"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line on stderr and a non-zero exit for anything the user can fix."""
    if argv_command(argv) in OFFLINE_COMMANDS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our rich bars report progress; the libraries' own tqdm bars would tear them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # sae-lens's trainer draws a tqdm bar
    # Spinning OpenMP threads starve each other when the cores are shared (3x slower forward).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = make_parser().parse_args(argv)
    apply_offline(args)
    with interrupts.installed(args.command, say):
        try:
            return int(args.run(args))
        except KeyboardInterrupt:
            interrupts.leave()  # one line, exit 130, no finalizer noise (pipeline.interrupts says why)
        except (ValueError, MapError, FileNotFoundError, PermissionError) as error:
            stderr.print(f"[bold red]error:[/] {_one_line(error)}", soft_wrap=True)
            return EXIT_BAD_INPUT
        except MemoryError:
            stderr.print("[bold red]error:[/] out of memory; lower --top-n or --batch-size", soft_wrap=True)
            return EXIT_FAILED


def _one_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
