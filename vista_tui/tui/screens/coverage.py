"""Which sub-senses the published explanation covers (`c` on the map): its score on each first-level cluster.

From the map's `scores.json` (`vista score`): the published explanation, its score on all
contexts, the worst-covered cluster holding at least 10% of them, and a table of the first-level
clusters, worst covered first by the first scorer that has a coverage table (detection, then
fuzzing, then embedding), with a bar of that score. Enter on a row closes the view and selects
that cluster in the tree (the screen returns its node id).

The scores are read once per map (`MapModel.map_scores`), in a worker, and again when the file
changed since (`vista score` ran while the map was open). A map without scores, or without a
published explanation scored, shows one line saying which commands make the table; an
unreadable file shows the reader's one line. Every text from the map passes through `sanitize`.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.worker import Worker, WorkerState, get_current_worker

from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize
from vista_tui.core.score_figures import (
    MIN_SHARE_TEXT,
    SCORER_ABBREVIATIONS,
    CoverageRow,
    CoverageSummary,
    ScoresReading,
    coverage_rows,
    coverage_summary,
    format_score,
    no_coverage_hint,
    quality,
    score_bar,
)
from vista_tui.core.stats_figures import format_share
from vista_tui.tui.messages import report_worker_failure

BAR_WIDTH = 10
"""Cells of the bar of the primary scorer's score (0 … 1)."""
MIN_TITLE_WIDTH = 16
"""A cluster's title is cut to what the table leaves, never below this."""
MAX_EXPLANATION_CHARS = 400


class CoverageTable(DataTable[Text]):
    """The coverage rows: one per first-level cluster, a row cursor; Enter picks a cluster."""

    def __init__(self, columns: list[Text], rows: list[tuple[str, list[Text]]], *, id: str | None = None) -> None:
        """A table of `columns` and of `rows`, each (node id, cells)."""
        super().__init__(id=id, cursor_type="row", zebra_stripes=False)
        self._columns = columns
        self._rows = rows

    def on_mount(self) -> None:
        """Title the dialog, focus the table, and read the scores (again, if the file changed)."""
        """Add the columns and rows given to the constructor (each row keyed by its node id)."""
        for column in self._columns:
            self.add_column(column)
        for node_id, cells in self._rows:
            self.add_row(*cells, key=node_id)


def _note(text: str, *, error: bool = False) -> Static:
    """A one-line message in place of the table."""
    return Static(Text(text), id="coverage-message", classes="coverage-note -error" if error else "coverage-note")


class CoverageScreen(ModalScreen[str | None]):
    """The published explanation's coverage of the map's first-level clusters; returns the node picked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", tooltip="Back to the map", id="coverage-screen.close"),
        Binding("q", "close", "Close", show=False, id="coverage-screen.close-q"),
        Binding("c", "close", "Close", show=False, id="coverage-screen.close-c"),
    ]

    DEFAULT_CSS = """
    CoverageScreen {
        align: center middle;
        & > #coverage-dialog {
            width: 100%;
            height: 100%;
            border: thick $accent;
            border-title-align: left;
            border-subtitle-align: right;
            border-subtitle-color: $text-muted;
            background: $surface;
            padding: 0 1;
        }
        & #coverage-header { height: auto; margin-bottom: 1; }
        & #coverage-table { height: 1fr; background: $surface; }
        & .coverage-note { color: $text-muted; }
        & .coverage-note.-error { color: $text-error; }
    }
    """

    class ScoresRead(Message):
        """A worker read (or re-read) the map's scores."""

        def __init__(self, reading: ScoresReading) -> None:
            """Carry what was read."""
            self.reading = reading
            super().__init__()

    def __init__(self, model: MapModel) -> None:
        """The coverage of `model`'s published explanation."""
        super().__init__()
        self.model = model
        self._shown: ScoresReading | None = None
        """The reading on screen (None: still reading)."""

    def compose(self) -> ComposeResult:
        """The header, then the table (or its one line), or 'reading scores…' until they are read."""
        with Vertical(id="coverage-dialog"):
            yield Static(id="coverage-header")
            reading = self.model.scores_if_read
            if reading is not None:
                self._shown = reading
                yield from self._body(reading)
            else:
                yield Static(Text("reading scores…", style="dim italic"), id="coverage-message")

    def on_mount(self) -> None:
        dialog = self.query_one("#coverage-dialog")
        dialog.border_title = Text(f"coverage · latent {self.model.manifest.provenance.latent}")
        dialog.border_subtitle = Text("↑↓ move · ⏎ go to cluster · esc close")
        if self._shown is not None:
            self._show_header(self._shown)
        self._focus_table()
        self._read_scores()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scores", description="read the map's scores")
    def _read_scores(self) -> None:
        """Read `scores.json`, or read it again when `vista score` rewrote it since."""
        reading = self.model.map_scores(reload=True)
        if not get_current_worker().is_cancelled:
            self.post_message(self.ScoresRead(reading))

    @on(ScoresRead)
    def _scores_read(self, event: ScoresRead) -> None:
        """Show what the worker read, unless it is what is shown already."""
        if event.reading is self._shown:
            return
        self._shown = event.reading
        dialog = self.query_one("#coverage-dialog")
        for widget in list(dialog.children)[1:]:
            widget.remove()
        dialog.mount_all(self._body(event.reading))
        self._show_header(event.reading)
        self.call_after_refresh(self._focus_table)

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A failed read: one line in place of 'reading scores…', and the app's toast."""
        if event.worker.group == "scores" and event.state == WorkerState.ERROR:
            error = event.worker.error
            for widget in self.query("#coverage-message"):
                widget.remove()
            self.query_one("#coverage-dialog").mount(
                _note(f"could not read the scores: {sanitize(f'{type(error).__name__}: {error}', 300)}", error=True)
            )
        report_worker_failure(self, event)

    def _focus_table(self) -> None:
        """The table takes the keys (arrows, Enter) when there is one."""
        for table in self.query(CoverageTable):
            table.focus()

    def action_close(self) -> None:
        """Back to the map, selecting nothing."""
        self.dismiss(None)

    @on(DataTable.RowSelected, "#coverage-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: close, selecting that cluster in the tree."""
        node_id = event.row_key.value
        if node_id is None or node_id not in self.model.nodes:
            self.notify("that cluster is not in this tree: the scores are of another build (vista score again)")
            return
        self.dismiss(node_id)

    # -- what is shown -----------------------------------------------------------------------------

    def _body(self, reading: ScoresReading) -> list[Widget]:
        """The table, or the one line saying why there is none."""
        if reading.error:
            return [_note(reading.message, error=True)]
        rows = coverage_rows(reading)
        if not rows:
            return [_note(no_coverage_hint(self.model.map_id, bool(self.model.published)))]
        return [self._table(reading, rows)]

    def _show_header(self, reading: ScoresReading) -> None:
        """The published explanation, its score on all contexts, the worst-covered cluster."""
        summary = coverage_summary(reading)
        header = self.query_one("#coverage-header", Static)
        if summary is None:
            header.update(Text("the published explanation's score on each first-level cluster", style="dim"))
            return
        header.update(self._summary_text(summary))

    def _summary_text(self, summary: CoverageSummary) -> Text:
        """Three lines: the explanation; its scores on all contexts; the worst-covered cluster."""
        styles = {level: self._quality_style(level) for level in ("low", "mid", "high", "none")}
        text = Text()
        text.append("published: ", "bold")
        text.append(f"“{sanitize(summary.explanation, MAX_EXPLANATION_CHARS)}”\n")
        text.append("all contexts: ", "bold")
        for index, figure in enumerate(summary.overall):
            text.append((" · " if index else "") + f"{figure.name} ")
            text.append(figure.figure, styles[figure.quality])
        text.append("\n")
        text.append(f"worst covered ({MIN_SHARE_TEXT} of contexts): ", "bold")
        if summary.worst is None or summary.worst_figure is None:
            text.append("no cluster holds that many", "dim")
        else:
            title = self.model.title(summary.worst) if summary.worst in self.model.nodes else summary.worst[:12]
            text.append(title)
            text.append(f" · {summary.worst_figure.name} ")
            text.append(summary.worst_figure.figure, styles[summary.worst_figure.quality])
            text.append(f" · {format_share(summary.worst_share)} of contexts", "dim")
        return text

    def _quality_style(self, level: str) -> str:
        """The rich style of a quality level (`low`, `mid`, `high`, `none`): the theme's error, warning, success."""
        theme = self.app.theme_variables
        return {
            "low": f"bold {theme.get('error', 'red')}",
            "mid": theme.get("warning", "yellow"),
            "high": theme.get("success", "green"),
        }.get(level, "dim")

    def _table(self, reading: ScoresReading, rows: list[CoverageRow]) -> CoverageTable:
        """One row per first-level cluster, worst covered first, with a bar of the primary score."""
        scorers = reading.coverage_scorers
        primary = reading.primary_scorer
        # What the other columns and the cells' padding leave for the title (the dialog's border and padding: 4).
        others = 6 + 6 + 5 * len(scorers) + BAR_WIDTH + 2 * (4 + len(scorers))
        title_width = max(MIN_TITLE_WIDTH, self.app.size.width - 4 - others - 1)
        columns = [
            Text("cluster"),
            Text("size", justify="right"),
            Text("share", justify="right"),
            *(Text(SCORER_ABBREVIATIONS[scorer], justify="right") for scorer in scorers),
            Text(f"{SCORER_ABBREVIATIONS[primary]} 0…1" if primary else ""),
        ]
        cells = [(row.node_id, self._cells(row, scorers, primary, title_width)) for row in rows]
        return CoverageTable(columns, cells, id="coverage-table")

    def _cells(self, row: CoverageRow, scorers: tuple[str, ...], primary: str | None, title_width: int) -> list[Text]:
        """A row's cells: title, size, share, each scorer's score, the bar."""
        in_tree = row.node_id in self.model.nodes
        title = self.model.title(row.node_id) if in_tree else f"not in this tree: {sanitize(row.node_id, 12)}"
        if len(title) > title_width:
            title = title[: title_width - 1] + "…"
        cells = [
            Text(title, style="" if in_tree else "dim italic"),
            Text(f"{row.n_contexts:,}", justify="right"),
            Text(format_share(row.share), justify="right"),
        ]
        for scorer in scorers:
            score = row.score(scorer)
            cells.append(Text(format_score(score), style=self._quality_style(quality(score)), justify="right"))
        score = row.score(primary)
        cells.append(Text(score_bar(score, BAR_WIDTH), style=self._quality_style(quality(score))))
        return cells
