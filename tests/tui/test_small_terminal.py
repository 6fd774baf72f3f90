"""A small terminal stays usable: the tree and the contexts keep rows down to 40x12.

Below 80x24 the panels stack and the minimap and fidelity curve give way (MapScreen's breakpoint
classes, app.tcss); back at full size the layout is as before. The footer keeps `tab`, `? Help`
and `q Quit` in view at every width. Snapshots: `--snapshot-update`, then look at the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets._footer import FooterKey

from tests.helpers.tui import until_map_open
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
from vista_tui.tui.widgets.contexts import ContextList

PANELS = ("#header-row", "#body", "#left", "#right", "#tree", "#minimap", "#fidelity")
"""Compared whole, before and after a trip to a small terminal."""
RIGHT_PANELS = ("#labels", "#contexts")
"""Compared on their column: the labels panel keeps the height of the tallest node it showed at a width."""


def labelled_app(store: Path) -> VistaApp:
    return VistaApp(Store(store), store / "maps" / "syn-labelled")


def map_screen(app: VistaApp) -> MapScreen:
    screen = app.screen
    assert isinstance(screen, MapScreen)
    return screen


def layout(screen: MapScreen) -> dict[str, tuple[bool, Region | tuple[int, int]]]:
    """Each panel: shown or not, and where (the right-hand panels: their column)."""
    panels: dict[str, tuple[bool, Region | tuple[int, int]]] = {}
    for selector in PANELS:
        widget = screen.query_one(selector, Widget)
        panels[selector] = (widget.display, widget.region)
    for selector in RIGHT_PANELS:
        widget = screen.query_one(selector, Widget)
        panels[selector] = (widget.display, (widget.region.x, widget.region.width))
    return panels


def cursor_row_on_screen(tree: ClusterTreeView) -> bool:
    """The highlighted node's line lies inside the tree's view."""
    assert tree.highlighted is not None
    top, height = round(tree.scroll_offset.y), tree.scrollable_content_region.height
    return top <= tree.highlighted < top + height


def footer_keys_in_view(screen: MapScreen) -> set[str]:
    """Actions whose footer key is shown whole (not cut off, not under the palette key)."""
    width = screen.size.width
    keys = [key for key in screen.query(FooterKey) if key.display]
    palette = [key for key in keys if key.has_class("-command-palette")]
    right = palette[0].region.x if palette else width
    return {key.action for key in keys if not key.has_class("-command-palette") and 0 < key.region.right <= right}


def test_snapshot_40x12(snap_compare, snapshot_store: Path) -> None:  # type: ignore[no-untyped-def]
    """40x12 after walking down the tree: the tree has rows, the cursor's node among them."""
    assert snap_compare(
        labelled_app(snapshot_store), terminal_size=(40, 12), run_before=until_map_open, press=["j", "l", "j"]
    )


@pytest.mark.parametrize("size", [(40, 12), (60, 20), (100, 16), (160, 10), (60, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_small_terminal_keeps_tree_and_contexts(snapshot_store: Path, size: tuple[int, int]) -> None:
    """Shrink from 160x48 with the cursor low in the tree, look, tab to the contexts, grow back."""
    app = labelled_app(snapshot_store)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_map_open(pilot)
        screen = map_screen(app)
        tree = screen.query_one("#tree", ClusterTreeView)
        contexts = screen.query_one("#contexts", ContextList)
        await pilot.press("l", "l", "G")  # music unfolded, then the last line: below the fold of a small view
        selected = tree.selected
        full = layout(screen)

        await pilot.resize_terminal(*size)
        await pilot.pause()
        assert tree.scrollable_content_region.height > 0
        assert tree.selected == selected and cursor_row_on_screen(tree)
        assert contexts.scrollable_content_region.height > 0
        assert {"app.focus_next", "help", "quit"} <= footer_keys_in_view(screen)
        await pilot.press("tab")
        assert screen.focused is contexts
        assert contexts.highlighted_row is not None

        await pilot.press("shift+tab")
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert layout(screen) == full
        assert screen.has_class("-wide", "-tall")
        assert not screen.has_class("-narrow") and not screen.has_class("-short")
        assert tree.selected == selected and cursor_row_on_screen(tree)


async def test_40x12_layout(snapshot_store: Path) -> None:
    """At 40x12: tree above contexts, full width; no minimap, fidelity or labels."""
    app = labelled_app(snapshot_store)
    async with app.run_test(size=(40, 12)) as pilot:
        await until_map_open(pilot)
        screen = map_screen(app)
        assert screen.has_class("-narrow", "-short")
        tree, contexts = screen.query_one("#tree"), screen.query_one("#contexts")
        assert tree.region.width == contexts.region.width == 40
        assert tree.region.bottom <= contexts.region.y
        assert tree.scrollable_content_region.height >= 3 and contexts.scrollable_content_region.height >= 3
        for hidden in ("#minimap", "#fidelity", "#labels"):
            assert screen.query_one(hidden).region.height == 0


@pytest.mark.parametrize("width", [40, 60, 80, 100, 120, 160])
async def test_footer_keeps_help_and_quit(snapshot_store: Path, width: int) -> None:
    """`? Help`, `q Quit` and `tab` stay in the footer at every width, the tree or the contexts focused."""
    app = labelled_app(snapshot_store)
    async with app.run_test(size=(width, 24)) as pilot:
        await until_map_open(pilot)
        screen = map_screen(app)
        assert {"app.focus_next", "help", "quit"} <= footer_keys_in_view(screen)
        await pilot.press("tab")
        await pilot.pause()
        assert {"app.focus_next", "help", "quit"} <= footer_keys_in_view(screen)
        if width >= 120:  # wide enough for every key, as before
            assert {"zoom", "render", "view_render", "search"} <= footer_keys_in_view(screen)


async def test_resized_under_the_help(snapshot_store: Path) -> None:
    """A resize while the help covers the map still lays the map out for the new size."""
    app = labelled_app(snapshot_store)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_map_open(pilot)
        screen = map_screen(app)
        await pilot.press("question_mark")
        assert app.screen is not screen
        await pilot.resize_terminal(40, 12)
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and screen.has_class("-narrow", "-short")
        assert screen.query_one("#tree", ClusterTreeView).scrollable_content_region.height > 0


async def test_context_cursor_stays_in_view(snapshot_store: Path) -> None:
    """The focused context, in view on a big terminal, is still in view after shrinking to 40x12."""
    app = labelled_app(snapshot_store)
    async with app.run_test(size=(160, 48)) as pilot:
        await until_map_open(pilot)
        contexts = map_screen(app).query_one("#contexts", ContextList)
        await pilot.press("tab", *["j"] * 20)
        assert contexts.cursor == 20 and contexts.scroll_offset.y == 0
        await pilot.resize_terminal(40, 12)
        await pilot.pause()
        top, height = round(contexts.scroll_offset.y), contexts.scrollable_content_region.height
        assert height > 0 and top <= contexts.cursor < top + height
