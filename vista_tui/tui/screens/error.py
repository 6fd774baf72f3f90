"""An error a person can act on, shown in place of a screen that could not open."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from vista_tui.core.sanitize import sanitize


class ErrorScreen(ModalScreen[None]):
    """One line on what is wrong and what to do; Esc goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "dismiss", "Back")]

    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical {
        width: 80%; max-width: 100; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ErrorScreen #error-title { text-style: bold; color: $error; }
    ErrorScreen #error-hint { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(sanitize(self.title_text)), id="error-title")
            yield Static(Text(sanitize(self.message)), id="error-message")
            yield Static("esc: back", id="error-hint")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
