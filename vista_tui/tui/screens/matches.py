"""`M`: the map's latent's matches in the other SAE(s), from the store's match tables (`vista match`).

One line per matched latent: the one-to-one partner marked `1:1`, the decoder and encoder
cosines, and whether the store has a map of it. Enter opens that map over this one (Backspace
or Esc there comes back); `|` opens it side by side with this one. A latent without a map gets a
toast with the `vista build` command that makes one.
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from vista_tui.core.cross_sae import LatentMatch, MatchesReading, sae_short_name
from vista_tui.core.sanitize import sanitize

OPEN = "open"
SIDE_BY_SIDE = "side"


def _cosine(value: float) -> str:
    return f"{value:5.2f}" if math.isfinite(value) else "    ·"


def match_line(match: LatentMatch) -> Text:
    """One matched latent: partner mark, latent, cosines, map or not, the SAE (sanitized: it comes from a file)."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append("1:1 " if match.one_to_one else "    ", "bold")
    line.append(f"{match.latent:>7}  {_cosine(match.decoder_cosine)}  {_cosine(match.encoder_cosine)}  ")
    line.append("map   " if match.map_path is not None else "—     ", "" if match.map_path is not None else "dim")
    line.append(sanitize(f"{sae_short_name(match.sae)} ({match.d_sae:,} wide)", 120), "dim")
    return line


class MatchesScreen(ModalScreen[tuple[str, LatentMatch] | None]):
    """The latent's matches; dismissed with (OPEN or SIDE_BY_SIDE, the match), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open map", tooltip="Open the matched latent's map (Backspace there comes back)"),
        Binding(
            "vertical_line",
            "side_by_side",
            "Side by side",
            tooltip="This map and the matched latent's map side by side",
        ),
        Binding("escape,q", "close", "Close"),
    ]

    DEFAULT_CSS = """
    MatchesScreen { align: center middle; }
    MatchesScreen > Vertical {
        width: 90%; max-width: 110; height: 80%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    MatchesScreen #matches-title { height: auto; text-style: bold; }
    MatchesScreen #matches-columns { height: 1; color: $text-muted; }
    MatchesScreen OptionList { height: 1fr; border: none; text-wrap: nowrap; text-overflow: ellipsis; }
    MatchesScreen #matches-hint { height: 1; color: $text-muted; }
    """

    def __init__(self, reading: MatchesReading) -> None:
        super().__init__()
        self.reading = reading

    def compose(self) -> ComposeResult:
        reading = self.reading
        with Vertical():
            yield Static(
                sanitize(
                    f"latent {reading.latent} of {sae_short_name(reading.sae)} in {len(reading.tables)} match "
                    f"table{'s' if len(reading.tables) != 1 else ''}: {len(reading.matches)} matches",
                    300,
                ),
                id="matches-title",
            )
            yield Static("    latent   dec    enc   map   SAE", id="matches-columns")
            yield OptionList(*(Option(match_line(m), id=str(i)) for i, m in enumerate(reading.matches)))
            yield Static("⏎ open its map · | side by side · esc close", id="matches-hint")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0 if self.reading.matches else None
        options.focus()

    @property
    def highlighted(self) -> LatentMatch | None:
        """The match under the cursor."""
        index = self.query_one(OptionList).highlighted
        return self.reading.matches[index] if index is not None else None

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        """Enter: open the matched latent's map (or say how to build it)."""
        self._choose(OPEN)

    def action_side_by_side(self) -> None:
        """`|`: this map and the matched latent's side by side."""
        self._choose(SIDE_BY_SIDE)

    def _choose(self, how: str) -> None:
        match = self.highlighted
        if match is None:
            return
        if match.map_path is None:
            self.notify(
                sanitize(f"no map of latent {match.latent} of {match.sae}: run `{match.build_command}`", 400),
                severity="warning",
                timeout=10,
                markup=False,
            )
            return
        self.dismiss((how, match))

    def action_close(self) -> None:
        self.dismiss(None)
