"""What a node is called, three ways side by side: the LLM's label, the visual prompt, the keywords.

Wide (≥ NARROW_WIDTH columns) the three readings are columns under their headings; narrow
(a side pane at 80×24) they are rows with the heading in a left margin. A scored map (`vista
score`) adds a grid below: each reading's name and its scores, coloured by quality. Every text comes
from the map and passes through `sanitize`, and is cut to a sane length first, so neither
escape sequences nor a 100 kB "keyword" reach the terminal or stall a repaint. An empty
field says which command fills it.
"""

from __future__ import annotations

import math
from typing import ClassVar

from textual.content import Content
from textual.geometry import Size
from textual.reactive import Reactive, reactive
from textual.style import Style
from textual.widget import Widget

from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize
from vista_tui.core.score_figures import READING_NAMES, SCORES_LEGEND, ScoresReading, score_figures
from vista_tui.mapdata import ClusterNode
from vista_tui.mapdata.scores import READING_KINDS
from vista_tui.tui.widgets.truncation import fit_lines

NARROW_WIDTH = 60
"""Below this many columns the readings stack as rows instead of columns."""

HEADING_WIDTH = 11
"""Left margin holding the heading of a row in the narrow layout."""

SEPARATOR = " │ "
"""Between the columns of the wide layout."""

SCORE_GAP = "   "
"""Between two readings' scores on one line."""

MAX_LABEL_CHARS = 200
MAX_EXPLANATION_CHARS = 800
MAX_PROMPT_CHARS = 400
MAX_KEYWORD_CHARS = 60
MAX_KEYWORDS = 12


def label_hint(map_id: str) -> str:
    """What an empty LLM label or visual prompt says: the command that fills it."""
    return f"not computed yet — run `vista label {sanitize(map_id, 40)}`"


KEYWORDS_HINT = "not computed yet — run `vista build`"
"""What an empty keyword list says."""

AGREEMENT_NOT_COMPUTED = "agreement: not computed yet"


def agreement_text(agreement: float) -> str:
    """'agreement: 0.74', or that it is not computed yet (NaN)."""
    if not math.isfinite(agreement):
        return AGREEMENT_NOT_COMPUTED
    return f"agreement: {agreement:.2f}"


def failure_reason(label_status: str) -> str | None:
    """The reason of a failed labelling ('failed: <reason>'), None when it did not fail."""
    if not label_status.startswith("failed"):
        return None
    reason = label_status[len("failed") :].lstrip(" :").strip()
    return sanitize(reason or "no reason given", MAX_EXPLANATION_CHARS)


class LabelsPanel(Widget):
    """A node's LLM label, visual label and keywords side by side, with their agreement."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "labels--heading",
        "labels--label",
        "labels--hint",
        "labels--error",
        "labels--note",
        "labels--rule",
        "labels--score-low",
        "labels--score-mid",
        "labels--score-high",
        "labels--score-none",
    }
    """
    | Class | Description |
    | :- | :- |
    | `labels--heading` | "LLM label", "visual", "keywords", "agreement". |
    | `labels--label` | The LLM label itself. |
    | `labels--hint` | "not computed yet — run …" and the agreement when not computed. |
    | `labels--error` | "label failed: <reason>". |
    | `labels--note` | What a noise node is. |
    | `labels--rule` | The separators between columns. |
    | `labels--score-low`, `-mid`, `-high` | A score near chance, fair, good. |
    | `labels--score-none` | `—`: the reading was not scored by that scorer. |
    """

    # Colours only, and the panel's natural height; where it sits is the app's layout.
    DEFAULT_CSS = """
    LabelsPanel { height: auto; }
    LabelsPanel > .labels--heading { color: $foreground-muted; text-style: bold; }
    LabelsPanel > .labels--label { color: $accent; text-style: bold; }
    LabelsPanel > .labels--hint { color: $foreground-muted; text-style: italic; }
    LabelsPanel > .labels--error { color: $text-error; text-style: bold; }
    LabelsPanel > .labels--note { color: $foreground-muted; }
    LabelsPanel > .labels--rule { color: $foreground-muted; }
    LabelsPanel > .labels--score-low { color: $error; text-style: bold; }
    LabelsPanel > .labels--score-mid { color: $warning; }
    LabelsPanel > .labels--score-high { color: $success; }
    LabelsPanel > .labels--score-none { color: $foreground-muted; }
    """

    node_id: Reactive[str | None] = reactive(None, init=False)
    """The node whose labels are shown (None: nothing yet)."""

    def __init__(
        self,
        model: MapModel,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.model = model
        self._tallest: tuple[int, int] = (0, 0)
        """(width, lines): the most lines a node shown at this width has needed."""
        self._memo: dict[tuple[str | None, int, int | None], tuple[tuple[object, ...], list[Content]]] = {}

    def notify_style_update(self) -> None:
        """Styles changed (theme): the lines carry styles, lay them out again."""
        super().notify_style_update()
        self._memo.clear()

    def show_node(self, node_id: str) -> None:
        """Show the labels of `node_id`."""
        if node_id not in self.model.nodes:
            raise KeyError(f"no node {node_id!r} in map {self.model.map_id}")
        self.node_id = node_id

    def watch_node_id(self, old: str | None, new: str | None) -> None:
        # The panel keeps the height of the tallest node shown so far (at this width): it does not
        # jump up and down while walking the tree, and a change of node re-lays out the screen
        # (a frame of its own, ~30 ms at 160x48) only when a node needs more lines than any before.
        if not self.display:  # hidden on a small terminal: sized afresh when a resize shows it
            return
        width = self.content_region.width or self.size.width
        if not width:
            self.refresh(layout=True)
            return
        tallest = self._tallest[1] if self._tallest[0] == width else 0
        self.refresh(layout=len(self.lines(width)) > tallest)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As many rows as the tallest node shown so far needs at `width` (see `watch_node_id`)."""
        needed = len(self.lines(width))
        tallest = self._tallest[1] if self._tallest[0] == width else 0
        self._tallest = (width, max(needed, tallest))
        return self._tallest[1]

    # -- the three readings ----------------------------------------------------------------------

    def _style(self, component: str) -> Style:
        return self.get_visual_style(component, partial=True)

    def _llm(self, node: ClusterNode) -> Content:
        labels = node.labels
        parts: list[Content] = []
        reason = failure_reason(labels.label_status)
        if reason is not None:
            parts.append(Content.styled(f"label failed: {reason}", self._style("labels--error")))
        if labels.llm_label:
            parts.append(Content.styled(sanitize(labels.llm_label, MAX_LABEL_CHARS), self._style("labels--label")))
            if labels.llm_explanation:
                parts.append(Content(sanitize(labels.llm_explanation, MAX_EXPLANATION_CHARS)))
        elif reason is None:
            parts.append(Content.styled(label_hint(self.model.map_id), self._style("labels--hint")))
        if node.kind == "root":
            for description in self.model.published[:2]:
                parts.append(
                    Content.styled("Neuronpedia: ", self._style("labels--note"))
                    + Content(sanitize(description, MAX_EXPLANATION_CHARS))
                )
        return Content("\n").join(parts)

    def _visual(self, node: ClusterNode) -> Content:
        prompt = node.labels.visual_prompt
        if not prompt:
            return Content.styled(label_hint(self.model.map_id), self._style("labels--hint"))
        return Content(sanitize(prompt, MAX_PROMPT_CHARS))

    def _keywords(self, node: ClusterNode) -> Content:
        keywords = node.labels.keywords
        if not keywords:
            return Content.styled(KEYWORDS_HINT, self._style("labels--hint"))
        shown = [sanitize(word, MAX_KEYWORD_CHARS) for word in keywords[:MAX_KEYWORDS]]
        more = f" (+{len(keywords) - MAX_KEYWORDS})" if len(keywords) > MAX_KEYWORDS else ""
        return Content(", ".join(shown) + more)

    def _agreement(self, node: ClusterNode) -> Content:
        text = agreement_text(node.labels.agreement)
        return Content.styled(text, self._style("labels--hint")) if text == AGREEMENT_NOT_COMPUTED else Content(text)

    def _latent_agreement(self, node: ClusterNode) -> Content | None:
        """At the root: how well the published explanation agrees with each top-level cluster."""
        scores = self.model.latent_agreement
        if node.kind != "root" or not scores:
            return None
        parts = [
            f"{self.model.title(node_id, 2)} {score:.2f}"
            if math.isfinite(score)
            else f"{self.model.title(node_id, 2)} n/a"
            for node_id in self.model.children(node.node_id)
            if (score := scores.get(node_id)) is not None
        ]
        if not parts:
            return None
        return Content.styled("published vs clusters: ", self._style("labels--heading")) + Content(" · ".join(parts))

    # -- scores ------------------------------------------------------------------------------------

    def scores_changed(self) -> None:
        """The map's scores were read: show them, with a tooltip saying what they mean."""
        reading = self.model.scores_if_read
        self.tooltip = SCORES_LEGEND if reading is not None and reading.scorers else None
        self.refresh(layout=True)

    def _scored_kinds(self, node: ClusterNode, reading: ScoresReading) -> list[str]:
        """The node's readings to show scores for: those it has, and any other that was scored."""
        labels = node.labels
        present = {
            "llm_label": bool(labels.llm_label),
            "llm_explanation": bool(labels.llm_explanation),
            "visual_prompt": bool(labels.visual_prompt),
            "keywords": bool(labels.keywords),
            "focus_tokens": bool(labels.focus_tokens),
            "published": node.kind == "root" and bool(self.model.published),
        }
        scored = set(reading.scored_readings(node.node_id))
        return [kind for kind in READING_KINDS if present.get(kind) or kind in scored]

    def _score_cell(self, name: str, reading: ScoresReading, node_id: str, kind: str, compact: bool) -> Content:
        """'label  det 0.82 · fuzz 0.71 · emb 0.90', each figure coloured by its quality."""
        parts: list[Content] = [Content.styled(name, self._style("labels--heading"))]
        for index, figure in enumerate(score_figures(reading, node_id, kind, compact=compact)):
            lead = " " if compact or index == 0 else " · "
            parts.append(Content(lead + figure.name + ("" if compact else " ")))
            parts.append(Content.styled(figure.figure, self._style(f"labels--score-{figure.quality}")))
        return Content("").join(parts)

    def _scores(self, node: ClusterNode, width: int, *, compact: bool = False) -> list[Content]:
        """Each reading's scores, as many readings to a line as fit; nothing for a map without scores.

        The full figures ('det 0.82 · fuzz 0.71') unless they overflow `width` or `compact` asks
        for 'd.82 f.71'.
        """
        reading = self.model.scores_if_read
        if reading is None or not reading.scorers:
            return []
        if not reading.has_node(node.node_id):
            return [Content.styled("scores: not scored", self._style("labels--hint"))]
        kinds = self._scored_kinds(node, reading)
        if not kinds:
            return []
        name_width = max(len(READING_NAMES[kind]) for kind in kinds)
        layouts: list[tuple[bool, list[Content]]] = []
        for short in (False, True):
            cells = [
                self._score_cell(READING_NAMES[kind].ljust(name_width), reading, node.node_id, kind, short)
                for kind in kinds
            ]
            cell_width = max(cell.cell_length for cell in cells)
            per_line = max(1, (width + len(SCORE_GAP)) // (cell_width + len(SCORE_GAP)))
            lines = [
                Content(SCORE_GAP).join(
                    [cell.pad_right(cell_width - cell.cell_length) for cell in cells[start : start + per_line - 1]]
                    + cells[start + per_line - 1 : start + per_line]
                )
                for start in range(0, len(cells), per_line)
            ]
            layouts.append((cell_width > width, lines))
        lines = layouts[0][1] if not layouts[0][0] and not compact else layouts[1][1]
        return [line if line.cell_length <= width else line.truncate(width) for line in lines]

    def _noise_note(self, node: ClusterNode) -> Content | None:
        if node.kind != "noise":
            return None
        parent = node.parent_id
        of = f"“{self.model.title(parent)}”" if parent is not None and parent in self.model.nodes else "its parent"
        return Content.styled(
            f"noise: the {node.size:,} contexts of {of} that fell in no sub-cluster", self._style("labels--note")
        )

    # -- layout -----------------------------------------------------------------------------------

    def lines(self, width: int, height: int | None = None) -> list[Content]:
        """The panel's lines at `width` columns, none wider; at most `height` lines when given.

        Short of height, the longest reading loses lines first (its last shown line ends in …),
        down to one line each; the agreement line stays.
        """
        width = max(width, 1)
        if height is not None and len(full := self.lines(width)) <= height:
            return full  # fits: the same lines as the natural height (laid out once per node)
        node = self.model.nodes.get(self.node_id) if self.node_id is not None else None
        # A change of node asks for the lines up to three times (height, layout, paint): keep the
        # last few, as long as what they show is the same objects (a relabel replaces them).
        key = (self.node_id, width, height)
        sources = (
            node,
            node.labels if node is not None else None,
            self.model.published,
            self.model.latent_agreement,
            self.model.scores_if_read,
        )
        memo = self._memo.get(key)
        if memo is not None and all(a is b for a, b in zip(memo[0], sources, strict=True)):
            return memo[1]
        lines = self._layout(node, width, height)
        if len(self._memo) >= 8:
            self._memo.clear()
        self._memo[key] = (sources, lines)
        return lines

    def _layout(self, node: ClusterNode | None, width: int, height: int | None) -> list[Content]:
        if node is None:
            return [Content.styled("no node selected", self._style("labels--hint"))]
        note = self._noise_note(node)
        top = note.wrap(width) if note is not None else []
        agreement = self._agreement(node).wrap(width)
        latent = self._latent_agreement(node)
        if latent is not None:
            agreement += latent.wrap(width)
        titles = ["LLM label", "visual", "keywords"]
        bodies = [self._llm(node), self._visual(node), self._keywords(node)]
        if width >= NARROW_WIDTH:
            inner = width - len(SEPARATOR) * (len(titles) - 1)
            widths = [inner // 3 + (1 if i < inner % 3 else 0) for i in range(3)]
            layout = "columns"
        else:
            margin = HEADING_WIDTH if width >= 2 * HEADING_WIDTH + 8 else 0
            widths = [width - margin] * 3
            layout = "rows" if margin else "stacked"
        scores = self._scores(node, width)
        if height is not None:
            # Short of height the scores take what the readings leave at one line each: compact
            # figures when they need fewer lines, then cut (the last line ends in …).
            least = {"columns": 2, "rows": 3, "stacked": 6}[layout] + min(len(top), 1) + len(agreement)
            budget = max(1, height - least)
            if len(scores) > budget:
                compact = self._scores(node, width, compact=True)
                scores = fit_lines(compact if len(compact) < len(scores) else scores, budget, width)
        bottom = [*scores, *agreement]
        wrapped = [body.wrap(w) for body, w in zip(bodies, widths, strict=True)]
        caps = [len(lines) for lines in wrapped]

        def middle_height() -> int:
            if layout == "columns":
                return 1 + max(caps)
            return sum(caps) + (len(titles) if layout == "stacked" else 0)

        if height is not None:
            if len(top) + middle_height() + len(bottom) > height:
                top = fit_lines(top, 1, width)
            while len(top) + middle_height() + len(bottom) > height and max(caps) > 1:
                longest = max(range(len(caps)), key=caps.__getitem__)
                caps[longest] -= 1
        shown = [fit_lines(lines, cap, w) for lines, cap, w in zip(wrapped, caps, widths, strict=True)]
        if layout == "columns":
            middle = self._columns(titles, shown, widths)
        else:
            middle = self._rows(titles, shown, width - widths[0])
        return [*top, *middle, *bottom]

    def _rows(self, titles: list[str], bodies: list[list[Content]], margin: int) -> list[Content]:
        """The readings one under the other, each heading in a left margin (or above, without one)."""
        heading = self._style("labels--heading")
        lines: list[Content] = []
        for title, body in zip(titles, bodies, strict=True):
            if not margin:
                lines.append(Content.styled(title, heading))
                lines.extend(body)
                continue
            for index, line in enumerate(body):
                lead = Content.styled(title.ljust(margin), heading) if index == 0 else Content(" " * margin)
                lines.append(lead + line)
        return lines

    def _columns(self, titles: list[str], bodies: list[list[Content]], widths: list[int]) -> list[Content]:
        """The readings as columns under their headings, joined by rules."""
        heading, rule = self._style("labels--heading"), self._style("labels--rule")
        columns = [[Content.styled(title, heading), *body] for title, body in zip(titles, bodies, strict=True)]
        height = max(len(column) for column in columns)
        lines: list[Content] = []
        for y in range(height):
            cells: list[Content] = []
            for index, (column, column_width) in enumerate(zip(columns, widths, strict=True)):
                cell = column[y] if y < len(column) else Content("")
                if index:
                    cells.append(Content.styled(SEPARATOR, rule))
                if index < len(columns) - 1:
                    cell = cell.pad_right(max(0, column_width - cell.cell_length))
                cells.append(cell)
            lines.append(Content("").join(cells))
        return lines

    def render(self) -> Content:
        """The labels, laid out for the widget's size."""
        return Content("\n").join(self.lines(self.size.width, self.size.height or None))
