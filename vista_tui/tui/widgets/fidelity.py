"""How faithful the map is: the mutual-kNN gain curve of the layout, as a block-character sparkline.

The x axis is the sweep of k (geometric, so about log k), the bars the gain over a random
layout, the best k marked with ▲ under its bar and named in the caption. Hand-rolled rather
than Textual's Sparkline, which bins data to the width and cannot mark one sample.
"""

from __future__ import annotations

from typing import ClassVar

from textual.content import Content
from textual.geometry import Size
from textual.reactive import Reactive, reactive
from textual.style import Style
from textual.widget import Widget

from vista_tui.mapdata import FidelityCurve
from vista_tui.tui.widgets.truncation import fit_lines

NOT_COMPUTED = "fidelity not computed — rebuild with `vista build`"
"""What the panel says for a map without a fidelity curve."""

BLOCKS = " ▁▂▃▄▅▆▇█"
"""Bar glyphs by eighths of a cell."""

BAR_ROWS = 2
"""Height of the sparkline in terminal rows (16 levels) with `height: auto`."""

MAX_BAR_ROWS = 4
"""Tallest sparkline, when the app gives the panel more height than it asks for."""


def _percent(value: float) -> str:
    return f"{value:.2g}" if value < 1 else f"{value:.3g}"


def caption_text(curve: FidelityCurve) -> str:
    """'fidelity: gain 0.53 max at k=16 (0.8 % of N)'."""
    return f"fidelity: gain {curve.best_gain:.2f} max at k={curve.best_k} ({_percent(curve.best_percent)} % of N)"


def column_samples(n_samples: int, width: int) -> list[range]:
    """The sweep samples each of `width` columns summarises (every column at least one, in order)."""
    return [
        range(c * n_samples // width, max(c * n_samples // width + 1, (c + 1) * n_samples // width))
        for c in range(width)
    ]


def bar_rows(gain: list[float], width: int, rows: int = BAR_ROWS) -> tuple[list[str], list[int]]:
    """The sparkline (top row first) and the columns whose samples include the maximum."""
    if not gain or width <= 0:
        return [""] * rows, []
    best = max(range(len(gain)), key=gain.__getitem__)
    top = max(gain)
    columns = column_samples(len(gain), width)
    levels: list[int] = []
    for samples in columns:
        value = max(gain[i] for i in samples)
        level = 0 if top <= 0 or value <= 0 else round(value / top * rows * 8)
        # A positive gain never disappears: at least the lowest bar.
        levels.append(max(level, 1) if value > 0 else 0)
    lines = ["".join(BLOCKS[min(8, max(0, level - 8 * r))] for level in levels) for r in reversed(range(rows))]
    marked = [c for c, samples in enumerate(columns) if best in samples]
    return lines, marked


class FidelityPanel(Widget):
    """The layout's mutual-kNN gain curve with its maximum marked, or a hint when there is none."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "fidelity--bar",
        "fidelity--best",
        "fidelity--axis",
        "fidelity--value",
        "fidelity--hint",
    }
    """
    | Class | Description |
    | :- | :- |
    | `fidelity--bar` | The sparkline. |
    | `fidelity--best` | The bar of the best k and its ▲ marker. |
    | `fidelity--axis` | The k axis under the bars and the caption's words. |
    | `fidelity--value` | The numbers in the caption. |
    | `fidelity--hint` | The "not computed" message. |
    """

    # Colours only, and the panel's natural height; where it sits is the app's layout.
    DEFAULT_CSS = """
    FidelityPanel { height: auto; }
    FidelityPanel > .fidelity--bar { color: $primary-lighten-1; }
    FidelityPanel > .fidelity--best { color: $accent; text-style: bold; }
    FidelityPanel > .fidelity--axis { color: $foreground-muted; }
    FidelityPanel > .fidelity--value { text-style: bold; }
    FidelityPanel > .fidelity--hint { color: $foreground-muted; text-style: italic; }
    """

    curve: Reactive[FidelityCurve | None] = reactive(None, layout=True, init=False)
    """The gain curve shown (None: the map has none)."""

    def __init__(
        self,
        curve: FidelityCurve | None,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.set_reactive(FidelityPanel.curve, curve)

    def _style(self, component: str) -> Style:
        return self.get_visual_style(component, partial=True)

    def caption(self, curve: FidelityCurve, width: int) -> list[Content]:
        """The caption in its longest wording that fits `width` (wrapped if even the shortest does not)."""
        axis, value = self._style("fidelity--axis"), self._style("fidelity--value")
        gain, k, percent = f"{curve.best_gain:.2f}", f"k={curve.best_k}", _percent(curve.best_percent)
        wordings = [
            Content.assemble(
                ("fidelity: gain ", axis), (gain, value), (" max at ", axis), (k, value), (f" ({percent} % of N)", axis)
            ),
            Content.assemble(
                ("fidelity: max gain ", axis), (gain, value), (" at ", axis), (k, value), (f" ({percent} %)", axis)
            ),
            Content.assemble(("fidelity ", axis), (gain, value), (" at ", axis), (k, value), (f" ({percent} %)", axis)),
            Content.assemble((gain, value), (" at ", axis), (k, value)),
        ]
        for wording in wordings:
            if wording.cell_length <= width:
                return [wording]
        return wordings[-1].wrap(width)

    def lines(self, width: int, height: int | None = None) -> list[Content]:
        """The panel's lines at `width` columns, none wider; at most `height` lines when given.

        With less height than it likes, the panel keeps the caption, then one row of bars,
        then the k axis, then more bar rows (up to MAX_BAR_ROWS when there is room).
        """
        width = max(width, 1)
        curve = self.curve
        if curve is None or not curve.gain:
            hint = Content.styled(NOT_COMPUTED, self._style("fidelity--hint")).wrap(width)
            return hint if height is None else fit_lines(hint, height, width)
        caption = self.caption(curve, width)
        if height is None:
            n_rows, with_axis = BAR_ROWS, True
        else:
            caption = fit_lines(caption, max(1, height - 2), width)
            room = max(0, height - len(caption))
            with_axis = room >= 2
            n_rows = min(MAX_BAR_ROWS, room - 1) if with_axis else room
        out = list(caption)
        if n_rows <= 0:
            return out
        bars, marked = bar_rows(curve.gain, width, n_rows)
        bar_style, best_style = self._style("fidelity--bar"), self._style("fidelity--best")
        for text in bars:
            line = Content.styled(text, bar_style)
            for column in marked:
                line = line.stylize(best_style, column, column + 1)
            out.append(line)
        if with_axis:
            out.append(self._axis_line(curve, len(bars[0]), marked, self._style("fidelity--axis"), best_style))
        return out

    def _axis_line(self, curve: FidelityCurve, width: int, marked: list[int], axis: Style, best: Style) -> Content:
        """'k=1 ────▲──── k=1000': the sweep's ends, the best k's column marked."""
        cells = ["─"] * width
        left, right = f"k={curve.k[0]} ", f" k={curve.k[-1]}"
        marker = marked[len(marked) // 2] if marked else -1
        if len(left) < marker:
            cells[: len(left)] = left
        if width - len(right) > marker and width - len(right) > len(left):
            cells[width - len(right) :] = right
        if 0 <= marker < width:
            cells[marker] = "▲"
        line = Content.styled("".join(cells), axis)
        return line.stylize(best, marker, marker + 1) if marker >= 0 else line

    def render(self) -> Content:
        """The caption, the bars and the k axis, fitted to the widget's size."""
        return Content("\n").join(self.lines(self.size.width, self.size.height or None))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As many rows as the lines need at `width` (the caption may wrap)."""
        return len(self.lines(width))
