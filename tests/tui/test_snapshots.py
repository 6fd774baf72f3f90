"""SVG snapshots of the explorer, its help and the picker at 80x24 and 160x48 (pytest-textual-snapshot).

Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the report before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tui import no_blink, until_map_open
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp

SIZES = [(80, 24), (160, 48)]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_map_screen(snap_compare, snapshot_store: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = VistaApp(Store(snapshot_store), snapshot_store / "maps" / "syn-labelled")
    assert snap_compare(app, terminal_size=size, run_before=until_map_open, press=["j", "l"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, snapshot_store: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    app = VistaApp(Store(snapshot_store), snapshot_store / "maps" / "syn-plain")
    assert snap_compare(app, terminal_size=size, run_before=until_map_open, press=["question_mark"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_picker(  # type: ignore[no-untyped-def]
    snap_compare, snapshot_store: Path, size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The title names the store's maps folder: relative to the store's parent it is the same on every run.
    monkeypatch.chdir(snapshot_store.parent)
    app = VistaApp(Store(Path(snapshot_store.name)))
    assert snap_compare(app, terminal_size=size, run_before=no_blink)
