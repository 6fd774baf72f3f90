"""`vista render`: render a node (or the whole map) headless, through the same queue and worker as the TUI.

Progress and notes go to stderr; the image's path goes to stdout, alone on its line, so
scripts can use it. With no diffusion model configured (neither --model nor
$VISTA_DIFFUSION_MODEL) the map is drawn as a sketch, and the command says so.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from vista_tui.cli.console import EXIT_FAILED, EXIT_INTERRUPTED, fail, stderr
from vista_tui.cli.opening import MAP_HELP, NODE_HELP, open_map, resolve_node_id, store_of
from vista_tui.core.render_env import ENV_MODEL
from vista_tui.mapdata import MapError

if TYPE_CHECKING:
    from vista_tui.core.render_protocol import RenderEvent
    from vista_tui.mapdata import MapReader

# The render queue, its protocol and the render keys load when `render` runs, not for every `vista`
# command: `vista explore` builds this parser too, and its first screen waits for the imports.


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' → (W, H), for argparse."""
    from vista_tui.mapdata.renders import MAX_SIDE, MIN_SIDE

    width, sep, height = text.lower().replace("×", "x").partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        size = (0, 0)
    if not sep or not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise argparse.ArgumentTypeError(
            f"--size wants WIDTHxHEIGHT with sides from {MIN_SIDE} to {MAX_SIDE} pixels, got {text!r}"
        )
    return size


def resolve_node(reader: MapReader, name: str | None) -> str | None:
    """The id of the node `name` names (a path, `root`, an id or a prefix of 4 or more); None for the root."""
    if name is None:
        return None
    node_id = resolve_node_id(reader, name)
    return None if node_id == reader.root.node_id else node_id


def add_render_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `render` to `vista`'s subcommands (sets `run=cmd_render`)."""
    parser = subparsers.add_parser(
        "render",
        help="render a node or the whole map to an image (a sketch when no diffusion model is set)",
        description="Render a cluster node's visual prompt (or, with --panorama, its child clusters as "
        "regions of one canvas, region-based MultiDiffusion) in a worker process; prints the image's path. Renders are cached by content "
        "in the map's renders/ folder. Without --model or $VISTA_DIFFUSION_MODEL, draws a sketch of "
        "the map instead (no model weights needed).",
    )
    parser.add_argument("map", help=MAP_HELP)
    parser.add_argument("node", nargs="?", help=f"{NODE_HELP}; default: the root")
    parser.add_argument(
        "--panorama",
        action="store_true",
        help="a MultiDiffusion panorama: the node's (default: the root's) child clusters as regions on one canvas",
    )
    parser.add_argument(
        "--model",
        metavar="DIR_OR_ID",
        default=None,
        help=f"diffusers directory or Hugging Face id (default: ${ENV_MODEL}; unset: a sketch)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default: 0)")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps (default: 30)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale (default: 7.5)")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=None,
        metavar="WxH",
        help="image size in pixels (default: 512x512 per node, 1024x512 panorama, 1024x768 sketch)",
    )
    parser.add_argument(
        "--time-limit", type=float, default=600.0, metavar="S", help="give up after S seconds (default: 600)"
    )
    parser.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")
    parser.set_defaults(run=cmd_render)
    return parser


def cmd_render(args: argparse.Namespace) -> int:
    """Render one image; its path on stdout. 0 done, 1 the render failed, 2 bad input, 130 interrupted."""
    from vista_tui.core.render_queue import RenderQueue
    from vista_tui.mapdata.renders import RenderJob

    store = store_of(args)
    model = args.model or os.environ.get(ENV_MODEL) or None
    width, height = args.size if args.size else (None, None)
    try:
        reader = open_map(args)
        node_id = resolve_node(reader, args.node)
        job = RenderJob(
            map_dir=reader.path,
            node_id=node_id,
            kind="panorama" if args.panorama else "node",
            model=model,
            seed=args.seed,
            steps=args.steps,
            width=width,
            height=height,
            guidance=args.guidance,
        )
        if not args.time_limit > 0:
            raise ValueError(f"--time-limit must be positive, got {args.time_limit}")
    except (MapError, ValueError) as error:
        return fail(error)
    if model is None:
        stderr.print(
            f"[yellow]no diffusion model configured[/] (--model or ${ENV_MODEL}): drawing a sketch of the map instead",
            soft_wrap=True,
        )

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    what = "sketch" if model is None else f"render with {model}"
    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,  # no bar frames in logs and pipes
    )
    task = bars.add_task(f"{what}: queued", total=100)

    def on_event(event: RenderEvent) -> None:
        if event.kind == "started":
            bars.update(task, description=what)
        elif event.kind == "progress":
            bars.update(task, completed=event.percent, description=f"{what} ({event.step}/{event.total})")

    queue = RenderQueue(store.root, time_limit_s=args.time_limit, on_event=on_event)
    try:
        with bars:
            job_id = queue.submit(job)
            status = queue.wait(job_id)
    except KeyboardInterrupt:
        stderr.print("[yellow]interrupted[/]")
        return EXIT_INTERRUPTED
    finally:
        queue.close()
    if status.state == "done" and status.path is not None:
        how = "cached" if status.cached else f"{status.seconds:.1f} s"
        stderr.print(f"[green]✓[/] {'sketch' if model is None else 'render'} ({how})")
        print(status.path, flush=True)
        return 0
    if status.state == "cancelled":
        return fail("the render was cancelled", EXIT_FAILED)
    return fail(status.error or "the render failed", EXIT_FAILED)
