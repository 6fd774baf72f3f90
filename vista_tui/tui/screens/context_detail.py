"""One context in full: its whole window, shaded, where it sits on the map, and its neighbours there."""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.screen import ModalScreen
from textual.widgets import Label, Static
from textual.worker import Worker, WorkerState, get_current_worker

from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize, sanitize_token
from vista_tui.mapdata import Context
from vista_tui.tui.messages import report_worker_failure
from vista_tui.tui.widgets.context_line import format_activation, prepare_context
from vista_tui.tui.widgets.contexts import ContextList

N_NEIGHBOURS = 8
"""How many of the nearest contexts on the 2-D map are listed."""

MAX_TEXT_CHARS = 2000
"""The stored text is shown (when it differs from the tokens) up to this many characters."""


class ContextScreen(ModalScreen[None]):
    """A dialog showing one context in full and its nearest neighbours in the layout.

    Enter on a neighbour shows that one in the same dialog; Backspace goes back; Esc or q closes.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", tooltip="Back to the map", id="context-screen.close"),
        Binding("q", "close", "Close", show=False, id="context-screen.close-q"),
        Binding("backspace", "back", "Back", tooltip="The context shown before this one", id="context-screen.back"),
    ]

    DEFAULT_CSS = """
    ContextScreen {
        align: center middle;
        & > #context-dialog {
            width: 90%;
            max-width: 140;
            height: auto;
            max-height: 90%;
            border: thick $accent;
            border-title-align: left;
            background: $surface;
            padding: 0 1;
        }
        & #context-meta { height: auto; margin-bottom: 1; }
        & #context-body { height: auto; max-height: 12; }
        & #context-window { height: auto; }
        & #context-text { height: auto; margin-top: 1; color: $text-muted; }
        & #context-text.-hidden { display: none; }
        & #neighbours-title { margin-top: 1; color: $text-muted; }
        & #neighbours { height: 8; background: $surface; }
        & #context-help { color: $text-muted; margin-top: 1; }
    }
    """

    row: Reactive[int] = reactive(-1, init=False)
    """The context shown (its row in the map's contexts table)."""

    class ContextLoaded(Message):
        """A worker read the shown context."""

        def __init__(self, row: int, context: Context) -> None:
            self.row = row
            self.context = context
            super().__init__()

    def __init__(self, model: MapModel, row: int) -> None:
        super().__init__()
        self.model = model
        self._first_row = row
        self.history: list[int] = []
        """Rows shown before this one, most recent last (Backspace pops)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="context-dialog"):
            yield Static(id="context-meta")
            with VerticalScroll(id="context-body"):
                yield Static(id="context-window")
                yield Static(id="context-text", classes="-hidden")
            yield Label("nearest on the map", id="neighbours-title")
            yield ContextList(self.model, id="neighbours")
            yield Static("enter: open a neighbour · backspace: back · esc: close", id="context-help")

    def on_mount(self) -> None:
        self.row = self._first_row
        self.query_one("#neighbours", ContextList).focus()

    def watch_row(self, row: int) -> None:
        """Show `row`: its details (now, or when a worker has read it) and its neighbours."""
        dialog = self.query_one("#context-dialog")
        dialog.border_title = f"context · row {row:,}"
        neighbours = self.model.nearest_in_layout(row, k=N_NEIGHBOURS)
        self.query_one("#neighbours", ContextList).show_rows(neighbours)
        context = self.model.contexts.get(row)
        if context is None:
            self.query_one("#context-meta", Static).update(Text("loading…", style="dim italic"))
            self.query_one("#context-window", Static).update("")
            self.query_one("#context-text", Static).add_class("-hidden")
            self._load_context(row)
        else:
            self._fill(row, context)

    @work(thread=True, exclusive=True, exit_on_error=False, group="context-detail", description="read a context")
    def _load_context(self, row: int) -> None:
        """Read the row group holding `row` (never on the UI thread)."""
        context = self.model.contexts.fetch(row)
        if not get_current_worker().is_cancelled:
            self.post_message(self.ContextLoaded(row, context))

    @on(ContextLoaded)
    def _context_loaded(self, event: ContextLoaded) -> None:
        if event.row == self.row:
            self._fill(event.row, event.context)

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "context-detail" and event.state == WorkerState.ERROR:
            # in place of "loading…", which would otherwise stay forever
            message = sanitize(str(event.worker.error), 200)
            self.query_one("#context-meta", Static).update(Text(f"could not read this context: {message}", "red"))
        report_worker_failure(self, event)  # the app says what failed

    def _fill(self, row: int, context: Context) -> None:
        neighbours = self.query_one("#neighbours", ContextList)
        prepared = prepare_context(row, context, self.model.max_activation)
        self.query_one("#context-meta", Static).update(self._meta(row, context))
        self.query_one("#context-window", Static).update(neighbours.window_text(prepared))
        stored = sanitize(context.text[: MAX_TEXT_CHARS + 1], MAX_TEXT_CHARS)
        joined = sanitize("".join(context.tokens)[: MAX_TEXT_CHARS + 1], MAX_TEXT_CHARS)
        text = self.query_one("#context-text", Static)
        # The tokens are what the model saw; the stored text differs only when a writer or the
        # corpus mangled it (invalid UTF-8, say), and then the reader should see both.
        text.set_class(stored == joined, "-hidden")
        text.update(Text.assemble(("stored text: ", "bold"), stored))

    @staticmethod
    def _meta(row: int, context: Context) -> Text:
        def field(name: str, value: str) -> tuple[tuple[str, str], tuple[str, str]]:
            return ((f"{name} ", "dim"), (f"{value}   ", "bold"))

        focus = sanitize_token(context.focus_token) if 0 <= context.focus < len(context.tokens) else "—"
        position = (
            f"({context.x:.3f}, {context.y:.3f})" if math.isfinite(context.x) and math.isfinite(context.y) else "—"
        )
        return Text.assemble(
            *field("activation", format_activation(context.activation).strip()),
            *field("focus", f"“{focus}”"),
            *field("position", position),
            "\n",
            *field("doc", sanitize(context.doc_id, 120)),
            *field("context", sanitize(context.context_id, 64)),
            *field("row", f"{row:,}"),
        )

    @on(ContextList.Opened, "#neighbours")
    def _neighbour_opened(self, event: ContextList.Opened) -> None:
        event.stop()
        self.history.append(self.row)
        self.row = event.row

    def action_back(self) -> None:
        """Show the context seen before this one."""
        if self.history:
            self.row = self.history.pop()

    def action_close(self) -> None:
        """Back to the map."""
        self.dismiss(None)
