"""`vista explore`, `vista list`, `vista summary`: the maps in the store, one map's summary, the explorer."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vista_tui.cli.console import fail, stderr, stdout
from vista_tui.cli.opening import find_map, read_map, store_of
from vista_tui.mapdata import MapError, Store
from vista_tui.tui.graphics import GRAPHICS_MODES


def print_summaries(paths: Sequence[Path], detail: bool = False) -> int:
    """Print each map's summary (what `summary`, `build` and `demo` show; `summary` in `detail`);
    2 at the first unreadable map."""
    from vista_tui.cli.summary import map_summary  # numpy and pyarrow: not on the parser's path

    for path in paths:
        try:
            stdout.print(map_summary(read_map(path), detail=detail))
        except MapError as error:
            return fail(error)
        stdout.print()
    return 0


def explore(
    store: Store,
    map_path: Path | None,
    graphics: str | None = None,
    model: str | None = None,
    config: str | None = None,
) -> int:
    """Run the TUI on a map already found and checked (on the picker when no map is given)."""
    from vista_tui.core.annotations import AnnotationError
    from vista_tui.core.triage_config import load_config

    try:
        triage_config = load_config(Path(config) if config else None)
    except AnnotationError as error:
        return fail(error)
    from vista_tui.tui.graphics import graphics_mode, probe_graphics

    try:
        graphics = graphics_mode(graphics)
    except ValueError as error:
        return fail(error)
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
    """`vista explore [MAP]`: the explorer on a checked map, or the picker; 0 closed, 2 bad input."""
    store = store_of(args)
    if args.map is None:
        return explore(store, None, args.graphics, args.model, args.config)
    try:
        path = find_map(args)
    except MapError as error:
        return fail(error)
    return explore(store, path, args.graphics, args.model, args.config)


def cmd_summary(args: argparse.Namespace) -> int:
    """`vista summary MAP`: latent, N, tree, titles, fidelity and the latent's statistics (histograms,
    focus tokens, logits, quantile examples); 0 done, 2 bad input."""
    try:
        path = find_map(args)
    except MapError as error:
        return fail(error)
    return print_summaries([path], detail=True)


def cmd_list(args: argparse.Namespace) -> int:
    """`vista list`: one row per map in the store, broken ones with why; always 0."""
    from rich.table import Table

    store = store_of(args)
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


def add_explore_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `explore` to `vista`'s subcommands (sets `run=cmd_explore`)."""
    exploring = subparsers.add_parser("explore", help="open a map in the explorer (no map: the map picker)")
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
    return exploring


def add_listing_parsers(subparsers: Any) -> list[argparse.ArgumentParser]:
    """Add `list` and `summary` to `vista`'s subcommands (each sets `run=cmd_…`)."""
    listing = subparsers.add_parser("list", help="list the maps in the store")
    listing.set_defaults(run=cmd_list)
    summary = subparsers.add_parser("summary", help="print a map's summary: latent, N, tree, keywords, fidelity")
    summary.add_argument("map", help="map id in the store, or path to a map directory")
    summary.set_defaults(run=cmd_summary)
    return [listing, summary]
