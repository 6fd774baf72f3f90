"""The latent browser: an atlas's latents sorted, filtered and searched; a latent's map opened and left.

The atlas is written with `write_atlas` (tests/helpers/atlas_fixture.py), with tiny maps for a
few latents; triage is written through the real AnnotationStore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from textual.pilot import Pilot

from tests.helpers.atlas_fixture import build_atlas
from tests.helpers.tui import no_blink, screen_text, until
from vista_tui.core.annotations import AnnotationStore
from vista_tui.mapdata import Store, map_root_id
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.atlas import AtlasScreen
from vista_tui.tui.screens.error import ErrorScreen
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.picker import PickerScreen
from vista_tui.tui.widgets.latent_table import LatentTable

SIZE = (80, 24)


@pytest.fixture
def atlas(tmp_path: Path) -> Path:
    """40 latents, maps for 0, 1, 2 and 5; latent 1's root triaged "interpretable"; hostile tokens on 0."""
    atlas_dir = build_atlas(tmp_path, "syn-atlas", n=40, maps=(0, 1, 2, 5), hostile=True)
    map_dir = Store(atlas_dir).map_path("syn-atlas_L1")
    with AnnotationStore.open(map_dir, "tester") as store:
        store.set_status(map_root_id(map_dir), "interpretable")
    return atlas_dir


async def until_browser(pilot: Pilot[Any]) -> AtlasScreen:
    """Wait for the browser and its triage column."""
    await until(pilot, lambda: isinstance(pilot.app.screen, AtlasScreen))
    screen = pilot.app.screen
    assert isinstance(screen, AtlasScreen)
    await until(pilot, lambda: not np.any(screen.view.triage_rank == -2))
    await pilot.pause()
    return screen


def shown_latents(screen: AtlasScreen) -> list[int]:
    """The latents in display order."""
    return [int(latent) for latent in screen.view.latent[screen.view.order]]


def cursor_latent(screen: AtlasScreen) -> int:
    """The latent under the cursor."""
    row = screen.query_one(LatentTable).highlighted_row
    assert row is not None
    return int(screen.view.latent[row])


async def test_opens_on_every_latent_with_figures_and_triage(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        assert shown_latents(screen) == list(range(40))
        text = screen_text(app)
        assert "atlas syn-atlas" in text and "40 latents · 4 maps" in text
        lines = text.splitlines()
        assert lines[2].split()[:4] == ["latent", "density", "max", "ctx"]
        row1 = next(line for line in lines if line.split()[:1] == ["1"])
        assert "interpre" in row1  # latent 1's root is triaged
        row2 = next(line for line in lines if line.split()[:1] == ["2"])
        assert row2.rstrip().endswith("—")  # a map nobody triaged
        assert "1 triaged" in text
        assert "\x1b" not in text and "\u202e" not in text  # latent 0's hostile tokens and label, sanitised
        assert '"␛[31mred"' in text or '"␛[31mr' in text


async def test_o_cycles_the_orders_and_keeps_the_cursor_on_its_latent(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        view = screen.view
        await pilot.press("down", "down", "down", "down", "down")  # latent 5
        assert cursor_latent(screen) == 5
        await pilot.press("o")
        assert view.sort_key == "density"
        densities = view.density[view.order]
        assert np.all(np.diff(densities) <= 0)
        assert cursor_latent(screen) == 5
        await pilot.press("o")
        assert view.sort_key == "max_activation"
        assert np.all(np.diff(view.max_activation[view.order]) <= 0)
        await pilot.press("o")
        assert view.sort_key == "fidelity"
        gains = view.fidelity_gain[view.order]
        finite = gains[~np.isnan(gains)]
        assert np.all(np.diff(finite) <= 0) and np.all(np.isnan(gains[len(finite) :]))  # NaN (dead) last
        await pilot.press("o")
        assert view.sort_key == "triage"
        assert shown_latents(screen)[:4] == [1, 0, 2, 5]  # triaged, then unreviewed maps by latent
        await pilot.press("o")
        assert view.sort_key == "agreement"
        agreement = view.agreement[view.order]
        assert agreement[0] == np.nanmax(view.agreement)
        await pilot.press("o")
        assert view.sort_key == "latent" and shown_latents(screen) == list(range(40))
        await pilot.press("O")
        assert view.sort_key == "agreement"
        assert "sorted by label agreement" in screen_text(app)


async def test_an_atlas_with_an_order_opens_in_it_and_o_cycles_back_to_it(tmp_path: Path) -> None:
    order = (17, 4, 30, 1, 22)  # e.g. the demo's most varied first
    atlas_dir = build_atlas(tmp_path, "ordered", n=40, maps=(1, 4), order=order)
    app = VistaApp(Store(tmp_path), atlas_path=atlas_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        view = screen.view
        rest = [latent for latent in range(40) if latent not in order]
        assert view.sort_key == "atlas" and shown_latents(screen) == [*order, *rest]
        assert cursor_latent(screen) == 17 and "sorted by atlas order" in screen_text(app)
        await pilot.press("down")  # latent 4
        await pilot.press("o")
        assert view.sort_key == "latent" and shown_latents(screen) == list(range(40))
        assert cursor_latent(screen) == 4
        for _ in range(len(view.sorts) - 1):
            await pilot.press("o")
        assert view.sort_key == "atlas" and shown_latents(screen)[:5] == list(order)
        await pilot.press("O")
        assert view.sort_key == "agreement"


async def test_typing_filters_and_escape_clears(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        await pilot.press(*"river")  # "r" is not bound: it starts the filter, the rest follows it
        shown = shown_latents(screen)
        assert shown and len(shown) < 40
        for latent in shown:
            cells = screen.view.cells(latent)
            haystack = (cells.top_tokens + cells.label).lower()
            explanation = screen.view.atlas.rows()[latent].explanation
            assert "river" in haystack or "river" in explanation.lower()
        assert "filtered from 40" in screen_text(app)
        await pilot.press("escape")  # in the filter box: empties it, back to the table
        assert shown_latents(screen) == list(range(40))
        assert screen.query_one(LatentTable).has_focus
        await pilot.press("f", *"l3")  # by latent number: l3, l30 … l39
        assert shown_latents(screen) == [3, *range(30, 40)]
        await pilot.press("enter", "escape")  # Enter keeps the filter; Esc on the table clears it
        assert len(shown_latents(screen)) == 40


async def test_slash_searches_and_n_walks_the_hits(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        await pilot.press("slash", *"python", "enter")
        rows = screen.view.atlas.rows()
        expected = [
            r.latent for r in rows if "python" in f"{' '.join(r.top_tokens)} {r.llm_label} {r.explanation}".lower()
        ]
        assert expected and list(screen.view.latent[screen.query_one(LatentTable).hits]) == expected
        assert cursor_latent(screen) == expected[0]
        await pilot.press("n")
        assert cursor_latent(screen) == expected[1]
        await pilot.press("N", "N")
        assert cursor_latent(screen) == expected[-1]  # wraps
        assert f"{len(expected)} hits for 'python'" in screen_text(app)
        await pilot.press("escape")  # clears the hits
        assert len(screen.query_one(LatentTable).hits) == 0


async def test_enter_opens_the_map_and_backspace_comes_back_to_the_same_row(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        await pilot.press("o")  # by density: the row is not the latent's index
        table = screen.query_one(LatentTable)
        table.move_to_position(screen.view.position_of(5) or 0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MapScreen))
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.model.manifest.provenance.latent == 5  # type: ignore[attr-defined]
        await pilot.press("2")  # the root: interpretable
        await pilot.press("backspace")  # the tree is at its root: back to the browser
        await until(pilot, lambda: app.screen is screen)
        assert cursor_latent(screen) == 5 and screen.view.sort_key == "density"
        await until(pilot, lambda: screen.view.triage_status.get(5) == "interpretable")
        assert app.triage is None and app.map_screen is None

        table.move_to_position(screen.view.position_of(2) or 0)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MapScreen))
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("escape")  # nothing to clear in the map: Esc goes back too
        await until(pilot, lambda: app.screen is screen)
        assert cursor_latent(screen) == 2


async def test_a_latent_without_a_map_says_why_in_one_line(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=SIZE) as pilot:
        screen = await until_browser(pilot)
        await pilot.press("down", "down", "down", "enter")  # latent 3: dead
        await pilot.press("down", "enter")  # latent 4: not built
        await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert "latent 3 has no map: never fired in the corpus" in messages
        assert "latent 4 has no map: not built yet" in messages
        assert app.screen is screen


async def test_the_picker_lists_atlases_and_opens_one(atlas: Path) -> None:
    store = atlas.parent.parent
    app = VistaApp(Store(store))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PickerScreen))
        text = screen_text(app)
        assert "atlas syn-atlas · 40 latents" in text
        await pilot.press("enter")  # atlases come first
        await until_browser(pilot)


async def test_help_lists_the_browser_keys(atlas: Path) -> None:
    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    async with app.run_test(size=(100, 60)) as pilot:
        await until_browser(pilot)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.5)
        text = " ".join(screen_text(app).split())  # the browser's keys first, descriptions unwrapped
        assert "Next order: latent, density" in text and "Search top tokens, labels and explanations" in text


def test_snapshot_80x24(snap_compare, atlas: Path) -> None:  # type: ignore[no-untyped-def]
    async def ready(pilot: Pilot[Any]) -> None:
        await until_browser(pilot)
        await no_blink(pilot)

    app = VistaApp(Store(atlas.parent.parent), atlas_path=atlas)
    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


async def test_an_unreadable_atlas_shows_one_line_over_the_picker(tmp_path: Path) -> None:
    atlas_dir = build_atlas(tmp_path, "torn", n=10, maps=())
    latents = atlas_dir / "latents.parquet"
    latents.write_bytes(latents.read_bytes()[:100])
    app = VistaApp(Store(tmp_path), atlas_path=atlas_dir)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert isinstance(app.screen_stack[-2], PickerScreen)
        await until(pilot, lambda: "This atlas cannot be opened" in screen_text(app))
        text = " ".join(screen_text(app).split())
        assert "This atlas cannot be opened" in text and "truncated" in text and "vista atlas build" in text
