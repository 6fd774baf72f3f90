"""The latent's statistics and the selected node's, over one node of the map (`s` on the map).

Most important first, so that 80x24 reads from the top: density and the node's size, the
activation histogram of all firings against the node's members, the input positions, the node's
focus tokens; then the decoder direction's logits and the quantile examples. From 120 columns the
figures of the latent and the node sit left, the logits and examples right.

The map's `stats.json` is read once per map (`MapModel.latent_stats`), in a worker the first
time. A map built before statistics were recorded, or with an unreadable file, shows one line
instead. Every token shown comes from a corpus or a vocabulary and passes through `sanitize`
(`prepare_context`, `quote_token`) first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState, get_current_worker

from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize
from vista_tui.core.stats_figures import (
    NO_QUANTILES,
    StatsReading,
    density_line,
    format_activation_range,
    format_axis,
    format_share,
    last_position,
    logits_message,
)
from vista_tui.core.titles import quote_token
from vista_tui.mapdata import ClusterNode, Context, LatentStats, NodeStats, QuantileExample, TokenLogit
from vista_tui.tui.messages import report_worker_failure
from vista_tui.tui.widgets.context_line import PreparedContext, prepare_context
from vista_tui.tui.widgets.figures import ExampleLines, SparkRows, SparkSeries

MAX_FOCUS_TOKENS = 15
"""Focus tokens listed for the node, most frequent first."""
MAX_LOGITS = 10
"""Tokens listed on each side of the logits."""
TOKEN_CHARS = 24
"""A token in a table is cut to this many characters (inside its quotes)."""


class FigureTable(DataTable[Text]):
    """A read-only table of figures: no cursor, no focus (the screen scrolls), filled when mounted."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        rows: Iterable[Sequence[Text]],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, show_cursor=False, cursor_type="none", zebra_stripes=False)
        self.can_focus = False
        self._columns = [(title, key) for title, key in columns]
        self._rows = [list(row) for row in rows]

    def on_mount(self) -> None:
        """Add the columns and rows given to the constructor."""
        for title, key in self._columns:
            self.add_column(Text(title, justify="left" if key == "token" else "right"), key=key)
        self.add_rows(self._rows)


def _number(text: str) -> Text:
    """A right-aligned figure."""
    return Text(text, justify="right")


def _heading(text: str) -> Static:
    return Static(Text(text), classes="stats-heading")


def _note(text: str, *, error: bool = False) -> Static:
    return Static(Text(text), classes="stats-note -error" if error else "stats-note")


class StatsScreen(ModalScreen[None]):
    """A dialog with the latent's statistics and one node's: figures, tables and examples to scroll through."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", tooltip="Back to the map", id="stats-screen.close"),
        Binding("q", "close", "Close", show=False, id="stats-screen.close-q"),
        Binding("s", "close", "Close", show=False, id="stats-screen.close-s"),
    ]

    # Textual sets one class of each list on the screen on a resize.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-narrow"),
        (70, "-standard-width"),
        (120, "-wide"),
    ]
    """Below 70 columns the logits' two tables stack; from 120 the figures take two columns."""
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-standard-height"), (40, "-tall")]
    """From 40 rows each sparkline is three lines tall."""

    DEFAULT_CSS = """
    StatsScreen {
        align: center middle;
        & > #stats-dialog {
            width: 100%;
            height: 100%;
            border: thick $accent;
            border-title-align: left;
            border-subtitle-align: right;
            border-subtitle-color: $text-muted;
            background: $surface;
            padding: 0 1;
        }
        & #stats-header { height: auto; }
        & #stats-body { height: 1fr; background: $surface; scrollbar-size-vertical: 1; }
        & #stats-columns { height: auto; layout: vertical; }
        & .stats-column { height: auto; }
        &.-wide #stats-columns { layout: horizontal; }
        &.-wide .stats-column { width: 1fr; }
        &.-wide #stats-left { margin-right: 2; }
        & .stats-heading { margin-top: 1; color: $text-accent; text-style: bold; }
        & .stats-note { color: $text-muted; }
        & .stats-note.-error { color: $text-error; }
        & .interval-heading { margin-top: 1; }
        & #logits { height: auto; layout: horizontal; }
        & #logits > FigureTable { width: 1fr; }
        & #logits > #logits-positive { margin-right: 2; }
        &.-narrow #logits { layout: vertical; }
        &.-narrow #logits > #logits-positive { margin-right: 0; margin-bottom: 1; }
        & FigureTable { height: auto; max-height: 40; background: $surface; }
        &.-tall SparkRows { height: 7; }
    }
    """

    class StatsRead(Message):
        """A worker read the map's statistics."""

        def __init__(self, reading: StatsReading) -> None:
            self.reading = reading
            super().__init__()

    def __init__(self, model: MapModel, node_id: str) -> None:
        super().__init__()
        self.model = model
        self.node_id = node_id
        """The node whose figures are shown next to the latent's."""

    @property
    def node(self) -> ClusterNode:
        """The node shown."""
        return self.model.nodes[self.node_id]

    def compose(self) -> ComposeResult:
        with Vertical(id="stats-dialog"):
            yield Static(id="stats-header")
            with VerticalScroll(id="stats-body"):
                if self.model.stats_read:
                    yield from self._sections(self.model.latent_stats())
                else:
                    yield Static(Text("reading statistics…", style="dim italic"), id="stats-message")

    def on_mount(self) -> None:
        dialog = self.query_one("#stats-dialog")
        title = f"statistics · latent {self.model.manifest.provenance.latent}"
        if self.node_id != self.model.root.node_id:
            title += f" · {self.model.title(self.node_id)}"
        dialog.border_title = Text(title)  # Text: a title is never read as markup
        dialog.border_subtitle = Text("↑↓ pgup pgdn scroll · esc close")
        self.query_one("#stats-body").focus()
        if self.model.stats_read:
            self._show_header(self.model.latent_stats().stats)
        else:
            self._show_header(None)
            self._read_stats()

    @work(thread=True, exclusive=True, exit_on_error=False, group="stats", description="read the map's statistics")
    def _read_stats(self) -> None:
        """Read `stats.json` (never on the UI thread: it holds every node's histograms)."""
        reading = self.model.latent_stats()
        if not get_current_worker().is_cancelled:
            self.post_message(self.StatsRead(reading))

    @on(StatsRead)
    def _stats_read(self, event: StatsRead) -> None:
        self._show_header(event.reading.stats)
        body = self.query_one("#stats-body")
        body.remove_children()
        body.mount_all(self._sections(event.reading))

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "stats" and event.state == WorkerState.ERROR:
            # in place of "reading statistics…", which would otherwise stay forever
            error = event.worker.error
            message = sanitize(f"{type(error).__name__}: {error}", 300)
            body = self.query_one("#stats-body")
            body.remove_children()
            body.mount(_note(f"could not read the statistics: {message}", error=True))
        report_worker_failure(self, event)  # the app says what failed

    def action_close(self) -> None:
        """Back to the map."""
        self.dismiss(None)

    # -- what is shown ---------------------------------------------------------------------------

    def _show_header(self, stats: LatentStats | None) -> None:
        """The latent's line (density, firings, max activation) and the node's (its size and activations)."""
        node, root = self.node, self.model.root
        header = Text()
        if stats is not None:
            header.append(density_line(stats) + "\n")
        share = format_share(node.size / root.size) if root.size else "—"
        header.append_text(
            Text.assemble(
                ("the whole map" if node.node_id == root.node_id else "this node", "bold"),
                f" · {node.size:,} contexts ({share} of {root.size:,})",
                f" · mean activation {node.mean_activation:.2f}, max {node.max_activation:.2f}",
            )
        )
        self.query_one("#stats-header", Static).update(header)

    def _sections(self, reading: StatsReading) -> list[Widget]:
        """Every section, or the one line saying why there are none."""
        stats = reading.stats
        if stats is None:
            return [_note(reading.message, error=bool(reading.error))]
        node_stats = stats.nodes.get(self.node_id)
        left = [
            _heading("activations · all firings against this node"),
            self._activations(stats, node_stats),
            _heading("input positions · all firings against this node"),
            *self._positions(stats, node_stats),
            _heading("focus tokens of this node"),
            self._focus_tokens(),
        ]
        right = [
            _heading("logits · tokens the latent promotes and suppresses"),
            self._logits(stats),
            _heading("quantile examples · random firings by activation, highest first"),
            *self._quantiles(stats),
        ]
        return [
            Horizontal(
                Vertical(*left, id="stats-left", classes="stats-column"),
                Vertical(*right, id="stats-right", classes="stats-column"),
                id="stats-columns",
            )
        ]

    def _activations(self, stats: LatentStats, node_stats: NodeStats | None) -> Widget:
        """Two sparklines on the latent's histogram grid, 0 … hi."""
        histogram = stats.activations
        if not histogram.counts:
            return _note("no firings recorded")
        node_histogram = node_stats.activations if node_stats is not None else None
        series = [
            SparkSeries("all firings", histogram.counts, f"{histogram.total:,}", "all"),
            SparkSeries(
                "this node",
                node_histogram.counts if node_histogram is not None and node_histogram.counts else None,
                f"{node_histogram.total:,}" if node_histogram is not None else "",
                "node",
            ),
        ]
        return SparkRows(series, (format_axis(histogram.lo), format_axis(histogram.hi)), id="activation-spark")

    def _positions(self, stats: LatentStats, node_stats: NodeStats | None) -> list[Widget]:
        """Two sparklines over input positions, cut after the last one anything fired at."""
        node_positions = node_stats.positions if node_stats is not None else ()
        last = last_position(stats.positions, node_positions)
        if last < 0:
            return [_note("no positions recorded")]
        series = [
            SparkSeries("all firings", stats.positions[: last + 1], f"{sum(stats.positions):,}", "all"),
            SparkSeries(
                "this node",
                tuple(node_positions[: last + 1]) + (0,) * max(0, last + 1 - len(node_positions))
                if node_stats is not None
                else None,
                f"{sum(node_positions):,}" if node_stats is not None else "",
                "node",
            ),
        ]
        return [SparkRows(series, ("0", str(last)), id="position-spark")]

    def _focus_tokens(self) -> Widget:
        """The node's focus tokens, most frequent first: count, share of the node, mass, score."""
        node = self.node
        entries = sorted(node.labels.focus_tokens, key=lambda entry: (-entry.count, entry.token))
        if not entries:
            return _note("no focus tokens recorded (a map built before they were: rebuild it)")
        rows = [
            [
                Text(quote_token(entry.token, TOKEN_CHARS)),
                _number(f"{entry.count:,}"),
                _number(format_share(entry.count / node.size) if node.size else "—"),
                _number(f"{entry.mass:.1f}" if math.isfinite(entry.mass) else "—"),
                _number(f"{entry.score:.2f}" if math.isfinite(entry.score) else "—"),
            ]
            for entry in entries[:MAX_FOCUS_TOKENS]
        ]
        columns = [("token", "token"), ("count", "count"), ("share", "share"), ("mass", "mass"), ("score", "score")]
        return FigureTable(columns, rows, id="focus-tokens")

    def _logits(self, stats: LatentStats) -> Widget:
        """Top positive and negative logits side by side (stacked when narrow), or why there are none."""
        message = logits_message(stats)
        if message or stats.logits is None:  # logits_message is never empty without logits
            return _note(message)

        def table(title: str, entries: Sequence[TokenLogit], id: str) -> FigureTable:
            rows = [[Text(quote_token(e.token, TOKEN_CHARS)), _number(f"{e.value:+.2f}")] for e in entries]
            return FigureTable([(title, "token"), ("logit", "logit")], rows[:MAX_LOGITS], id=id)

        return Horizontal(
            table("promotes", stats.logits.positive, "logits-positive"),
            table("suppresses", stats.logits.negative, "logits-negative"),
            id="logits",
        )

    def _quantiles(self, stats: LatentStats) -> list[Widget]:
        """The examples of each activation interval, highest interval first, the focus token highlighted."""
        quantiles = stats.quantiles
        if quantiles is None or quantiles.n_intervals == 0:
            return [_note(NO_QUANTILES)]
        widgets: list[Widget] = []
        n = quantiles.n_intervals
        for index in reversed(range(n)):
            examples = sorted(quantiles.interval(index), key=lambda example: -example.activation)
            heading = Text.assemble(
                (format_activation_range(quantiles.edges[index], quantiles.edges[index + 1]), "bold"),
                (f"  interval {index + 1} of {n}", "dim"),
                (f" · {len(examples)} drawn" if examples else " · none drawn: nothing fired in it", "dim"),
            )
            widgets.append(Static(heading, classes="interval-heading"))
            if examples:
                prepared = [self._prepared(i, example, stats.max_activation) for i, example in enumerate(examples)]
                widgets.append(ExampleLines(prepared, classes="quantile-examples"))
        return widgets

    @staticmethod
    def _prepared(index: int, example: QuantileExample, max_activation: float) -> PreparedContext:
        """A quantile example, sanitised and shaded as the map's contexts are."""
        context = Context(
            context_id="",
            doc_id=example.doc_id,
            text="".join(example.tokens),
            tokens=list(example.tokens),
            focus=example.focus,
            activation=example.activation,
            token_activations=list(example.token_activations),
        )
        return prepare_context(index, context, max_activation)
