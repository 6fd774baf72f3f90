"""Small triage dialogs over the map: a tag, a note, a filter. Each returns its text through `dismiss`."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Input, Static, TextArea

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 70%; max-width: 80; height: auto;
    border: thick $accent; background: $surface; padding: 0 1;
}}
{name} .dialog-title {{ text-style: bold; }}
{name} .dialog-hint {{ color: $text-muted; }}
"""


class LineDialog(ModalScreen[str | None]):
    """One line of input with completion; Enter returns it, Esc returns None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    DEFAULT_CSS = DIALOG_CSS.format(name="LineDialog")

    def __init__(self, title: str, hint: str, suggestions: list[str], value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.hint = hint
        self.suggestions = suggestions
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Input(
                self.value,
                placeholder=self.placeholder,
                suggester=SuggestFromList(self.suggestions, case_sensitive=False),
                id="dialog-input",
            )
            yield Static(self.hint, classes="dialog-hint", markup=False)

    @on(Input.Submitted, "#dialog-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class NoteDialog(ModalScreen[str | None]):
    """The node's note in a text area; ctrl+s returns it, Esc returns None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="NoteDialog") + "NoteDialog TextArea { height: 8; }"

    def __init__(self, title: str, note: str) -> None:
        super().__init__()
        self.title_text = title
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield TextArea(self.note, id="note-text", soft_wrap=True, show_line_numbers=False)
            yield Static("ctrl+s saves · esc cancels · A on the map edits in $EDITOR", classes="dialog-hint")

    def on_mount(self) -> None:
        area = self.query_one("#note-text", TextArea)
        area.focus()
        area.move_cursor(area.document.end)

    def action_save(self) -> None:
        self.dismiss(self.query_one("#note-text", TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
