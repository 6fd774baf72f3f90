"""The picker fits the terminal from 80 columns up: long map ids are cut with an ellipsis,
model · SAE shows from 100 columns on, and the columns follow a resize."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable

from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.picker import PickerScreen

# Newest first, then by id descending (the build times are pinned): the first row is LONG_IDS[0].
LONG_IDS = [
    "gemma-2-2b-res-16k-layer20-latent-01888-fineweb-edu-top4000-run2",
    "gemma-2-2b-res-16k-layer20-latent-01234-fineweb-edu-top4000-run1",
    "gemma-2-2b-res-16k-layer12-latent-00042-fineweb-edu-top2000-run1",
]
NARROW_HEADERS = ["map", "latent", "contexts", "triaged", "built"]


@pytest.fixture(scope="module")
def long_id_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small deterministic maps whose ids are far wider than an 80-column terminal allows."""
    from tests.helpers.synthetic_map import build_synthetic_map

    root = tmp_path_factory.mktemp("long-ids")
    for map_id, n, latent in zip(LONG_IDS, [1234, 180, 120], [1888, 1234, 42], strict=True):
        build_synthetic_map(root / "maps" / map_id, n=n, seed=latent, latent=latent)
    return root


def screen_lines(app: VistaApp) -> list[str]:
    """What the terminal shows, one string per line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]  # type: ignore[attr-defined]


def line_with(app: VistaApp, *parts: str) -> str:
    """The first screen line holding every one of `parts`."""
    lines = [line for line in screen_lines(app) if all(part in line for part in parts)]
    assert lines, f"no line with {parts} on screen:\n" + "\n".join(screen_lines(app))
    return lines[0]


def assert_fits(app: VistaApp, headers: list[str]) -> None:
    """Every header is shown whole, in order, and the columns fit inside the table."""
    table = app.screen.query_one("#maps", DataTable)
    assert [str(column.label) for column in table.columns.values()] == headers
    line = line_with(app, " map ", " latent ")
    positions = [line.find(f" {header} ") for header in headers]
    assert -1 not in positions, (headers, line)
    assert positions == sorted(positions), line
    used = sum(column.get_render_width(table) for column in table.columns.values())
    assert used <= table.scrollable_content_region.width
    assert len(line.rstrip()) <= app.size.width


async def test_picker_fits_80_columns(long_id_store: Path) -> None:
    app = VistaApp(Store(long_id_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)
        assert_fits(app, NARROW_HEADERS)
        assert "model · SAE" not in "\n".join(screen_lines(app))
        # The first row's contexts, triaged and built are all on screen, after its cut map id.
        first = line_with(app, LONG_IDS[0][:20], " 1888 ")
        assert LONG_IDS[0] not in first and "…" in first
        assert " 1888 " in first and " 1,234 " in first and " — " in first and "2026-11-01 12:00" in first
        # Typing still filters, and the filtered table still fits.
        await pilot.press(*"01234")
        await pilot.pause()
        assert app.screen.query_one("#maps", DataTable).row_count == 1
        assert_fits(app, NARROW_HEADERS)
        assert " 180 " in line_with(app, LONG_IDS[1][:20], " 1234 ")


async def test_picker_at_160_columns_shows_everything(long_id_store: Path) -> None:
    app = VistaApp(Store(long_id_store))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert_fits(app, [*NARROW_HEADERS[:2], "model · SAE", *NARROW_HEADERS[2:]])
        text = "\n".join(screen_lines(app))
        assert all(map_id in text for map_id in LONG_IDS)
        assert "synthetic-model · synthetic-sae" in text


async def test_picker_follows_a_resize(long_id_store: Path) -> None:
    app = VistaApp(Store(long_id_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("down")
        assert_fits(app, NARROW_HEADERS)
        await pilot.resize_terminal(160, 48)
        await pilot.pause()
        assert_fits(app, [*NARROW_HEADERS[:2], "model · SAE", *NARROW_HEADERS[2:]])
        assert "synthetic-model · synthetic-sae" in "\n".join(screen_lines(app))
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert_fits(app, NARROW_HEADERS)
        # The chosen row survives the resizes.
        assert app.screen.query_one("#maps", DataTable).cursor_row == 1


async def test_broken_map_error_shows_at_80_columns(tmp_path: Path) -> None:
    (tmp_path / "maps" / "cut").mkdir(parents=True)
    app = VistaApp(Store(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert_fits(app, NARROW_HEADERS)
        # No model · SAE column to hold the reason: it follows the map id, without the map's path.
        row = line_with(app, "cut")
        assert "has no manifest.json" in row and str(tmp_path) not in row


async def test_no_rows_still_lays_out(long_id_store: Path, tmp_path: Path) -> None:
    """An empty store, and a filter that matches nothing, leave the headers and a hint."""
    app = VistaApp(Store(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert_fits(app, NARROW_HEADERS)
        assert "no maps yet" in "\n".join(screen_lines(app))
    app = VistaApp(Store(long_id_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"nothing-like-this")
        await pilot.pause()
        assert app.screen.query_one("#maps", DataTable).row_count == 0
        assert_fits(app, NARROW_HEADERS)
        assert "no map matches" in "\n".join(screen_lines(app))
