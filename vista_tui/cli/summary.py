"""A map in a few lines of text: what `vista demo`, `vista build` and `vista summary` print."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vista_tui.core.caveats import few_contexts_warning
from vista_tui.core.node_names import NodeNames
from vista_tui.core.sanitize import sanitize, sanitize_token
from vista_tui.core.titles import latent_title, node_title, quote_token
from vista_tui.mapdata import ClusterNode, LatentStats, MapCorruptError, MapReader, read_latent_stats
from vista_tui.mapdata.stats import DecoderLogits, QuantileExample, QuantileExamples, regrid

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 32
"""Characters of a histogram's sparkline (neighbouring bins are summed down to this many)."""
NODE_SPARK_WIDTH = 16
"""Characters of a cluster's histogram in the detailed summary's table."""
FOCUS_ROWS = 10
"""Focus tokens the detailed summary lists."""
EXAMPLE_CHARS = 64
"""A quantile example's window is cut to about this many characters around its focus token (a
line of the summary then fits 80 columns)."""


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


def logits_line(stats: LatentStats | None, n: int = 5) -> str:
    """One line: the tokens the decoder direction promotes and suppresses, or why there are none."""
    if stats is None:
        return ""
    if stats.logits is None:
        return f"logits: {sanitize(stats.logits_note) if stats.logits_note else 'no unembedding'}"
    up = " ".join(quote_token(t.token) for t in stats.logits.positive[:n])
    down = " ".join(quote_token(t.token) for t in stats.logits.negative[:n])
    return f"logits: promotes {up} · suppresses {down}"


def focus_table(root: ClusterNode, rows: int = FOCUS_ROWS) -> Table:
    """The root's top focus tokens by count: token, contexts, share of the map, activation mass."""
    table = Table(title="top focus tokens", title_justify="left", show_edge=False, pad_edge=False, box=None)
    for name, justify in (("token", "left"), ("contexts", "right"), ("share", "right"), ("mass", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    ranked = sorted(root.labels.focus_tokens, key=lambda entry: (-entry.count, entry.token))[:rows]
    for entry in ranked:
        share = entry.count / root.size if root.size else 0.0
        table.add_row(quote_token(entry.token, 24), f"{entry.count:,}", f"{share:.1%}", f"{entry.mass:.3g}")
    return table


def logits_table(logits: DecoderLogits) -> Table:
    """The decoder direction's logits: promoted tokens next to suppressed ones."""
    table = Table(
        title="logits of the decoder direction (W_dec · W_U)",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
        box=None,
    )
    for name, justify in (("promotes", "left"), ("", "right"), ("suppresses", "left"), (" ", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i in range(max(len(logits.positive), len(logits.negative))):
        up = logits.positive[i] if i < len(logits.positive) else None
        down = logits.negative[i] if i < len(logits.negative) else None
        table.add_row(
            quote_token(up.token, 24) if up else "",
            f"{up.value:+.3f}" if up else "",
            quote_token(down.token, 24) if down else "",
            f"{down.value:+.3f}" if down else "",
        )
    return table


def example_text(example: QuantileExample, max_chars: int = EXAMPLE_CHARS) -> Text:
    """A quantile example's window on one line, made inert, the focus token bold and in «»; cut
    around the focus token when long."""
    pieces = [sanitize_token(token) for token in example.tokens]
    focus = pieces[example.focus]
    before, after = "".join(pieces[: example.focus]), "".join(pieces[example.focus + 1 :])
    room = max(0, max_chars - len(focus)) // 2
    if len(before) > room:
        before = "…" + before[len(before) - room :]
    if len(after) > room:
        after = after[:room] + "…"
    return Text.assemble(before, ("«" + focus + "»", "bold reverse"), after)


def quantile_lines(quantiles: QuantileExamples | None) -> list[Text]:
    """The quantile examples, highest interval first: a header per interval, then its examples."""
    if quantiles is None:
        return [Text("quantile examples: none recorded (rebuild with --quantiles Q)")]
    lines = [Text(f"quantile examples ({quantiles.per_quantile} per interval, highest first)", style="bold")]
    for index in reversed(range(quantiles.n_intervals)):
        lo, hi = quantiles.edges[index], quantiles.edges[index + 1]
        examples = quantiles.interval(index)
        lines.append(Text(f"  {lo:.3g}–{hi:.3g}: {len(examples)} example{'s' if len(examples) != 1 else ''}"))
        lines.extend(
            Text.assemble(f"    {example.activation:6.3g}  ", example_text(example), no_wrap=True, overflow="ellipsis")
            for example in examples
        )
    return lines


def map_summary(reader: MapReader, max_clusters: int = 8, detail: bool = False) -> Group:
    """Latent, N, tree depth, top-level cluster sizes, short ids and titles, fidelity argmax.

    The clusters come in the explorer's order, each with its short id (what `vista render`,
    `vista annotate` and `vista tree` take). The root's line leads with the latent's top focus
    tokens (`latent_title`); each cluster is titled as the explorer titles it (`node_title`:
    focus tokens when they concentrate, else keywords).
    With `detail` (`vista summary`), also each cluster's activation histogram, the top focus
    tokens, the logits table and the quantile examples: what the explorer's statistics view shows.
    """
    manifest = reader.manifest
    prov = manifest.provenance
    nodes = reader.tree
    root = nodes[0]
    names = NodeNames(nodes, reader.path.name)
    top = [names.nodes[node_id] for node_id in names.children[root.node_id]]
    n_clusters = sum(1 for n in nodes if n.kind == "cluster")
    head = Text.assemble(
        (f"{manifest.map_id}", "bold"),
        f"  latent {prov.latent} · {sanitize(prov.model)} · hook {sanitize(prov.hook)} · SAE {sanitize(prov.sae)}\n",
        f"{prov.n_contexts:,} contexts from {prov.n_tokens_seen:,} tokens · tree depth {tree_depth(nodes)} · "
        f"{n_clusters} clusters ({len(top)} at the top)",
    )
    if (few := few_contexts_warning(prov.n_contexts)) is not None:
        head.append("\n" + few, style="yellow")
    curve = reader.fidelity
    if curve is not None and curve.k:
        head.append(
            f"\nfidelity: gain peaks at k={curve.best_k} ({curve.best_percent:.2g}% of N) "
            f"with {curve.best_gain:.3f} over random"
        )
    stats: LatentStats | None = None
    try:
        stats = read_latent_stats(reader.path)
    except MapCorruptError as error:
        head.append(f"\nstatistics: unreadable ({error})")
    else:
        head.append("\n" + stats_lines(stats))
        if stats is not None:
            head.append("\n" + logits_line(stats))
    hist = detail and stats is not None and bool(stats.nodes)
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("size", justify="right")
    table.add_column("mean act", justify="right")
    table.add_column("sub", justify="right")
    if hist:
        table.add_column("activations", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("title")

    def row(node: ClusterNode, n_sub: int, title: Text) -> None:
        """One line of the table (with the node's histogram in detail)."""
        cells: list[str | Text] = [str(node.size), f"{node.mean_activation:.2f}", str(n_sub)]
        if hist and stats is not None:
            figures = stats.nodes.get(node.node_id)
            cells.append(sparkline(figures.activations.counts, NODE_SPARK_WIDTH) if figures else "")
        cells.append(Text(sanitize(names.short[node.node_id]), style="dim"))
        table.add_row(*cells, title)

    row(root, len(top), Text(latent_title(root), style="bold"))
    for node in top[:max_clusters]:
        row(node, len(names.children[node.node_id]), Text("└ " + node_title(node, 6)))
    if len(top) > max_clusters:
        table.add_row(*[""] * (len(table.columns) - 1), Text(f"… {len(top) - max_clusters} more", style="dim"))
    if not detail:
        return Group(head, table)
    parts: list[Table | Text] = [head, table]
    if root.labels.focus_tokens:
        parts += [Text(), focus_table(root)]
    if stats is not None:
        if stats.logits is not None:
            parts += [Text(), logits_table(stats.logits)]
        parts += [Text(), *quantile_lines(stats.quantiles)]
    return Group(*parts)
