"""The `vista` command.

Map-reading commands run here; `build` and `demo` run the pipeline in a child process
(`python -m pipeline`), so this process never imports torch or the pipeline.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from vista_tui import __version__
from vista_tui.cli.render import add_render_parser
from vista_tui.cli.triage import add_annotate_parsers
from vista_tui.mapdata import MapError, Store, resolve_store, verify_map
from vista_tui.tui.graphics import GRAPHICS_MODES

PIPELINE_COMMANDS = {
    "build": "harvest contexts of latents and build their maps (see `vista build --help`)",
    "demo": "build the offline demo maps (MiniLM + a small SAE over stdlib docstrings) and open them",
    "label": "name every node with an LLM (OpenAI-compatible endpoint or local model): label, explanation, visual prompt",
}
EXIT_BAD_INPUT = 2

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def _error(message: str, code: int = EXIT_BAD_INPUT) -> int:
    stderr.print(f"[bold red]error:[/] {' '.join(message.split())}", soft_wrap=True)
    return code


def pipeline_missing() -> str | None:
    """Why the pipeline cannot run in this environment, or None when it can."""
    for module, extra in (("pipeline", "pipeline"), ("torch", "pipeline"), ("umap", "pipeline")):
        if importlib.util.find_spec(module) is None:
            return f"the pipeline is not installed here ({module} is missing): pip install 'vista-tui[{extra}]'"
    return None


def run_pipeline(command: str, args: Sequence[str]) -> tuple[int, list[Path]]:
    """Run `python -m pipeline COMMAND ARGS`; returns its exit code and the map paths it printed."""
    if any(arg in ("-h", "--help") for arg in args):
        return subprocess.call([sys.executable, "-m", "pipeline", command, *args]), []
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    with subprocess.Popen(
        [sys.executable, "-m", "pipeline", command, *args], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        paths = [Path(line.strip()) for line in child.stdout if line.strip()]
        code = child.wait()
    return code, paths


def print_summaries(paths: Sequence[Path]) -> int:
    from vista_tui.cli.summary import map_summary
    from vista_tui.mapdata import MapReader

    for path in paths:
        try:
            stdout.print(map_summary(MapReader(path)))
        except MapError as error:
            return _error(str(error))
        stdout.print()
    return 0


def cmd_pipeline(command: str, args: Sequence[str]) -> int:
    """`vista build|demo`: run the pipeline, print what it built; the demo then opens its first map."""
    missing = pipeline_missing()
    if missing:
        return _error(missing)
    no_open = "--no-open" in args
    try:
        code, paths = run_pipeline(command, args)
    except KeyboardInterrupt:
        return 130
    if code != 0 or any(arg in ("-h", "--help") for arg in args):
        return code
    code = print_summaries(paths)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if code == 0 and command == "demo" and paths and interactive and not no_open:
        return explore(Store(paths[0].parent.parent), paths[0])
    return code


def explore(
    store: Store,
    map_path: Path | None,
    graphics: str | None = None,
    model: str | None = None,
    config: str | None = None,
) -> int:
    """Run the TUI (on the picker when no map is given)."""
    if map_path is not None:
        try:
            verify_map(map_path)
        except MapError as error:
            return _error(str(error))
    from vista_tui.core.annotations import AnnotationError, load_config

    try:
        triage_config = load_config(Path(config) if config else None)
    except AnnotationError as error:
        return _error(str(error))
    from vista_tui.tui.graphics import graphics_mode, probe_graphics

    try:
        graphics = graphics_mode(graphics)
    except ValueError as error:
        return _error(str(error))
    if graphics == "auto":
        graphics = probe_graphics()  # asks the terminal: before Textual takes it over
    from vista_tui.tui.app import VistaApp  # Textual loads only for the TUI commands

    app = VistaApp(store, map_path, graphics=graphics, diffusion_model=model, triage_config=triage_config)
    try:
        app.run()
    finally:
        if app._renders is not None:
            app._renders.close(timeout=2.0)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    store = Store(resolve_store(args.cache))
    if args.map is None:
        return explore(store, None, args.graphics, args.model, args.config)
    try:
        path = store.find_map(args.map)
    except MapError as error:
        return _error(str(error))
    return explore(store, path, args.graphics, args.model, args.config)


def cmd_summary(args: argparse.Namespace) -> int:
    store = Store(resolve_store(args.cache))
    try:
        path = store.find_map(args.map)
    except MapError as error:
        return _error(str(error))
    return print_summaries([path])


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = Store(resolve_store(args.cache))
    entries = store.list_maps()
    if not entries:
        stderr.print(f"no maps in {store.maps_dir}; run `vista demo` or `vista build`")
        return 0
    table = Table(title=f"maps in {store.maps_dir}", title_justify="left")
    for column in ("map", "latent", "model", "SAE", "contexts", "built"):
        table.add_column(column, justify="right" if column in ("latent", "contexts") else "left")
    for entry in entries:
        if entry.manifest is None:
            table.add_row(entry.map_id, "", "", "", "", f"[red]{entry.error}[/]")
            continue
        prov = entry.manifest.provenance
        table.add_row(
            entry.map_id, str(prov.latent), prov.model, prov.sae, f"{prov.n_contexts:,}", entry.manifest.created[:16]
        )
    stdout.print(table)
    return 0


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vista",
        description="Explore what an SAE latent represents: its contexts as a map, a tree of sub-senses, labels.",
    )
    parser.add_argument("--version", action="version", version=f"vista-tui {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in PIPELINE_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("--cache", metavar="DIR", help="the map store (default: $VISTA_CACHE, ./cache, user cache)")
    exploring = commands.add_parser("explore", help="open a map in the explorer (no map: the map picker)")
    exploring.add_argument("map", nargs="?", help="map id in the store, or path to a map directory")
    exploring.add_argument(
        "--graphics",
        choices=GRAPHICS_MODES,
        default=None,
        help="how images are drawn: auto (probe the terminal), kitty, sixel, halfcell, unicode (default: $VISTA_GRAPHICS or auto)",
    )
    exploring.add_argument(
        "--model",
        metavar="DIR_OR_ID",
        default=None,
        help="diffusion model for `r` renders (default: $VISTA_DIFFUSION_MODEL; none: sketches)",
    )
    exploring.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="triage config TOML (default: $VISTA_CONFIG, else the user config dir)",
    )
    exploring.set_defaults(run=cmd_explore)
    add_render_parser(commands)
    add_annotate_parsers(commands)
    listing = commands.add_parser("list", help="list the maps in the store")
    listing.set_defaults(run=cmd_list)
    summary = commands.add_parser("summary", help="print a map's summary: latent, N, tree, keywords, fidelity")
    summary.add_argument("map", help="map id in the store, or path to a map directory")
    summary.set_defaults(run=cmd_summary)
    for sub in (exploring, listing, summary):
        sub.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vista`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PIPELINE_COMMANDS:
        return cmd_pipeline(argv[0], argv[1:])
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return explore(Store(resolve_store(args.cache)), None)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
