"""How a command finds the map (and the node) it is given: every command that reads a map opens it here.

One path so that a torn map (a file missing, or not the size its manifest records) is refused
the same way by every command — `summary`, `export`, `triage-status`, `annotate`, `render`,
`import-explanations`, `explore` — with mapdata's one-line MapError, before any of them reads a
table: a command that happens not to read the broken file must not report success on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vista_tui.mapdata import Store, resolve_store, verify_map

if TYPE_CHECKING:
    from vista_tui.mapdata import MapReader


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
    """A node id from a full id, a unique prefix of one, or 'root' (ValueError otherwise)."""
    if name == "root":
        return reader.root.node_id
    ids = [node.node_id for node in reader.tree]
    if name in ids:
        return name
    matches = [node_id for node_id in ids if node_id.startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"node {name!r} is ambiguous in map {reader.path.name}: {', '.join(matches[:4])} …")
    raise ValueError(f"map {reader.path.name} has no node {name!r} (`vista summary {reader.path.name}` lists them)")
