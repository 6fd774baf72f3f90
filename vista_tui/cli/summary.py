"""A map in a few lines of text: what `vista demo`, `vista build` and `vista summary` print."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vista_tui.core.sanitize import sanitize
from vista_tui.core.titles import latent_title, node_title
from vista_tui.mapdata import ClusterNode, LatentStats, MapCorruptError, MapReader, read_latent_stats
from vista_tui.mapdata.stats import regrid

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 32
"""Characters of a histogram's sparkline (neighbouring bins are summed down to this many)."""


def tree_depth(nodes: list[ClusterNode]) -> int:
    """The depth of the deepest node (0 for a root alone)."""
    return max((node.depth for node in nodes), default=0)


def sparkline(counts: list[int] | tuple[int, ...], width: int = SPARK_WIDTH) -> str:
    """Counts as block characters, summed down to `width`; an empty bin is a space, any other
    gets at least the lowest block, and the largest the full one."""
    grid = regrid(counts, width)
    top = max(grid, default=0)
    if top <= 0:
        return " " * len(grid)
    return "".join(" " if c <= 0 else SPARK[min(len(SPARK) - 1, (c * len(SPARK) - 1) // top)] for c in grid)


def stats_lines(stats: LatentStats | None) -> str:
    """Density, the all-firings histogram and the position profile, as text lines."""
    if stats is None:
        return "statistics: not recorded (rebuild the map)"
    hist = stats.activations
    lines = [
        f"density: {stats.density:.3%} ({stats.n_fired:,} firings in {stats.n_tokens_seen:,} tokens)"
        f" · max activation {stats.max_activation:.3g}"
    ]
    if hist.counts:
        lines.append(f"activations (all firings, 0–{hist.hi:g}): {sparkline(hist.counts)}")
    if any(stats.positions):
        last = max(i for i, c in enumerate(stats.positions) if c)
        lines.append(f"positions (0–{last}): {sparkline(stats.positions[: last + 1])}")
    return "\n".join(lines)


def map_summary(reader: MapReader, max_clusters: int = 8) -> Group:
    """Latent, N, tree depth, top-level cluster sizes and titles, fidelity argmax.

    The root's line leads with the latent's top focus tokens (`latent_title`); each cluster is
    titled as the explorer titles it (`node_title`: focus tokens when they concentrate, else keywords).
    """
    manifest = reader.manifest
    prov = manifest.provenance
    nodes = reader.tree
    root = nodes[0]
    top = sorted(reader.children(root.node_id), key=lambda n: (n.kind == "noise", -n.size))
    n_clusters = sum(1 for n in nodes if n.kind == "cluster")
    head = Text.assemble(
        (f"{manifest.map_id}", "bold"),
        f"  latent {prov.latent} · {sanitize(prov.model)} · hook {sanitize(prov.hook)} · SAE {sanitize(prov.sae)}\n",
        f"{prov.n_contexts:,} contexts from {prov.n_tokens_seen:,} tokens · tree depth {tree_depth(nodes)} · "
        f"{n_clusters} clusters ({len(top)} at the top)",
    )
    curve = reader.fidelity
    if curve is not None and curve.k:
        head.append(
            f"\nfidelity: gain peaks at k={curve.best_k} ({curve.best_percent:.2g}% of N) "
            f"with {curve.best_gain:.3f} over random"
        )
    try:
        stats = read_latent_stats(reader.path)
    except MapCorruptError as error:
        head.append(f"\nstatistics: unreadable ({error})")
    else:
        head.append("\n" + stats_lines(stats))
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("size", justify="right")
    table.add_column("mean act", justify="right")
    table.add_column("sub", justify="right")
    table.add_column("title")
    table.add_row(str(root.size), f"{root.mean_activation:.2f}", str(len(top)), Text(latent_title(root), style="bold"))
    for node in top[:max_clusters]:
        table.add_row(
            str(node.size),
            f"{node.mean_activation:.2f}",
            str(len(reader.children(node.node_id))),
            Text("└ " + node_title(node, 6)),
        )
    if len(top) > max_clusters:
        table.add_row("", "", "", Text(f"… {len(top) - max_clusters} more", style="dim"))
    return Group(head, table)
