"""How a command finds the map (and the node) it is given: every command that reads a map opens it here.

A map is named by its directory, its id, a unique prefix or suffix of the id, or its latent
(`Store.find_map`); a node by `root`, a path or an id prefix (`vista_tui.core.node_names`).

One path so that a torn map (a file missing, or not the size its manifest records) is refused
the same way by every command — `summary`, `export`, `triage-status`, `annotate`, `render`,
`import-explanations`, `explore` — with mapdata's one-line MapError, before any of them reads a
table: a command that happens not to read the broken file must not report success on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vista_tui.core.node_names import resolve_node
from vista_tui.mapdata import Store, resolve_store, verify_map

if TYPE_CHECKING:
    from vista_tui.mapdata import MapReader

MAP_HELP = "map id, a unique prefix or suffix of one, its latent (702 or L702), or a map directory"
"""What a command's MAP argument accepts (`Store.find_map`)."""
NODE_HELP = "node path (1.3; root or 0 for the root) or at least 4 characters of its id (`vista tree MAP`)"
"""What a command's NODE argument accepts (`vista_tui.core.node_names`)."""


def store_of(args: argparse.Namespace) -> Store:
    """The store named by `--cache` (given before or after the command), else the default one."""
    return Store(resolve_store(getattr(args, "cache", None)))


def find_map(args: argparse.Namespace) -> Path:
    """The directory of the map `args.map` names, after checking its files (raises a one-line MapError)."""
    map_dir = store_of(args).find_map(args.map)
    verify_map(map_dir)
    return map_dir


def read_map(map_dir: Path) -> MapReader:
    """A reader of the map in `map_dir`, after checking its files (raises a one-line MapError)."""
    verify_map(map_dir)
    # Here, not at the top: building the CLI's parser (every `vista` command) needs no numpy or pyarrow.
    from vista_tui.mapdata import MapReader

    return MapReader(map_dir)


def open_map(args: argparse.Namespace) -> MapReader:
    """A reader of the map `args.map` names, after checking its files (raises a one-line MapError)."""
    return read_map(store_of(args).find_map(args.map))


def resolve_node_id(reader: MapReader, name: str) -> str:
    """The id of the node `name` names: `root` or `0`, a path like `1.3`, a full id or a unique prefix
    of at least 4 characters (`vista_tui.core.node_names`); a one-line NodeNameError (a ValueError) otherwise."""
    return resolve_node(reader.tree, reader.path.name, name)
