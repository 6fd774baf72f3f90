"""Renders from the explorer: r / R / v / o / x, glyphs and status, and a screen that never freezes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, screen_text, selected_title, tree_of, until
from vista_tui.mapdata import Store
from vista_tui.mapdata.renders import RenderJob
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.image import ImageScreen
from vista_tui.tui.screens.map import MapScreen


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VistaApp:
    monkeypatch.setenv("VISTA_RENDER_TEST", "1")  # lets the worker honour debug_delay_s
    monkeypatch.delenv("VISTA_DIFFUSION_MODEL", raising=False)
    monkeypatch.delenv("VISTA_VIEWER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    path = build_synthetic_map(tmp_path / "maps" / "syn", n=240)
    return VistaApp(Store(tmp_path), path)


def notes(app: VistaApp) -> str:
    """Every notification shown so far (toasts float above the screen's own content)."""
    return "\n".join(note.message for note in app._notifications)


def state_of(app: VistaApp, node_id: str) -> str:
    screen = app.map_screen
    assert screen is not None
    event = screen.render_state.get(node_id)
    return event.kind if event else ""


async def test_r_renders_the_node_and_v_shows_it_as_a_sketch(app: VistaApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, app)
        await pilot.press("j")
        node_id = tree_of(app).selected
        assert node_id is not None
        await pilot.press("v")
        await pilot.pause(0.1)
        assert "no render of this node yet" in notes(app)
        await pilot.press("r")
        await until(pilot, lambda: state_of(app, node_id) == "done")
        await pilot.pause()
        assert "●" in screen_text(app)  # the done glyph in the tree
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, ImageScreen)
        assert "sketch" in screen_text(app) and "no diffusion model" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("r")  # the same request again: straight from the cache
        await until(pilot, lambda: state_of(app, node_id) == "done" and app.map_screen.render_state[node_id].cached)  # type: ignore[union-attr]
        app.renders.close()


async def test_R_renders_the_whole_map(app: VistaApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, app)
        await pilot.press("R")
        root = tree_of(app).model.root.node_id
        await until(pilot, lambda: state_of(app, root) == "done")
        assert app.map_screen.render_state[root].job.kind == "panorama"  # type: ignore[union-attr]
        app.renders.close()


async def test_o_copies_the_path_when_no_viewer_and_runs_the_viewer_when_set(
    app: VistaApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, app)
        await pilot.press("r")
        root = tree_of(app).model.root.node_id
        await until(pilot, lambda: state_of(app, root) == "done")
        image = app.map_screen.render_state[root].path  # type: ignore[union-attr]
        await pilot.press("o")
        await pilot.pause(0.1)
        assert app.clipboard == str(image)  # copied with OSC 52
        assert "path copied" in notes(app)
        seen = tmp_path / "viewer-saw.txt"
        viewer = tmp_path / "viewer.sh"
        viewer.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
        viewer.chmod(viewer.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv("VISTA_VIEWER", str(viewer))
        await pilot.press("o")
        await until(pilot, seen.exists, 10)
        assert seen.read_text().strip() == str(image)
        app.renders.close()


async def test_screen_stays_responsive_while_rendering_and_x_cancels(app: VistaApp) -> None:
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_map(pilot, app)
        root = tree_of(app).model.root.node_id
        slow = RenderJob(map_dir=screen.model.reader.path, node_id=None, debug_delay_s=0.5, steps=40)
        screen.render_jobs[root] = app.renders.submit(slow)
        await until(pilot, lambda: state_of(app, root) in ("started", "progress"))
        for expected in ("music, melody, rhythm", "museum, gallery, exhibit", "music, melody, rhythm"):
            await pilot.press("j" if expected != "music, melody, rhythm" or selected_title(app) == "latent 42" else "k")
            assert selected_title(app) == expected
        await pilot.pause(0.1)
        assert "rendering latent 42" in screen_text(app)  # the status line above the footer
        await pilot.press("g", "x")
        await until(pilot, lambda: state_of(app, root) == "cancelled")
        assert isinstance(app.screen, MapScreen)
        app.renders.close()
    assert os.environ.get("VISTA_RENDER_TEST") == "1"
