"""SVG snapshots across SAEs: the minimap and contexts coloured by child latent with their legend (80x24,
160x48), and two maps side by side (160x48).

Update after an intended change with `pytest tests/tui/test_cross_sae_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from tests.helpers.cross_sae_store import CrossSaeStore, cross_sae_store
from tests.helpers.tui import until, until_map_open
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.split import SplitScreen

SIZES = [(80, 24), (160, 48)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CrossSaeStore:
    return cross_sae_store(tmp_path_factory.mktemp("cross-sae-snapshots"))


async def music_with_children(pilot: Pilot[None]) -> None:
    """The overlay on, on the music node (its members split between two children)."""
    await until_map_open(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MapScreen)
    await pilot.press("C")
    await until(pilot, lambda: screen.children_controller.shown)
    model = screen.model
    screen.jump_to(next(n for n in model.walk() if model.title(n).startswith("music")))
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def side_by_side(pilot: Pilot[None]) -> None:
    """The narrow map beside its dominant child's map, the cursor two nodes down."""
    await until_map_open(pilot)
    await pilot.press("vertical_line")
    await until(pilot, lambda: isinstance(pilot.app.screen, SplitScreen))
    await pilot.press("j", "j")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_child_overlay(snap_compare, store: CrossSaeStore, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = VistaApp(Store(store.root), store.map_dir("narrow"))
    assert snap_compare(app, terminal_size=size, run_before=music_with_children)


def test_split_view(snap_compare, store: CrossSaeStore) -> None:  # type: ignore[no-untyped-def]
    app = VistaApp(Store(store.root), store.map_dir("narrow"))
    assert snap_compare(app, terminal_size=(160, 48), run_before=side_by_side)
