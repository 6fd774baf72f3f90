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
