"""`vista tree MAP`: every node with its path, short id, size, mean activation and title, as a tree.

The names it prints are those every command takes (`vista_tui.core.node_names`): the path
(`1.3`) or the short id. One line per node, in the explorer's order, so that the paths count
what a person sees in the explorer's tree; titles are cut, never wrapped, so that a line stays
a node at 80 columns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vista_tui.core.node_names import NodeNames
from vista_tui.core.sanitize import sanitize
from vista_tui.core.titles import latent_title, node_title

if TYPE_CHECKING:
    from vista_tui.mapdata import MapReader


def guides(names: NodeNames, node_id: str) -> str:
    """The tree guides before a node's title: `│  ` or three spaces per ancestor below the root, then
    `├─ ` (a sibling follows) or `└─ ` (the last child); nothing for the root."""
    chain: list[str] = []
    current = node_id
    while current != names.root_id:
        parent = names.nodes[current].parent_id
        if parent is None:
            break
        chain.append(current)
        current = parent
    parts: list[str] = []
    for depth, step in enumerate(reversed(chain)):
        parent = names.nodes[step].parent_id
        last = parent is not None and names.children[parent][-1] == step
        if depth == len(chain) - 1:
            parts.append("└─ " if last else "├─ ")
        else:
            parts.append("   " if last else "│  ")
    return "".join(parts)


def tree_view(reader: MapReader, max_depth: int | None = None) -> Group:
    """The map's head line and its tree as a table: path, id, size, mean activation, children, title.

    `max_depth` keeps the nodes at most that deep (0: the root alone); the `sub` column still
    counts every node's children, and a last line says how many nodes were left out.
    """
    manifest = reader.manifest
    names = NodeNames(reader.tree, reader.path.name)
    order = names.walk()
    deepest = max((names.nodes[node_id].depth for node_id in order), default=0)
    head = Text.assemble(
        (sanitize(manifest.map_id), "bold"),
        f"  latent {manifest.provenance.latent} · {reader.n_contexts:,} contexts · {len(order)} nodes, depth {deepest}",
    )
    shown = [node_id for node_id in order if max_depth is None or names.nodes[node_id].depth <= max_depth]
    # The names are never cut (they are what the commands take); the title gives way instead.
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("path", no_wrap=True, min_width=max(len(names.paths[node_id]) for node_id in shown))
    table.add_column("id", no_wrap=True, min_width=max(len(names.short[node_id]) for node_id in shown))
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("sub", justify="right", no_wrap=True)
    table.add_column("title")  # wrappable, so that it is the column that narrows; each cell stays one line
    for node_id in shown:
        node = names.nodes[node_id]
        if node_id == names.root_id:
            title = Text(f"latent {manifest.provenance.latent} · {latent_title(node)}", style="bold")
        else:
            title = Text.assemble((guides(names, node_id), "dim"), node_title(node, 6))
        title.no_wrap, title.overflow = True, "ellipsis"
        table.add_row(
            Text(names.paths[node_id]),
            Text(sanitize(names.short[node_id]), style="cyan"),
            f"{node.size:,}",
            f"{node.mean_activation:.2f}",
            str(len(names.children[node_id])),
            title,
        )
    parts: list[Text | Table] = [head, table]
    hidden = len(order) - len(shown)
    if hidden:
        parts.append(
            Text(f"… {hidden} deeper node{'s' if hidden != 1 else ''} not shown (--depth {max_depth})", style="dim")
        )
    return Group(*parts)
