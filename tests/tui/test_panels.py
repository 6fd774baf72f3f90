"""The side panels on their own: minimap, fidelity curve and labels, each in a tiny host app.

Every check reads what the widget draws (its rendered strips: text and style per cell) at a
real terminal size, 80x24 and 160x48, on synthetic maps.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from rich.style import Style as RichStyle
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Region
from textual.pilot import Pilot
from textual.strip import Strip
from textual.widget import Widget

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.model import MapModel
from vista_tui.mapdata import FidelityCurve
from vista_tui.tui.widgets.fidelity import NOT_COMPUTED, FidelityPanel, bar_rows, caption_text
from vista_tui.tui.widgets.labels import KEYWORDS_HINT, LabelsPanel
from vista_tui.tui.widgets.minimap import (
    MARK,
    OUTLINE,
    SELECTED,
    Minimap,
    box_dots,
    braille_lines,
    fit_viewport,
    pack_dots,
    rasterize,
)

SIZES = [(80, 24), (160, 48)]


# -- helpers ---------------------------------------------------------------------------------------


class Host(App[None]):
    """One widget, full screen or in a right-hand pane `pane` columns wide."""

    def __init__(self, widget: Widget, pane: int | None = None) -> None:
        super().__init__()
        self.widget = widget
        self.pane = pane

    def compose(self) -> ComposeResult:
        if self.pane is None:
            yield self.widget
            return
        with Horizontal():
            yield Vertical(id="left")
            with Vertical(id="pane"):
                yield self.widget

    def on_mount(self) -> None:
        if self.pane is not None:
            self.query_one("#pane").styles.width = self.pane
        if isinstance(self.widget, Minimap):
            self.widget.styles.height = "1fr"


def run_host(
    widget: Widget, size: tuple[int, int], check: Callable[[Pilot[None]], Awaitable[None]], pane: int | None = None
) -> None:
    """Run a host app at `size` and `check` it (through its pilot) once the widget is laid out."""

    async def main() -> None:
        app = Host(widget, pane)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await check(pilot)

    asyncio.run(main())


def strips(widget: Widget) -> list[Strip]:
    """What the widget draws, one Strip (segments of text and style) per row."""
    width, height = widget.outer_size
    return widget.render_lines(Region(0, 0, width, height))


def text_lines(widget: Widget) -> list[str]:
    return [strip.text for strip in strips(widget)]


def cells_styled(widget: Widget, style: RichStyle) -> list[tuple[int, int, str]]:
    """(x, y, character) of every cell drawn in the colour of `style`."""
    out = []
    for y, strip in enumerate(strips(widget)):
        x = 0
        for segment in strip:
            for char in segment.text:
                if segment.style is not None and segment.style.color == style.color:
                    out.append((x, y, char))
                x += 1
    return out


@pytest.fixture(scope="module")
def small_map(tmp_path_factory: pytest.TempPathFactory) -> MapModel:
    return MapModel.open(build_synthetic_map(tmp_path_factory.mktemp("maps") / "syn-small", n=4000))


@pytest.fixture(scope="module")
def labelled_map(tmp_path_factory: pytest.TempPathFactory) -> MapModel:
    return MapModel.open(build_synthetic_map(tmp_path_factory.mktemp("maps") / "syn-llm", n=240, llm_labels=True))


@pytest.fixture
def plain_map(tmp_path: Path) -> MapModel:
    """A fresh small map per test: tests may change its labels in memory."""
    return MapModel.open(build_synthetic_map(tmp_path / "syn-plain", n=240))


def a_leaf(model: MapModel) -> str:
    """A cluster two levels down (a sub-sense), whose parent is a sense cluster, not the root."""
    sense = next(c for c in model.children(model.root.node_id) if model.nodes[c].kind == "cluster")
    return model.children(sense)[-1]  # the smallest sub-sense


def noise_of(model: MapModel) -> str:
    return next(c for c in model.children(model.root.node_id) if model.nodes[c].kind == "noise")


# -- minimap: the pure rasteriser --------------------------------------------------------------------


def test_points_land_in_the_expected_cells() -> None:
    # 4 x 2 cells = 8 x 8 dots: the unit square fills it exactly, y up.
    bits = rasterize(np.array([[0.0, 1.0]]), 4, 2)
    assert bits.shape == (2, 4)
    assert bits[0, 0] == 0x01 and bits.sum() == 0x01  # top-left dot of the top-left cell
    bits = rasterize(np.array([[1.0, 0.0]]), 4, 2)
    assert bits[1, 3] == 0x80 and bits.sum() == 0x80  # bottom-right dot of the bottom-right cell
    bits = rasterize(np.array([[0.5, 0.5]]), 4, 2)  # dot (4, 4): cell (row 1, col 2), its top-left dot
    assert bits[1, 2] == 0x01 and bits.sum() == 0x01
    bits = rasterize(np.array([[0.3, 0.6]]), 4, 2)  # dot x=2.4 -> 2, y=(1-0.6)*8=3.2 -> 3: cell (0, 1), dot (0, 3)
    assert bits[0, 1] == 0x40 and bits.sum() == 0x40


def test_points_in_one_cell_are_ored_and_bad_points_skipped() -> None:
    xy = np.array([[0.0, 1.0], [0.2, 1.0], [0.0, 0.55], [np.nan, 0.5], [np.inf, 0.2]])
    bits = rasterize(xy, 4, 2)
    # (0,1) -> dot (0,0) bit 0; (0.2,1) -> dot (1,0) bit 3; (0,0.55) -> dot (0,3) bit 6.
    assert bits[0, 0] == 0x01 | 0x08 | 0x40
    assert np.count_nonzero(bits) == 1


def test_the_unit_square_keeps_its_aspect_and_is_centred() -> None:
    # 10 x 2 cells = 20 x 8 dots: a square of 8 dots, from dot column 6.
    viewport = fit_viewport(10, 2)
    assert (viewport.side, viewport.x0, viewport.y0) == (8, 6, 0)
    bits = rasterize(np.array([[0.0, 1.0], [1.0, 0.0]]), 10, 2)
    assert bits[0, 3] == 0x01 and bits[1, 6] == 0x80
    # Tall: 2 x 10 cells = 4 x 40 dots, a square of 4 dots from dot row 18 (cell row 4, dot row 2).
    bits = rasterize(np.array([[0.0, 1.0]]), 2, 10)
    assert bits[4, 0] == 0x04


def test_box_outline_dots() -> None:
    viewport = fit_viewport(4, 2)
    bits = pack_dots(box_dots((0.0, 0.0, 1.0, 1.0), viewport), viewport)
    assert bits[0, 0] == 0x4F  # top edge (bits 0, 3) and left edge (bits 0, 1, 2, 6)
    assert bits[0, 1] == 0x09  # top edge only
    assert bits[0, 3] == 0xB9  # top edge and right edge (bits 3, 4, 5, 7)
    assert bits[1, 0] == 0xC7  # left edge and bottom edge (bits 6, 7)
    assert bits[1, 1] == 0xC0  # bottom edge only


def test_braille_lines_use_spaces_for_empty_cells() -> None:
    assert braille_lines(np.array([[0, 1, 0xFF]], dtype=np.uint8)) == [" ⠁⣿"]


# -- minimap: the widget -----------------------------------------------------------------------------


def is_braille_or_space(char: str) -> bool:
    return char == " " or 0x2800 <= ord(char) <= 0x28FF


@pytest.mark.parametrize("size", SIZES)
def test_minimap_draws_only_braille(small_map: MapModel, size: tuple[int, int]) -> None:
    minimap = Minimap(small_map)

    async def check(pilot: Pilot[None]) -> None:
        minimap.show_node(a_leaf(small_map))
        await pilot.pause()
        lines = text_lines(minimap)
        assert len(lines) == size[1] and all(len(line) == size[0] for line in lines)
        assert all(is_braille_or_space(char) for line in lines for char in line)
        dots = sum(bin(ord(char) - 0x2800).count("1") for line in lines for char in line if char != " ")
        assert dots > 100  # the map is drawn, not blank

    run_host(minimap, size, check)


@pytest.mark.parametrize("size", SIZES)
def test_minimap_lights_up_more_cells_for_a_parent_than_for_its_leaf(
    small_map: MapModel, size: tuple[int, int]
) -> None:
    minimap = Minimap(small_map)
    leaf = a_leaf(small_map)
    parent = small_map.parent(leaf)
    assert parent is not None

    async def check(pilot: Pilot[None]) -> None:
        bright = minimap.get_component_rich_style("minimap--selected")
        minimap.show_node(leaf)
        await pilot.pause()
        leaf_cells = {(x, y) for x, y, _ in cells_styled(minimap, bright)}
        minimap.show_node(parent)
        await pilot.pause()
        parent_cells = {(x, y) for x, y, _ in cells_styled(minimap, bright)}
        assert 0 < len(leaf_cells) < len(parent_cells)
        assert len(leaf_cells & parent_cells) >= 0.9 * len(leaf_cells)  # the leaf's points are the parent's
        minimap.show_node(small_map.root.node_id)
        await pilot.pause()
        dim = minimap.get_component_rich_style("minimap--point")
        assert not cells_styled(minimap, dim)  # everything is the root's

    run_host(minimap, size, check)


@pytest.mark.parametrize("size", SIZES)
def test_minimap_outlines_the_parent_box_except_for_the_root(small_map: MapModel, size: tuple[int, int]) -> None:
    minimap = Minimap(small_map)
    leaf = a_leaf(small_map)
    parent = small_map.nodes[small_map.parent(leaf) or ""]

    async def check(pilot: Pilot[None]) -> None:
        outline = minimap.get_component_rich_style("minimap--outline")
        minimap.show_node(leaf)
        await pilot.pause()
        drawn = cells_styled(minimap, outline)
        assert len(drawn) >= 8
        # Every outline cell sits on the parent's box; the cells of the box not drawn as
        # outline hold the leaf's bright members.
        viewport = fit_viewport(*size)
        box_cells = set(zip(*np.nonzero(pack_dots(box_dots(parent.bbox, viewport), viewport).T), strict=True))
        assert {(x, y) for x, y, _ in drawn} <= box_cells
        assert len(drawn) + np.count_nonzero(minimap.frame.kinds == SELECTED) >= len(box_cells)
        minimap.show_node(small_map.root.node_id)
        await pilot.pause()
        assert not cells_styled(minimap, outline)
        assert not (minimap.frame.kinds == OUTLINE).any()

    run_host(minimap, size, check)


def test_minimap_marks_the_focused_context(small_map: MapModel) -> None:
    minimap = Minimap(small_map)
    leaf = a_leaf(small_map)
    row = int(small_map.nodes[leaf].members[0])

    async def check(pilot: Pilot[None]) -> None:
        mark = minimap.get_component_rich_style("minimap--mark")
        minimap.show_node(leaf)
        minimap.mark_row(row)
        await pilot.pause()
        marked = cells_styled(minimap, mark)
        assert [char for _, _, char in marked] == ["⣿"]
        x, y, _ = marked[0]
        assert minimap.frame.kinds[y, x] == MARK
        assert rasterize(small_map.layout[[row]], 80, 24)[y, x] != 0  # where that context's dot is
        minimap.mark_row(None)
        await pilot.pause()
        assert not cells_styled(minimap, mark)

    run_host(minimap, (80, 24), check)


def test_minimap_rows_kept_by_their_cells_equal_rows_styled_afresh(small_map: MapModel) -> None:
    """Back on a node, each row comes from the rows kept by their cells: the strip drawn for it
    before, and the same segments as the row styled afresh from the frame."""
    minimap = Minimap(small_map)
    leaf = a_leaf(small_map)
    parent = small_map.parent(leaf)
    assert parent is not None

    async def check(pilot: Pilot[None]) -> None:
        minimap.show_node(leaf)
        await pilot.pause()
        first = [minimap.render_line(y) for y in range(minimap.size.height)]
        minimap.show_node(parent)
        await pilot.pause()
        changed = [y for y in range(minimap.size.height) if minimap.render_line(y) is not first[y]]
        assert changed  # the parent lights up other rows
        minimap.mark_row(int(small_map.nodes[leaf].members[0]))  # a mark, then none: the rows change back
        minimap.show_node(leaf)
        minimap.mark_row(None)
        await pilot.pause()
        again = [minimap.render_line(y) for y in range(minimap.size.height)]
        assert all(again[y] is first[y] for y in changed)
        fresh = minimap._build_strips(minimap.frame)
        assert [list(strip) for strip in again] == [list(strip) for strip in fresh]

    run_host(minimap, (80, 24), check)


def test_minimap_of_100k_points(big_map: Path, small_map: MapModel) -> None:
    """A map of 100k points draws as one of 4k does: braille only, the selected node bright.

    How long each drawing step takes at either size is a figure of `python -m benchmarks.tui --only d`.
    """
    model = MapModel.open(big_map)
    assert len(model.layout) == 100_000
    for probe in (small_map, model):
        minimap = Minimap(probe)

        async def check(pilot: Pilot[None], minimap: Minimap = minimap, probe: MapModel = probe) -> None:
            minimap.show_node(probe.root.node_id)
            await pilot.pause()
            minimap.show_node(a_leaf(probe))
            await pilot.pause()
            lines = text_lines(minimap)
            assert all(is_braille_or_space(char) for line in lines for char in line)
            assert cells_styled(minimap, minimap.get_component_rich_style("minimap--selected"))

        run_host(minimap, (80, 24), check)


# -- fidelity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_fidelity_caption_names_the_best_k_and_its_gain(small_map: MapModel, size: tuple[int, int]) -> None:
    curve = small_map.reader.fidelity
    assert curve is not None
    panel = FidelityPanel(curve)

    async def check(pilot: Pilot[None]) -> None:
        lines = text_lines(panel)
        text = "\n".join(lines)
        assert f"gain {curve.best_gain:.2f}" in text
        assert f"max at k={curve.best_k}" in text
        assert caption_text(curve) == lines[0].rstrip()
        assert all(len(line.rstrip()) <= size[0] for line in lines)
        # The bars, then the axis with ▲ under the bar of the best k, in the best style.
        bars = [line for line in lines if set(line.strip()) <= set(" ▁▂▃▄▅▆▇█") and line.strip()]
        assert len(bars) == 2
        axis = lines[-1]
        assert axis.startswith(f"k={curve.k[0]} ") and axis.rstrip().endswith(f"k={curve.k[-1]}")
        marker = axis.index("▲")
        best = panel.get_component_rich_style("fidelity--best")
        best_columns = {x for x, _, _ in cells_styled(panel, best)}
        assert marker in best_columns
        assert bars[-1][marker] == "█"  # the highest bar

    run_host(panel, size, check)


def test_fidelity_without_a_curve_says_how_to_get_one() -> None:
    panel = FidelityPanel(None)

    async def check(pilot: Pilot[None]) -> None:
        assert text_lines(panel)[0].rstrip() == NOT_COMPUTED
        assert "`vista build`" in NOT_COMPUTED

    run_host(panel, (80, 24), check)


def test_fidelity_fits_a_narrow_pane_and_follows_its_curve(small_map: MapModel) -> None:
    panel = FidelityPanel(None)
    curve = small_map.reader.fidelity
    assert curve is not None

    async def check(pilot: Pilot[None]) -> None:
        assert " ".join(line.strip() for line in text_lines(panel)) == NOT_COMPUTED  # wrapped, whole
        panel.curve = curve
        await pilot.pause()
        lines = text_lines(panel)
        assert panel.size.width == 30 and all(len(line) == 30 for line in lines)
        assert f"k={curve.best_k}" in " ".join(lines)
        assert any("▲" in line for line in lines)

    run_host(panel, (80, 24), check, pane=30)


def test_fidelity_in_three_rows_keeps_caption_bars_and_axis(small_map: MapModel) -> None:
    curve = small_map.reader.fidelity
    assert curve is not None
    panel = FidelityPanel(curve)
    panel.styles.height = 3

    async def check(pilot: Pilot[None]) -> None:
        caption, bars, axis = text_lines(panel)
        assert panel.size == (33, 3)
        assert caption.rstrip() == f"fidelity {curve.best_gain:.2f} at k={curve.best_k} ({curve.best_percent:.2g} %)"
        assert set(bars) <= set(" ▁▂▃▄▅▆▇█") and "█" in bars
        assert bars[axis.index("▲")] == "█"

    run_host(panel, (80, 24), check, pane=33)


def test_bars_mark_the_maximum_when_squeezed() -> None:
    gain = [0.1, 0.2, 0.9, 0.3] * 10  # 40 samples, maximum at 2
    rows, marked = bar_rows(gain, 10)
    assert all(len(row) == 10 for row in rows)
    assert marked == [0]
    curve = FidelityCurve(n=100, k=[1, 2, 4], k_percent=[1.0, 2.0, 4.0], m=[0.0, 0.0, 0.0], gain=[-0.1, 0.0, 0.2])
    rows, marked = bar_rows(curve.gain, 3)
    assert rows[-1][:2] == "  " and rows[0][2] == "█" and marked == [2]


# -- labels ------------------------------------------------------------------------------------------


def panel_text(panel: LabelsPanel) -> str:
    return "\n".join(text_lines(panel))


def unwrapped(panel: LabelsPanel) -> str:
    """The panel's words in order, whatever the wrapping and the columns."""
    return " ".join(" ".join(text_lines(panel)).replace("│", " ").split())


def column(panel: LabelsPanel, index: int) -> str:
    """The words of one column of the wide layout, unwrapped."""
    parts = [line.split("│")[index] for line in text_lines(panel) if "│" in line]
    return " ".join(" ".join(parts).split())


@pytest.mark.parametrize("size", SIZES)
def test_labels_show_keywords_and_say_what_is_missing(plain_map: MapModel, size: tuple[int, int]) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    keywords = plain_map.nodes[leaf].labels.keywords

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        text = panel_text(panel)
        assert "│" in text  # wide: three columns
        assert keywords[0] in text and keywords[1] in text
        assert "LLM label" in text and "visual" in text and "keywords" in text
        assert column(panel, 0) == "LLM label not computed yet — run `vista label syn-plain`"
        assert column(panel, 1) == f"visual {plain_map.nodes[leaf].labels.visual_prompt}"
        assert column(panel, 2) == "keywords " + ", ".join(keywords)
        assert "agreement: not computed yet" in text
        assert all(len(line) == size[0] for line in text_lines(panel))

    run_host(panel, size, check)


@pytest.mark.parametrize("size", SIZES)
def test_labels_in_a_side_pane_stack_as_rows(plain_map: MapModel, size: tuple[int, int]) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    labels = plain_map.nodes[leaf].labels
    labels.keywords = []

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        lines = text_lines(panel)
        assert panel.size.width == 46 and all(len(line) == 46 for line in lines)
        assert "│" not in "".join(lines)
        starts = [line.split("  ")[0] for line in lines]
        assert "LLM label" in starts and "visual" in starts and "keywords" in starts
        words = unwrapped(panel)
        assert "LLM label not computed yet — run `vista label syn-plain`" in words
        assert f"keywords {KEYWORDS_HINT}" in words
        assert lines[-1].rstrip() == "agreement: not computed yet"

    run_host(panel, size, check, pane=46)


def test_labels_short_of_height_cut_the_longest_reading(plain_map: MapModel) -> None:
    panel = LabelsPanel(plain_map)
    panel.styles.max_height = 9
    leaf = a_leaf(plain_map)
    labels = plain_map.nodes[leaf].labels
    labels.llm_label = "jazz"
    labels.llm_explanation = "Contexts about jazz: " + "improvised solos over swing rhythm, " * 12
    labels.agreement = 0.5

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        lines = [line.rstrip() for line in text_lines(panel)]
        assert len(lines) == 9
        assert lines[0].startswith("LLM label  jazz")
        assert any(line.endswith("…") for line in lines)
        assert any(line.startswith("visual") for line in lines) and any(line.startswith("keywords") for line in lines)
        assert lines[-1] == "agreement: 0.50"

    run_host(panel, (80, 24), check, pane=46)


def test_labels_in_a_very_narrow_pane_put_headings_above(plain_map: MapModel) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    keywords = plain_map.nodes[leaf].labels.keywords

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        lines = [line.rstrip() for line in text_lines(panel)]
        assert panel.size.width == 24
        assert "LLM label" in lines and "visual" in lines and "keywords" in lines
        after = lines[lines.index("keywords") + 1 :]
        assert " ".join(" ".join(after).split()).startswith(", ".join(keywords))

    run_host(panel, (80, 24), check, pane=24)


@pytest.mark.parametrize("size", SIZES)
def test_labels_show_the_llm_label(labelled_map: MapModel, size: tuple[int, int]) -> None:
    panel = LabelsPanel(labelled_map)
    node_id = next(n for n in labelled_map.walk() if labelled_map.nodes[n].labels.llm_label.endswith("sense"))
    label = labelled_map.nodes[node_id].labels.llm_label

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(node_id)
        await pilot.pause()
        assert label in panel_text(panel)
        assert column(panel, 0) == f"LLM label {label}"
        styled = "".join(char for _, _, char in cells_styled(panel, panel.get_component_rich_style("labels--label")))
        assert styled == label

    run_host(panel, size, check)


@pytest.mark.parametrize(
    ("agreement", "shown"), [(math.nan, "agreement: not computed yet"), (0.7349, "agreement: 0.73")]
)
def test_labels_agreement(plain_map: MapModel, agreement: float, shown: str) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    plain_map.nodes[leaf].labels.agreement = agreement

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        assert shown in panel_text(panel)

    run_host(panel, (80, 24), check)


@pytest.mark.parametrize("size", SIZES)
def test_hostile_label_text_renders_inert(plain_map: MapModel, size: tuple[int, int]) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    labels = plain_map.nodes[leaf].labels
    labels.keywords = [
        "\x1b]52;c;cm0gLXJmIH4=\x07clip",
        "\x1b[2J\x1b[31mred",
        "bell\x07",
        "x" * 100_000,
        "rtl\u202eexe",
    ]
    labels.llm_label = "\x1b]0;owned title\x07label"
    labels.visual_prompt = "a \x1b[5mblinking\x1b[0m prompt"

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        text = panel_text(panel)
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in text.replace("\n", "")), text
        assert "␛]52;c;cm0gLXJmIH4=␇clip" in unwrapped(panel).replace(" ", "")
        assert "␛[2J␛[31mred" in text and "␛]0;owned title␇label" in unwrapped(panel)
        assert len(text) < 20 * size[0] * size[1]  # the 100 kB keyword was cut
        screenshot = pilot.app.export_screenshot()
        assert "\x1b" not in screenshot and "\x07" not in screenshot

    run_host(panel, size, check)


def test_failed_labelling_shows_its_reason_as_an_error(plain_map: MapModel) -> None:
    panel = LabelsPanel(plain_map)
    leaf = a_leaf(plain_map)
    plain_map.nodes[leaf].labels.label_status = "failed: rate limited (429)"

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(leaf)
        await pilot.pause()
        error = panel.get_component_rich_style("labels--error")
        styled = "".join(char for _, _, char in cells_styled(panel, error))
        assert styled.replace(" ", "") == "labelfailed:ratelimited(429)"
        assert column(panel, 0) == "LLM label label failed: rate limited (429)"

    run_host(panel, (80, 24), check)


@pytest.mark.parametrize("size", SIZES)
def test_noise_node_says_what_it_is(plain_map: MapModel, size: tuple[int, int]) -> None:
    panel = LabelsPanel(plain_map)
    noise = noise_of(plain_map)

    async def check(pilot: Pilot[None]) -> None:
        panel.show_node(noise)
        await pilot.pause()
        words = unwrapped(panel)
        size_text = f"{plain_map.nodes[noise].size:,}"
        assert f"noise: the {size_text} contexts of “latent 42” that fell in no sub-cluster" in words

    run_host(panel, size, check, pane=46 if size == (80, 24) else None)
