"""Driving the explorer in Pilot tests: what the screen shows, waiting for a map to open or for a worker's answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView


def screen_text(app: VistaApp) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())  # type: ignore[attr-defined]


async def open_map(pilot, app: VistaApp) -> MapScreen:  # type: ignore[no-untyped-def]
    for _ in range(100):
        await pilot.pause(0.02)
        if isinstance(app.screen, MapScreen):
            await app.workers.wait_for_complete()
            await pilot.pause()
            return app.screen
    raise AssertionError(f"map did not open; screen is {app.screen!r}")


def tree_of(app: VistaApp) -> ClusterTreeView:
    return app.screen.query_one("#tree", ClusterTreeView)


def selected_title(app: VistaApp) -> str:
    tree = tree_of(app)
    assert tree.selected is not None
    return tree.model.title(tree.selected)


async def until(pilot: Pilot[Any], predicate: Callable[[], bool], seconds: float = 30.0) -> None:
    """Let the app run until `predicate` holds (a worker's answer arrived, say); fail after `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition never held")


async def palette_search(pilot: Pilot[Any], query: str) -> None:
    """Open the command palette and type `query`; the hits are on screen when this returns."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*query)
    await pilot.pause(0.3)


async def until_map_open(pilot: Pilot) -> None:
    for _ in range(200):
        await pilot.pause(0.02)
        if isinstance(pilot.app.screen, MapScreen):
            break
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def no_blink(pilot: Pilot) -> None:
    for box in pilot.app.screen.query(Input):
        box.cursor_blink = False
    await pilot.pause()
