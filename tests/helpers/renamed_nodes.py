"""Maps whose node ids are chosen: ids that share a prefix, or start with a digit, on purpose.

Real ids hash the members, so a small map almost never has two that share four characters;
the node-name rules (`vista_tui.core.node_names`) need such maps to be tested.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from vista_tui.mapdata import MapReader, StepRecord, update_tree


def rename_nodes(map_dir: Path, new_ids: Mapping[str, str]) -> None:
    """Rewrite the map's tree with the ids in `new_ids` replaced (children follow their parent)."""
    reader = MapReader(map_dir)
    nodes = reader.tree
    for node in nodes:
        node.node_id = new_ids.get(node.node_id, node.node_id)
        if node.parent_id is not None:
            node.parent_id = new_ids.get(node.parent_id, node.parent_id)
    update_tree(map_dir, reader.manifest, nodes, StepRecord("rename", "test", {}, {}, None))


def child_ids(map_dir: Path) -> list[str]:
    """The ids of the root's children, in the map's tree order (not the display order)."""
    reader = MapReader(map_dir)
    return [node.node_id for node in reader.tree if node.parent_id == reader.root.node_id]
