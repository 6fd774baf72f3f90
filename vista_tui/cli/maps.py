"""`vista explore`, `vista list`, `vista summary`, `vista tree`: the maps in the store, one map's summary,
its tree of nodes with the names commands take, the explorer."""

from __future__ import annotations

import argparse
import gc
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.cli.console import fail, stderr, stdout
from vista_tui.cli.opening import MAP_HELP, find_map, read_map, store_of
from vista_tui.mapdata import (
    MapEntry,
    MapError,
    MapNotFoundError,
    Store,
    is_atlas_dir,
    read_atlas_manifest,
    verify_map,
)
from vista_tui.mapdata.store import SHOWN_MAPS
from vista_tui.tui.graphics import GRAPHICS_MODES

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


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
    atlas_path: Path | None = None,
) -> int:
    """Run the TUI on a map already found and checked, else on an atlas's latent browser, else the picker."""
    from vista_tui.core.annotations import AnnotationError
    from vista_tui.core.blas import one_blas_thread
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
    one_blas_thread()  # before the map's worker imports numpy (vista_tui/core/blas.py)
    # No cyclic GC until the first map, browser or picker is drawn: the app switches it back on then
    # (VistaApp._freeze_heap), with one collection; its collections cost ~50 ms of the first frame.
    gc.disable()
    try:
        from vista_tui.tui.app import VistaApp  # Textual loads only for the TUI commands

        app = VistaApp(
            store,
            map_path,
            graphics=graphics,
            diffusion_model=model,
            triage_config=triage_config,
            atlas_path=atlas_path,
        )
        try:
            app.run()
        finally:
            if app._renders is not None:
                app._renders.close(timeout=2.0)
    finally:
        gc.enable()
    return 0


def find_map_or_atlas(store: Store, name: str) -> tuple[Path | None, Path | None]:
    """(map, None) or (None, atlas) that `name` names: an atlas directory, else a map (`Store.find_map`,
    checked), else an atlas (`Store.find_atlas`, its manifest read); one-line MapError when neither."""
    if is_atlas_dir(Path(name).expanduser()):
        atlas = Path(name).expanduser()
        read_atlas_manifest(atlas)
        return None, atlas
    try:
        map_dir = store.find_map(name)
    except MapNotFoundError as map_error:
        atlases = store.list_atlases()
        if not atlases:
            raise
        try:
            atlas = store.find_atlas(name)
        except MapNotFoundError as atlas_error:
            if "ambiguous" in str(atlas_error) and "ambiguous" not in str(map_error):
                raise atlas_error from None
            known = ", ".join(entry.atlas_id for entry in atlases[:SHOWN_MAPS])
            raise MapNotFoundError(f"{map_error}; no atlas matches it either (atlases: {known})") from None
        read_atlas_manifest(atlas)
        return None, atlas
    verify_map(map_dir)
    return map_dir, None


def cmd_explore(args: argparse.Namespace) -> int:
    """`vista explore [MAP | ATLAS]`: the explorer on a checked map, the latent browser on an atlas, or the
    picker; 0 closed, 2 bad input."""
    store = store_of(args)
    if args.map is None:
        return explore(store, None, args.graphics, args.model, args.config)
    try:
        path, atlas = find_map_or_atlas(store, args.map)
    except MapError as error:
        return fail(error)
    return explore(store, path, args.graphics, args.model, args.config, atlas_path=atlas)


def cmd_summary(args: argparse.Namespace) -> int:
    """`vista summary MAP`: latent, N, tree, titles, fidelity and the latent's statistics (histograms,
    focus tokens, logits, quantile examples); 0 done, 2 bad input."""
    try:
        path = find_map(args)
    except MapError as error:
        return fail(error)
    return print_summaries([path], detail=True)


def cmd_tree(args: argparse.Namespace) -> int:
    """`vista tree MAP [--depth N]`: every node's path, short id, size, mean activation and title; 0 done,
    2 bad input."""
    try:
        path = find_map(args)
        if args.depth is not None and args.depth < 0:
            raise ValueError(f"--depth must be 0 (the root alone) or more, got {args.depth}")
        from vista_tui.cli.tree import tree_view  # numpy and pyarrow: not on the parser's path

        stdout.print(tree_view(read_map(path), args.depth))
    except (MapError, ValueError) as error:
        return fail(error)
    return 0


def built_time(created: str) -> str:
    """`2026-11-01 12:00`: a manifest's ISO time to the minute, with a space a narrow column can wrap at."""
    return created[:16].replace("T", " ")


def map_listing(maps_dir: Path, entries: Sequence[MapEntry], console: Console) -> list[RenderableType]:
    """What `vista list` prints on `console`: every map's whole id, its latent, model, SAE, size and date.

    The id is what every other command takes, so it is never cut or folded: a table when the
    table fits the console's width unwrapped, else two lines per map, the id alone on the first.
    Lines (Text) are printed soft-wrapped: a terminal narrower than an id wraps it without a line
    break in it.
    """
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    from vista_tui.core.sanitize import sanitize

    title = Text(f"maps in {sanitize(str(maps_dir))}", style="italic")
    table = Table()
    for column in ("map", "latent", "model", "SAE", "contexts", "built"):
        table.add_column(column, justify="right" if column in ("latent", "contexts") else "left", no_wrap=True)
    lines: list[RenderableType] = [title]
    broken: list[RenderableType] = []
    for entry in entries:
        map_id = Text(sanitize(entry.map_id))
        if entry.manifest is None:
            error = sanitize(entry.error or "unreadable")
            table.add_row(map_id, "", Text("broken", style="red"), "", "", "")
            broken.append(Text(f"{map_id}: {error}", style="red"))
            lines += [Text(map_id.plain, style="bold"), Text(f"  {error}", style="red")]
            continue
        prov = entry.manifest.provenance
        built = built_time(entry.manifest.created)
        table.add_row(
            map_id,
            str(prov.latent),
            Text(sanitize(prov.model)),
            Text(sanitize(prov.sae)),
            f"{prov.n_contexts:,}",
            built,
        )
        lines += [
            Text(map_id.plain, style="bold"),
            Text(
                f"  latent {prov.latent} · {prov.n_contexts:,} contexts · {sanitize(prov.model)} · "
                f"SAE {sanitize(prov.sae)} · built {built}"
            ),
        ]
    unbounded = console.options.update_width(1_000_000)  # the table as wide as it wants, nothing wrapped
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        return [title, table, *broken]
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    """`vista list`: every map in the store with its whole id, broken ones with why; always 0."""
    store = store_of(args)
    entries = store.list_maps()
    if not entries:
        stderr.print(f"no maps in {store.maps_dir}; run `vista demo` or `vista build`")
        return 0
    from rich.text import Text

    for part in map_listing(store.maps_dir, entries, stdout):
        stdout.print(part, soft_wrap=isinstance(part, Text))
    return 0


def add_explore_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `explore` to `vista`'s subcommands (sets `run=cmd_explore`)."""
    exploring = subparsers.add_parser(
        "explore", help="open a map in the explorer, or an atlas in the latent browser (neither: the picker)"
    )
    exploring.add_argument(
        "map",
        nargs="?",
        metavar="MAP_OR_ATLAS",
        help=f"{MAP_HELP}; or an atlas: its id, a unique prefix or suffix of one, or its directory",
    )
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
    summary.add_argument("map", help=MAP_HELP)
    summary.set_defaults(run=cmd_summary)
    tree = subparsers.add_parser(
        "tree",
        help="print a map's nodes as a tree: path, id, size, mean activation, title",
        description="Every node of the map, one per line, in the explorer's order. Commands that take a node "
        "(render, annotate, label --node) accept its path (1.3 = the third child of the first child; "
        "root or 0 = the root) or at least 4 characters of its id.",
    )
    tree.add_argument("map", help=MAP_HELP)
    tree.add_argument("--depth", type=int, default=None, metavar="N", help="show nodes at most N deep (0: the root)")
    tree.set_defaults(run=cmd_tree)
    return [listing, summary, tree]
