"""`python -m pipeline build|demo`: the precompute commands behind `vista build` and `vista demo`.

Progress and errors go to stderr; the paths of the maps built go to stdout, one per line,
so that `vista` (which never imports this package) can show them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pipeline import interrupts
from pipeline.argtypes import add_quantile_arguments, int_list
from pipeline.steps import Progress as StepProgress
from vista_tui.mapdata import MapError, Store, resolve_store

if TYPE_CHECKING:
    from pipeline.atlas.build import AtlasConfig, AtlasReport
    from pipeline.build import BuildConfig, BuiltMap, StepReporter
    from pipeline.label import LabelConfig, LabelReport

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

stderr = Console(stderr=True, highlight=False)


def say(line: str) -> None:
    """One line on stderr, as it is (no markup: it may quote paths), never wrapped."""
    stderr.print(line, soft_wrap=True, markup=False)


@contextmanager
def rich_reporter(eta: bool = False) -> Iterator[StepReporter]:
    """A StepReporter drawing one rich progress bar per step (on stderr); `eta` adds the time left."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
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


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `vista build`."""
    what = parser.add_argument_group("what to map")
    what.add_argument(
        "--model",
        required=True,
        help="Hugging Face model id (downloaded unless --offline) or directory; 'minilm' = the bundled all-MiniLM-L6-v2",
    )
    what.add_argument(
        "--hook", required=True, help="layer index (output of that block) or a module path, e.g. 'model.layers.20'"
    )
    what.add_argument(
        "--sae",
        metavar="RELEASE/SAE_ID",
        help="sae-lens release and SAE id (downloaded unless --offline), e.g. 'gemma-scope-2b-pt-res-canonical/layer_20/width_16k/canonical'",
    )
    what.add_argument("--sae-path", metavar="DIR", help="an SAE saved by sae-lens (cfg.json + weights)")
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
    if args.sae_path:
        return None, None, args.sae_path
    release, _, sae_id = args.sae.partition("/")
    if not release or not sae_id:
        raise ValueError(f"--sae wants RELEASE/SAE_ID, got {args.sae!r}")
    return release, sae_id, None


def build_config_from_args(args: argparse.Namespace) -> BuildConfig:
    """A BuildConfig from parsed `build` options (configs validate themselves)."""
    from pipeline import cluster, fidelity, harvest, keywords, layout
    from pipeline.build import BuildConfig

    release, sae_id, sae_path = _sae_source(args)
    return BuildConfig(
        harvest=harvest.HarvestConfig(
            model=args.model,
            hook=args.hook,
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
        ),
        layout=layout.LayoutConfig(lam=args.lam, n_neighbors=args.n_neighbors, min_dist=args.min_dist, seed=args.seed),
        cluster=cluster.ClusterConfig(
            min_cluster_size=args.min_cluster_size,
            min_samples=args.min_samples,
            max_depth=args.max_depth,
            lift_share=args.lift_share,
            seed=args.seed,
        ),
        keywords=keywords.KeywordsConfig(n_keywords=args.n_keywords),
        fidelity=fidelity.FidelityConfig(lam=args.lam),
        map_prefix=args.map_prefix,
        force=args.force,
    )


def cmd_build(args: argparse.Namespace) -> int:
    from pipeline.build import build

    cfg = build_config_from_args(args)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo.run import DemoConfig, run_demo

    cfg = DemoConfig.from_args(args)
    store = Store(resolve_store(args.cache))
    with rich_reporter() as report:
        built = run_demo(cfg, store, report)
    return _announce(built)


def add_atlas_arguments(parser: argparse.ArgumentParser) -> None:
    """Every option of `atlas build`."""
    what = parser.add_argument_group("what to map")
    what.add_argument(
        "--model", required=True, help="Hugging Face model id (downloaded unless --offline), directory, or 'minilm'"
    )
    what.add_argument("--hook", required=True, help="layer index (output of that block) or a module path")
    what.add_argument(
        "--sae", metavar="RELEASE/SAE_ID", help="sae-lens release and SAE id (downloaded unless --offline)"
    )
    what.add_argument("--sae-release", metavar="R", help="sae-lens release (with --sae-id)")
    what.add_argument("--sae-id", metavar="I", help="SAE id within --sae-release")
    what.add_argument("--sae-path", metavar="DIR", help="an SAE saved by sae-lens (cfg.json + weights)")
    what.add_argument(
        "--corpus",
        action="append",
        required=True,
        metavar="PATH",
        help="text / JSONL / parquet file, or 'python-stdlib-docstrings'; repeatable",
    )
    what.add_argument(
        "--text-field", default="text", help="JSONL key / parquet column holding the text (default: text)"
    )
    what.add_argument(
        "--latents",
        default="all",
        metavar="all|A-B|a,b,c",
        help="every latent, a range (both ends included) or a list (default: all)",
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
    from pipeline import cluster, fidelity, keywords, layout
    from pipeline.atlas.build import AtlasConfig
    from pipeline.atlas.config import AtlasHarvestConfig

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
        layout=layout.LayoutConfig(lam=args.lam, n_neighbors=args.n_neighbors, min_dist=args.min_dist, seed=args.seed),
        cluster=cluster.ClusterConfig(
            min_cluster_size=args.min_cluster_size,
            min_samples=args.min_samples,
            max_depth=args.max_depth,
            lift_share=args.lift_share,
            seed=args.seed,
        ),
        keywords=keywords.KeywordsConfig(n_keywords=args.n_keywords),
        fidelity=fidelity.FidelityConfig(lam=args.lam),
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
    parser.add_argument("--n-contexts", type=int, default=12, help="contexts quoted per node (default: 12)")
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
        n_contexts=args.n_contexts,
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
    outcome, *details = result.summary()
    mark = "[yellow]![/]" if result.n_failed else "[green]✓[/]"
    stderr.print(f"{mark} {escape(outcome)}", soft_wrap=True)
    for line in details:
        stderr.print(f"  {line}", soft_wrap=True, markup=False)
    for node_id, reason in list(result.failures.items())[:5]:
        stderr.print(f"  {node_id}: {reason}", soft_wrap=True, markup=False)
    if result.n_failed > 5:
        stderr.print(f"  … and {result.n_failed - 5} more (label_status in the tree)", soft_wrap=True, markup=False)
    print(result.map_dir, flush=True)
    code = label_exit_code(result)
    if code != 0:
        # Last, so that the line a caller keeps (the TUI's toast) says what went wrong and what to do.
        stderr.print(f"[bold red]error:[/] {escape(_one_line(label_problem(result)))}", soft_wrap=True)
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
        "standard library's docstrings, picks latents with rich structure and builds their maps.",
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
