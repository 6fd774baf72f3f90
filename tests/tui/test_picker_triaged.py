"""The picker's "triaged" column: reviewed nodes per map, as `vista triage-status` counts them.

The maps' annotations are written through the real AnnotationStore; the picker reads them
read-only, creates nothing, and shows "?" (and keeps working) for a file it cannot read.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map
from vista_tui.cli import main as annotate_main
from vista_tui.core.annotations import DB_NAME, AnnotationError, AnnotationStore, count_reviewed
from vista_tui.core.triage import tree_members
from vista_tui.mapdata import MapReader, Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.picker import PickerScreen

SIZE = (100, 30)


def annotate(map_dir: Path) -> int:
    """Three nodes triaged, one only noted, one set back to unreviewed, one orphan: 3 reviewed."""
    members = tree_members(MapReader(map_dir))
    nodes = list(members)[1:]
    with AnnotationStore.open(map_dir, "tester") as store:
        store.set_status(nodes[0], "interpretable", members[nodes[0]])
        store.set_status(nodes[1], "junk", members[nodes[1]])
        store.set_status(nodes[2], "polysemantic", members[nodes[2]])
        store.set_note(nodes[3], "not sure yet", members[nodes[3]])  # still unreviewed
        store.set_status(nodes[4], "junk", members[nodes[4]])
        store.set_status(nodes[4], "unreviewed")  # and back
        store.set_status("gone-node", "junk")  # a node the tree does not have: orphaned below
        report = store.reconcile(members)
    assert report.orphaned == ("gone-node",)
    return 3


def triage_status(store_root: Path, map_id: str) -> dict[str, object]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert annotate_main(["--cache", str(store_root), "triage-status", map_id, "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture
def store_root(tmp_path: Path) -> Path:
    """Four maps: annotated, never annotated, a garbage annotations file, and an unreadable map."""
    maps = tmp_path / "maps"
    build_synthetic_map(maps / "annotated", n=120, seed=0, latent=42)
    build_synthetic_map(maps / "plain", n=120, seed=1, latent=7)
    corrupt = build_synthetic_map(maps / "corrupt", n=120, seed=2, latent=9)
    (corrupt / DB_NAME).write_bytes(bytes(range(256)) * 16)
    (maps / "cut").mkdir()  # no manifest: the picker lists it with its error
    annotate(maps / "annotated")
    return tmp_path


def files_of(root: Path) -> dict[str, list[str]]:
    return {path.name: sorted(os.listdir(path)) for path in sorted((root / "maps").iterdir())}


def triaged_cells(app: VistaApp) -> dict[str, str]:
    """Map id → its triaged cell, as the table holds it."""
    screen = app.screen
    assert isinstance(screen, PickerScreen)
    table = screen.query_one("#maps", DataTable)
    column = [str(c.label) for c in table.columns.values()].index("triaged")
    return {
        entry.map_id: str(table.get_row_at(row)[column])
        for row, entry in enumerate(screen.shown)
        if entry.manifest is not None
    }


async def test_counts_show_per_map_and_a_corrupt_file_shows_a_question_mark(store_root: Path) -> None:
    assert triage_status(store_root, "annotated")["reviewed"] == 3  # the CLI agrees on what counts
    app = VistaApp(Store(store_root))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert triaged_cells(app) == {"annotated": "3", "plain": "—", "corrupt": "?"}
        # The picker still works: choose the annotated map past the corrupt one and open it.
        shown = [entry.map_id for entry in app.screen.shown]  # type: ignore[attr-defined]
        await pilot.press(*["down"] * shown.index("annotated"))
        await pilot.press("enter")
        screen = await open_map(pilot, app)
        assert isinstance(screen, MapScreen) and screen.model.reader.path.name == "annotated"


async def test_corrupt_map_row_can_still_be_chosen(store_root: Path) -> None:
    """The "?" is only the count: the map itself opens (its triage reports the damaged file)."""
    app = VistaApp(Store(store_root))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press(*"corrupt")
        await pilot.pause()
        assert triaged_cells(app) == {"corrupt": "?"}
        await pilot.press("enter")
        screen = await open_map(pilot, app)
        assert screen.triage is not None and not screen.triage.writable
    assert (store_root / "maps" / "corrupt" / DB_NAME).read_bytes() == bytes(range(256)) * 16


async def test_listing_creates_no_annotations_file(store_root: Path) -> None:
    before = files_of(store_root)
    assert DB_NAME not in before["plain"]
    app = VistaApp(Store(store_root))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert triaged_cells(app)["plain"] == "—"
        await pilot.resize_terminal(80, 24)  # refills the table: no second read, nothing written either
        await pilot.pause()
    # No annotations.sqlite, and no -wal or -shm beside an existing one.
    assert files_of(store_root) == before


async def test_counts_follow_a_live_writer_and_triage_status(store_root: Path) -> None:
    """While the TUI (or the CLI) holds the database open in WAL mode, the picker reads its latest writes."""
    map_dir = store_root / "maps" / "plain"
    node = list(tree_members(MapReader(map_dir)))[1]
    with AnnotationStore.open(map_dir, "tester") as writer:
        writer.set_status(node, "morphology")
        assert (map_dir / f"{DB_NAME}-wal").exists()
        app = VistaApp(Store(store_root))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert triaged_cells(app)["plain"] == "1"
    assert triage_status(store_root, "plain")["reviewed"] == 1


async def test_configured_statuses_decide_what_counts(
    store_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first configured status means unreviewed, as for `vista triage-status`."""
    config = tmp_path / "config.toml"
    config.write_text('[triage]\nstatuses = ["todo", "done", "skip"]\n', encoding="utf-8")
    monkeypatch.setenv("VISTA_CONFIG", str(config))
    map_dir = store_root / "maps" / "plain"
    nodes = list(tree_members(MapReader(map_dir)))
    with AnnotationStore.open(map_dir, "tester", statuses=("todo", "done", "skip")) as store:
        store.set_status(nodes[1], "done")
        store.set_status(nodes[2], "skip")
        store.set_status(nodes[3], "done")
        store.set_status(nodes[3], "todo")
    assert triage_status(store_root, "plain")["reviewed"] == 2
    app = VistaApp(Store(store_root))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert triaged_cells(app)["plain"] == "2"


def test_locked_foreign_and_empty_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Locked and foreign files raise at once (the picker shows "?"); an empty file reads as nothing."""
    with AnnotationStore.open(tmp_path, "tester") as store:
        store.set_status("n1", "junk")
    locker = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("UPDATE annotations SET note='x'")
    # "At once" without a clock: the only wait on a lock is SQLite's busy timeout, so record the
    # one count_reviewed asks for; the picker counts while it fills its table.
    lock_waits: list[float] = []
    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        lock_waits.append(kwargs.get("timeout", 5.0))  # sqlite3's own default: 5 s
        return connect(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(sqlite3, "connect", recording_connect)
        with pytest.raises(AnnotationError, match="locked"):
            count_reviewed(tmp_path)
    assert len(lock_waits) == 1 and lock_waits[0] <= 0.05, lock_waits
    locker.execute("ROLLBACK")
    locker.close()
    assert count_reviewed(tmp_path) == 1

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with contextlib.closing(sqlite3.connect(foreign / DB_NAME)) as db:
        db.execute("CREATE TABLE notes(x)")
        db.commit()
    with pytest.raises(AnnotationError):
        count_reviewed(foreign)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / DB_NAME).write_bytes(b"")  # killed while being created
    assert count_reviewed(empty) == 0
    assert count_reviewed(tmp_path / "nothing-here") is None
    assert not (tmp_path / "nothing-here").exists()
