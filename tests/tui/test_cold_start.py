"""What `vista explore MAP` loads and runs before its map is drawn (benchmarks/tui.py (a) times it).

A map opened at start-up shows its header at once and the explorer when the map is read; what
neither of those frames shows (the latent browser, the picker, help and error screens, the
render queue, pandas) stays unimported until it is used, and the cyclic GC, which `vista
explore` switches off for start-up, is on again once something is drawn.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, until
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.error import ErrorScreen
from vista_tui.tui.screens.picker import PickerScreen

NOT_FOR_THE_FIRST_FRAMES = (
    "vista_tui.tui.screens.atlas",  # with numpy and pyarrow, on the UI thread before the header showed
    "vista_tui.core.atlas_view",
    "vista_tui.tui.screens.picker",
    "vista_tui.tui.screens.help",
    "vista_tui.tui.screens.error",
    "vista_tui.core.render_queue",
    "pandas",
)


def test_opening_a_map_imports_only_what_its_first_frames_show(tmp_path: Path) -> None:
    """In a fresh process, as `vista explore MAP` starts: the map drawn, its screens' imports done."""
    path = build_synthetic_map(tmp_path / "maps" / "m", latent=42)
    probe = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from tests.helpers.tui import open_map, until
        from vista_tui.mapdata import Store
        from vista_tui.tui.app import VistaApp

        async def main():
            app = VistaApp(Store(Path({str(tmp_path)!r})), Path({str(path)!r}))
            async with app.run_test(size=(80, 24)) as pilot:
                screen = await open_map(pilot, app)  # waits for every worker: the map's, and its screens' imports
                print(screen.query_one("#tree").border_title)

        asyncio.run(main())
        print(",".join(name for name in {NOT_FOR_THE_FIRST_FRAMES!r} if name in sys.modules) or "none")
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    drawn, imported = result.stdout.split()[-2:]
    assert drawn == "clusters"
    assert imported == "none"


async def test_the_gc_is_back_on_once_the_map_is_drawn(tmp_path: Path) -> None:
    path = build_synthetic_map(tmp_path / "maps" / "m")
    gc.disable()  # as `vista explore` starts the app
    try:
        app = VistaApp(Store(tmp_path), path)
        async with app.run_test(size=(80, 24)) as pilot:
            await open_map(pilot, app)
            assert gc.isenabled()
    finally:
        gc.enable()


async def test_the_gc_is_back_on_under_the_picker_and_after_a_failed_open(tmp_path: Path) -> None:
    path = build_synthetic_map(tmp_path / "maps" / "cut")
    contexts = path / "contexts.parquet"
    contexts.write_bytes(contexts.read_bytes()[:200])
    try:
        gc.disable()
        app = VistaApp(Store(tmp_path))
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, PickerScreen))
            await until(pilot, gc.isenabled)  # after the picker's first refresh
        gc.disable()
        app = VistaApp(Store(tmp_path), path)
        async with app.run_test(size=(80, 24)) as pilot:
            # The map's worker fails on the truncated file (waiting on the worker itself would raise
            # its error whenever the manager still holds it: wait for the screen that shows it).
            await until(pilot, lambda: isinstance(app.screen, ErrorScreen))
            assert gc.isenabled()
    finally:
        gc.enable()
