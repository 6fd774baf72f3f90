"""Help: every key, read from the bindings themselves so it never goes stale."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from vista_tui.core.score_figures import SCORES_LEGEND

# Keys documented by hand: behaviour of widgets we did not bind ourselves.
EXTRA_KEYS = [
    ("map", "enter (contexts)", "open the context in full with its neighbours on the map"),
    ("labels", "", SCORES_LEGEND),
]


def binding_rows(sections: list[tuple[str, type]]) -> list[tuple[str, str, str]]:
    """(section, keys, description) for every binding of the given classes, in order."""
    rows: list[tuple[str, str, str]] = []
    for section, owner in sections:
        seen: set[str] = set()
        for binding in getattr(owner, "BINDINGS", []):
            if not isinstance(binding, Binding):
                continue
            description = binding.tooltip or binding.description
            if not description or binding.action in seen:
                continue
            seen.add(binding.action)
            keys = " ".join(_key_display(key) for key in binding.key.split(","))
            same = [
                b for b in owner.BINDINGS if isinstance(b, Binding) and b.action == binding.action and b is not binding
            ]
            for other in same:
                keys += " " + " ".join(_key_display(key) for key in other.key.split(","))
            rows.append(
                (
                    section,
                    keys,
                    description if description == binding.description else f"{binding.description}: {description}",
                )
            )
    return rows


def _key_display(key: str) -> str:
    names = {
        "slash": "/",
        "question_mark": "?",
        "space": "space",
        "backspace": "⌫",
        "escape": "esc",
        "enter": "⏎",
        "vertical_line": "|",
    }
    return names.get(key, key)


class HelpScreen(ModalScreen[None]):
    """Every key of the explorer."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "Close help"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90%; max-width: 100; height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(self, sections: list[tuple[str, type]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=True, header_style="bold")
        table.add_column("where", style="dim", no_wrap=True)
        table.add_column("keys", style="bold", no_wrap=True)
        table.add_column("what it does", ratio=1)
        for section, keys, description in [*binding_rows(self.sections), *EXTRA_KEYS]:
            table.add_row(section, keys, description)
        with VerticalScroll():
            yield Static(Text("VISTA-TUI keys — esc closes", style="bold"))
            yield Static(table)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)
