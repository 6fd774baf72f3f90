"""The explorer's workers: every failure reaches the app's one handler, one labeller at a time, no hashing on the UI thread."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, tree_of, until
from vista_tui.mapdata import MapError, Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.error import ErrorScreen
from vista_tui.tui.screens.image import ImageScreen
from vista_tui.tui.screens.map import MapScreen

SIZE = (110, 32)

# A labeller that holds an exclusive lock on a file while it runs and logs "start", or logs
# "overlap" when another one holds it. The first run sleeps until it is stopped; later ones
# finish at once.
LABELLER = """
import fcntl, sys, time
log_path, lock_path = sys.argv[1], sys.argv[2]
with open(log_path) as log:
    runs_before = len(log.read().split())
lock = open(lock_path, "w")
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    with open(log_path, "a") as log:
        log.write("overlap\\n")
    sys.exit(3)
with open(log_path, "a") as log:
    log.write("start\\n")
if runs_before == 0:
    time.sleep(120)
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VistaApp:
    monkeypatch.delenv("VISTA_DIFFUSION_MODEL", raising=False)
    path = build_synthetic_map(tmp_path / "maps" / "syn", n=240)
    return VistaApp(Store(tmp_path), path)


def toasts(app: VistaApp) -> list[str]:
    return [str(note.message) for note in app._notifications]


async def test_a_failing_search_is_shown(app: VistaApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_map(pilot, app)

        def broken_search(query: str, include_contexts: bool = True) -> list[object]:
            raise RuntimeError("the search index is gone")

        screen.model.search = broken_search  # type: ignore[method-assign]
        await pilot.press("slash", *"jazz", "enter")
        await until(pilot, lambda: any(t.startswith("could not search") for t in toasts(app)))
        assert "could not search the map: RuntimeError: the search index is gone" in toasts(app)
        assert isinstance(app.screen, MapScreen)


async def test_a_relabel_that_leaves_an_unreadable_map_shows_an_error_screen(app: VistaApp) -> None:
    app.label_command = [sys.executable, "-c", "pass"]  # the labeller succeeds ...
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_map(pilot, app)

        def torn_map() -> None:
            raise MapError("map syn: tree.parquet is truncated; rebuild it with `vista build`")

        screen.model.reload_labels = torn_map  # type: ignore[method-assign]  # ... but its map cannot be re-read
        await pilot.press("j", "L")
        await until(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert isinstance(app.screen, ErrorScreen)
        assert app.screen.title_text == "Could not relabel the node"
        assert "tree.parquet is truncated" in app.screen.message


async def test_two_L_presses_never_run_two_labellers_at_once(app: VistaApp, tmp_path: Path) -> None:
    script, log, lock = tmp_path / "labeller.py", tmp_path / "runs.log", tmp_path / "labeller.lock"
    script.write_text(LABELLER, encoding="utf-8")
    log.write_text("")
    app.label_command = [sys.executable, str(script), str(log), str(lock)]
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("j", "L")
        await until(pilot, lambda: log.read_text().split() == ["start"])  # the first labeller runs
        await pilot.press("j", "L")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: any(t.startswith("relabelled ") for t in toasts(app)))
        assert log.read_text().split() == ["start", "start"]  # the second started once the first was gone
        assert any(t.endswith("stopped: L was pressed again") for t in toasts(app))


async def test_render_requests_hash_the_map_off_the_ui_thread(app: VistaApp, monkeypatch: pytest.MonkeyPatch) -> None:
    import vista_tui.mapdata.renders as renders

    on_ui_thread: list[bool] = []
    fingerprint = renders.map_fingerprint

    def recording_fingerprint(map_dir: Path) -> str:
        on_ui_thread.append(threading.current_thread() is threading.main_thread())
        return fingerprint(map_dir)

    monkeypatch.setattr(renders, "map_fingerprint", recording_fingerprint)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_map(pilot, app)
        await pilot.press("j", "v")  # the cache is looked up: nothing there yet
        await until(pilot, lambda: any("no render of this node yet" in t for t in toasts(app)))
        node_id = tree_of(app).selected
        assert node_id is not None
        await pilot.press("r")  # submitted: the queue looks in the cache first
        await until(pilot, lambda: (event := screen.render_state.get(node_id)) is not None and event.kind == "done")
        await pilot.press("v")  # this session's render: no lookup
        await until(pilot, lambda: isinstance(app.screen, ImageScreen))
        app.renders.close()
    assert on_ui_thread and not any(on_ui_thread), on_ui_thread
