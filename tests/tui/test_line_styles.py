"""The short way through Textual's line styling (widgets/line_styles.py) draws the very segments Textual's own does."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual._styles_cache import StylesCache
from textual.geometry import Region
from textual.widget import Widget

from tests.helpers.tui import open_map
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.widgets.contexts import ContextList
from vista_tui.tui.widgets.line_styles import BorderedLines


def drawn_both_ways(widget: Widget) -> tuple[list[list[object]], list[list[object]]]:
    """Every line of `widget`, styled by its BorderedLines (border cells cached) and by a plain StylesCache."""
    assert isinstance(widget._styles_cache, BorderedLines)
    crop = Region(0, 0, *widget.outer_size)
    widget._styles_cache.clear()
    widget._styles_cache.render_widget(widget, crop)  # the first content line leaves the border cells
    widget._styles_cache.clear()
    short = widget._styles_cache.render_widget(widget, crop)
    assert widget._styles_cache._edges  # the short way was taken
    full = StylesCache().render_widget(widget, crop)
    return [list(strip) for strip in short], [list(strip) for strip in full]


@pytest.mark.parametrize("size", [(160, 48), (80, 24)], ids=["160x48", "80x24"])
async def test_tree_contexts_and_minimap_lines_equal_textuals(synthetic_store: Path, size: tuple[int, int]) -> None:
    app = VistaApp(Store(synthetic_store), synthetic_store / "maps" / "syn-plain")
    async with app.run_test(size=size) as pilot:
        await open_map(pilot, app)
        await pilot.press("j", "l")  # a sub-cluster: the tree has rows below the cursor, the minimap an outline
        await pilot.pause()
        for focused in ("#tree", "#contexts"):  # the focused pane's border has another colour
            app.screen.query_one(focused).focus()
            app.screen.query_one("#contexts", ContextList).action_cursor_down()
            await pilot.pause()
            for selector in ("#tree", "#contexts", "#minimap"):
                widget = app.screen.query_one(selector)
                if not widget.display:
                    continue
                short, full = drawn_both_ways(widget)
                assert short == full, selector


async def test_a_node_shown_again_gets_back_the_same_bordered_lines(synthetic_store: Path) -> None:
    """Back on a node, the context list draws each line from the strip it kept; the bordered line is the
    one drawn before (so Textual's filters and cuts kept on it are reused), and still equals Textual's."""
    app = VistaApp(Store(synthetic_store), synthetic_store / "maps" / "syn-plain")
    async with app.run_test(size=(160, 48)) as pilot:
        await open_map(pilot, app)
        contexts = app.screen.query_one("#contexts", ContextList)
        crop = Region(0, 0, *contexts.outer_size)
        await pilot.press("j")
        await pilot.pause()
        first = contexts._styles_cache.render_widget(contexts, crop)
        await pilot.press("j", "k")  # another node, then back
        await pilot.pause()
        again = contexts._styles_cache.render_widget(contexts, crop)
        content = range(1, len(contexts.rows[: contexts.scrollable_content_region.height]) + 1)
        assert len(content) > 5
        assert all(again[y] is first[y] for y in content)
        assert [list(strip) for strip in again] == [
            list(strip) for strip in StylesCache().render_widget(contexts, crop)
        ]
