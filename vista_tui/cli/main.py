"""The `vista` command: its parser and dispatch; each command group lives in its own module.

Map-reading commands run in this process (maps, triage, export, explanations, render);
`build`, `demo` and `label` run the pipeline in a child process (`python -m pipeline`), so
this process never imports torch or the pipeline. Building the parser imports nothing heavy
(no numpy, pyarrow or textual): `vista --help` and the picker start at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vista_tui import __version__
from vista_tui.cli.explanations import add_explanations_parser
from vista_tui.cli.export import add_export_parser
from vista_tui.cli.maps import add_explore_parser, add_listing_parsers, explore
from vista_tui.cli.opening import store_of
from vista_tui.cli.pipeline import PIPELINE_COMMANDS, cmd_pipeline
from vista_tui.cli.render import add_render_parser
from vista_tui.cli.triage import add_triage_parsers


def make_parser() -> argparse.ArgumentParser:
    """`vista`'s parser: every subcommand sets `run`, except the pipeline's, which `main` passes through."""
    parser = argparse.ArgumentParser(
        prog="vista",
        description="Explore what an SAE latent represents: its contexts as a map, a tree of sub-senses, labels.",
    )
    parser.add_argument("--version", action="version", version=f"vista-tui {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in PIPELINE_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("--cache", metavar="DIR", help="the map store (default: $VISTA_CACHE, ./cache, user cache)")
    exploring = add_explore_parser(commands)
    add_render_parser(commands)
    add_triage_parsers(commands)
    add_export_parser(commands)
    add_explanations_parser(commands)
    listing = add_listing_parsers(commands)
    for sub in (exploring, *listing):
        sub.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")
    return parser


def pipeline_call(argv: Sequence[str]) -> tuple[str, list[str]] | None:
    """`vista [--cache DIR] build|demo|label ARGS…`: the command and the arguments its child gets, else None.

    The pipeline's own parser reads them, so a `--cache` given before the command is passed on
    after it (`vista --cache DIR demo` and `vista demo --cache DIR` mean the same).
    """
    rest, cache = list(argv), []
    if len(rest) > 1 and rest[0] == "--cache":
        cache, rest = rest[:2], rest[2:]
    elif rest and rest[0].startswith("--cache="):
        cache, rest = rest[:1], rest[1:]
    if rest and rest[0] in PIPELINE_COMMANDS:
        return rest[0], [*rest[1:], *cache]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `vista`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if (call := pipeline_call(argv)) is not None:
        return cmd_pipeline(*call)
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return explore(store_of(args), None)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
