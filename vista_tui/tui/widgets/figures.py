"""Figures of the statistics screen that are laid out at the width they get: profiles as sparklines on
one axis, and contexts that are not rows of the map (quantile examples) drawn as the context list
draws its lines.

Both are plain widgets whose `render` lays the figure out at `self.size.width`, so a resize
regrids the sparklines and re-cuts the context windows. Tokens reach them already sanitised
(`prepare_context`), and labels are the screen's own strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from vista_tui.core.stats_figures import spark_blocks, spark_cells
from vista_tui.tui.widgets.context_line import (
    PREFIX_WIDTH,
    PreparedContext,
    focus_column,
    format_activation,
    layout_window,
    merge_pieces,
)
from vista_tui.tui.widgets.contexts import shade_styles


@dataclass(frozen=True)
class SparkSeries:
    """One line of a `SparkRows`: a profile (counts on the figure's grid) under a label."""

    label: str
    counts: Sequence[int] | None
    """None: not recorded (the line says so)."""
    total: str = ""
    """Shown right of the blocks (e.g. how many firings the line counts)."""
    kind: Literal["all", "node"] = "all"
    """Which colour: the latent as a whole, or the selected node."""


class SparkRows(Widget):
    """Profiles on one shared axis, one line each: label, blocks regridded to the width, total; the axis below.

    Each line is scaled to its own largest cell, so a node's few members show their shape next
    to the latent's many firings; any non-empty cell is at least the lowest block.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "spark-rows--label",
        "spark-rows--all",
        "spark-rows--node",
        "spark-rows--axis",
        "spark-rows--missing",
    }
    """
    | Class | Description |
    | :- | :- |
    | `spark-rows--label` | A line's label and total. |
    | `spark-rows--all` | The blocks of the latent as a whole. |
    | `spark-rows--node` | The blocks of the selected node. |
    | `spark-rows--axis` | The axis line. |
    | `spark-rows--missing` | A line whose profile was not recorded. |
    """

    DEFAULT_CSS = """
    SparkRows {
        height: auto;
        & > .spark-rows--label { color: $text-muted; }
        & > .spark-rows--all { color: $primary; }
        & > .spark-rows--node { color: $accent; }
        & > .spark-rows--axis { color: $text-muted; }
        & > .spark-rows--missing { color: $text-disabled; text-style: italic; }
    }
    """

    def __init__(
        self, series: Sequence[SparkSeries], axis: tuple[str, str], *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.series = tuple(series)
        self.axis = axis
        """The labels of the axis' two ends (its start, its end)."""

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """One line per series, and the axis."""
        return len(self.series) + 1

    def render(self) -> Text:
        """The lines at the widget's size: each series as tall as the height allows (CSS sets it; auto: one line)."""
        width = self.size.width
        per_series = max(1, (self.size.height - 1) // max(1, len(self.series)))
        label_width = max((cell_len(s.label) for s in self.series), default=0) + 1
        total_width = max((cell_len(s.total) for s in self.series), default=0)
        total_width += 1 if total_width else 0
        room = max(0, width - label_width - total_width)
        label_style = self.get_component_rich_style("spark-rows--label")
        text = Text(no_wrap=True, overflow="crop")
        used = 0
        for series in self.series:
            if series.counts is None:
                lines = ["not recorded".ljust(room)[:room]] + [" " * room] * (per_series - 1)
                style = self.get_component_rich_style("spark-rows--missing")
            else:
                lines = spark_blocks(spark_cells(series.counts, room), per_series)
                used = max(used, len(lines[0]))
                style = self.get_component_rich_style(f"spark-rows--{series.kind}")
            for index, line in enumerate(lines):
                last = index == len(lines) - 1
                text.append((series.label if last else "").ljust(label_width), label_style)
                text.append(line.ljust(room), style)
                if series.total:
                    text.append(" " + (series.total if last else "").rjust(total_width - 1), label_style)
                text.append("\n")
        text.append(self._axis_line(label_width, used or room), self.get_component_rich_style("spark-rows--axis"))
        return text

    def _axis_line(self, indent: int, span: int) -> str:
        """The axis under `span` cells of blocks: its start at the first cell, its end at the last."""
        start, end = self.axis
        if span < len(start) + len(end) + 1:
            return " " * indent + start[:span]
        return " " * indent + start + end.rjust(span - len(start))


class ExampleLines(Widget):
    """Contexts that are not rows of the map, one line each, drawn as `ContextList` draws its lines:
    the activation, then the window with the focus token highlighted at a fixed column and the other
    tokens shaded by their activation. Not interactive (the statistics screen lists them to read)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "example-lines--activation",
        "example-lines--focus",
        "example-lines--shade",
    }
    """
    | Class | Description |
    | :- | :- |
    | `example-lines--activation` | The activation column. |
    | `example-lines--focus` | The focus token. |
    | `example-lines--shade` | Its `background` is the hue that token shading mixes in, in steps. |
    """

    DEFAULT_CSS = """
    ExampleLines {
        height: auto;
        & > .example-lines--activation { color: $text-muted; }
        & > .example-lines--focus { color: $accent; text-style: bold reverse; }
        & > .example-lines--shade { background: $success; }
    }
    """

    def __init__(
        self, contexts: Sequence[PreparedContext], *, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.contexts = tuple(contexts)
        """Prepared (sanitised and shaded) by `prepare_context`."""

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """One line per context."""
        return len(self.contexts)

    def render(self) -> Text:
        """The lines at the widget's width."""
        width = self.size.width
        base = self.rich_style
        activation = base + self._foreground("example-lines--activation")
        focus = base + self.get_component_rich_style("example-lines--focus")
        shades = shade_styles(base, self.get_component_styles("example-lines--shade").background)
        window = width - PREFIX_WIDTH
        text = Text(no_wrap=True, overflow="crop")
        for index, context in enumerate(self.contexts):
            if index:
                text.append("\n")
            text.append(" " + format_activation(context.activation) + " ", activation)
            if window <= 0:
                continue
            pieces = layout_window(context, window, focus_column(width) - PREFIX_WIDTH)
            for piece, kind in merge_pieces(pieces):
                text.append(piece, focus if kind < 0 else shades[kind])
        return text

    def _foreground(self, component: str) -> Style:
        """A component's colour and text style, without its background."""
        full = self.get_component_rich_style(component)
        return full.without_color + Style(color=full.color)
