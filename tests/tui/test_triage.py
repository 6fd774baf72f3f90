"""Triage in the explorer, driven like a person: status keys, tags, notes, undo, n/N, filter, read-only maps.

Every change is checked twice: on screen (glyph, header meter, note line) and in the database,
read back through a second AnnotationStore. tests/tui/conftest.py keeps user config out.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, screen_text, selected_title, tree_of
from vista_tui.core.annotations import DEFAULT_STATUSES, AnnotationStore
from vista_tui.core.triage import member_ids
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.controllers.triage import run_editor
from vista_tui.tui.dialogs import LineDialog, NoteDialog
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen

SIZE = (110, 32)


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "maps" / "triage", n=240, seed=0, latent=42)


def make_app(map_dir: Path) -> VistaApp:
    return VistaApp(Store(map_dir.parent.parent), map_dir)


def stored(map_dir: Path) -> AnnotationStore:
    """A second, independent store on the same database: what was committed."""
    return AnnotationStore.open(map_dir, "reader", readonly=True)


def row_of(app: VistaApp, node_id: str) -> str:
    """The tree's line for a node, as drawn."""
    tree = tree_of(app)
    return str(tree.get_option(node_id).prompt)


def toasts(app: VistaApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_number_keys_set_status_glyph_meter_and_database(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_map(pilot, app)
        assert "triage 0/15" in screen_text(app)
        await pilot.press("j")
        node_id = tree_of(app).selected
        assert node_id is not None and row_of(app, node_id).startswith("·")
        await pilot.press("2")  # the second configured status
        await pilot.pause()
        assert row_of(app, node_id).startswith("i")
        text = screen_text(app)
        assert "triage 1/15 · interpretable 1" in text
        assert "saved: music, melody, rhythm → interpretable" in toasts(app)
        await pilot.press("j", "5")
        await pilot.pause()
        assert "triage 2/15 · interpretable 1 · junk 1" in screen_text(app)
        await pilot.press("1")  # back to unreviewed
        await pilot.pause()
        assert "triage 1/15 · interpretable 1" in screen_text(app)
        assert "junk" not in screen_text(app).splitlines()[0]
        await pilot.press("9")  # beyond the seven configured statuses
        assert any("no status 9" in t for t in toasts(app))
        assert screen.triage is not None and screen.triage.writable
    with stored(map_dir) as store:
        annotation = store.get(node_id)
        assert annotation is not None and annotation.status == "interpretable"
        assert annotation.author == "tester"
        assert store.members(node_id) == tuple(sorted(member_ids(app.model, node_id)))  # type: ignore[arg-type]


async def test_tag_dialog_completes_existing_tags_adds_and_removes(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "someone") as store:
        store.add_tag("not-a-node-in-this-tree", "verb")
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("j")
        node_id = tree_of(app).selected
        assert node_id is not None
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, LineDialog)
        await pilot.press("v", "e")
        await pilot.pause(0.1)
        box = app.screen.query_one(Input)
        assert box._suggestion == "verb"
        await pilot.press("right", "enter")  # accept the completion
        await pilot.pause()
        assert isinstance(app.screen, MapScreen)
        assert "#verb" in screen_text(app)
        with stored(map_dir) as store:
            assert store.get(node_id).tags == ("verb",)  # type: ignore[union-attr]
        await pilot.press("t", *"-verb", "enter")
        await pilot.pause()
        assert "#verb" not in screen_text(app)
        with stored(map_dir) as store:
            assert store.get(node_id).tags == ()  # type: ignore[union-attr]


async def write_note(pilot: Pilot[None], app: VistaApp, *keys: str) -> str:
    """Open the map, select its second node, type `keys` in the note dialog and save; the node's id."""
    await open_map(pilot, app)
    await pilot.press("j", "a")
    await pilot.pause()
    assert isinstance(app.screen, NoteDialog)
    await pilot.press(*keys, "ctrl+s")
    await pilot.pause()
    assert isinstance(app.screen, MapScreen)
    node_id = tree_of(app).selected
    assert node_id is not None
    return node_id


async def test_note_edited_inline(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        node_id = await write_note(pilot, app, *"fires on music")
        assert "note: fires on music" in screen_text(app)
        # esc cancels: nothing changes
        await pilot.press("a", "x", "escape")
        await pilot.pause()
    with stored(map_dir) as store:
        assert store.get(node_id).note == "fires on music"  # type: ignore[arg-type,union-attr]


async def test_a_note_ending_in_enter_is_saved_without_the_trailing_newline(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        node_id = await write_note(pilot, app, *"  fires on music", "enter", *"and on muse", "enter", "enter", "space")
        # the same note with another trailing newline is no change
        await pilot.press("a", "enter", "ctrl+s")
        await pilot.pause()
        assert any(t == "note unchanged" for t in toasts(app))
    with stored(map_dir) as store:
        assert store.get(node_id).note == "  fires on music\nand on muse"  # type: ignore[arg-type,union-attr]
        assert [entry.new for entry in store.history() if entry.field == "note"] == ["  fires on music\nand on muse"]


@pytest.fixture
def fixed_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$EDITOR: a script that overwrites the file it is given with a fixed note."""
    script = tmp_path / "editor.sh"
    script.write_text('#!/bin/sh\nprintf "written in the editor\\n" > "$1"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(script))
    return script


def test_run_editor_returns_what_the_editor_wrote(fixed_editor: Path) -> None:
    assert run_editor("old note") == "written in the editor"


async def test_note_in_editor(map_dir: Path, fixed_editor: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        # The headless driver cannot suspend; the real `with app.suspend()` path runs with a stand-in.
        monkeypatch.setattr(app, "suspend", contextlib.nullcontext)
        await pilot.press("j", "A")
        await pilot.pause()
        assert "note: written in the editor" in screen_text(app)
        node_id = tree_of(app).selected
    with stored(map_dir) as store:
        assert store.get(node_id).note == "written in the editor"  # type: ignore[arg-type,union-attr]


async def test_note_in_editor_without_suspend_says_so(map_dir: Path, fixed_editor: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("j", "A")
        await pilot.pause()
        assert any("cannot hand over to $EDITOR" in t for t in toasts(app))


async def test_n_and_N_walk_unreviewed_nodes_and_wrap(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        model = app.model
        assert model is not None
        order = model.walk()
        await pilot.press("j", "3")  # the first cluster: polysemantic
        await pilot.press("n")
        assert tree_of(app).selected == order[2]  # its first child: the next unreviewed in tree order
        await pilot.press("N")
        assert tree_of(app).selected == order[0]  # backwards, skipping the reviewed one: the root is a target too
        await pilot.press("N")
        assert tree_of(app).selected == order[-1]  # wrapping
        await pilot.press("n")
        assert tree_of(app).selected == order[0]
        await pilot.press("n")
        assert tree_of(app).selected == order[2]
        # review everything: n says none is left
        triage = app.triage
        assert triage is not None and triage.store is not None
        for node_id in order:
            triage.store.set_status(node_id, "junk")
        triage.refresh()
        await pilot.press("n")
        assert any("no unreviewed node left" in t for t in toasts(app))


async def test_n_keeps_jumping_between_search_hits(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("slash", *"jazz", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert selected_title(app) == "music, melody, rhythm"
        await pilot.press("n")
        assert selected_title(app) == "jazz, rhythm, song"


async def test_u_undoes_the_last_change(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("j", "5")
        node_id = tree_of(app).selected
        assert node_id is not None
        await pilot.press("2")
        await pilot.pause()
        assert row_of(app, node_id).startswith("i")
        await pilot.press("u")
        await pilot.pause()
        assert row_of(app, node_id).startswith("j")
        assert "undid status of music, melody, rhythm: 'interpretable' → 'junk'" in toasts(app)
        with stored(map_dir) as store:
            assert store.get(node_id).status == "junk"  # type: ignore[union-attr]
        await pilot.press("u")
        await pilot.pause()
        assert row_of(app, node_id).startswith("·")
        assert "triage 0/15" in screen_text(app)


async def test_filter_by_status_keeps_ancestors(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.press("j", "l")  # a sub-cluster of music
        child = tree_of(app).selected
        assert child is not None
        await pilot.press("5")
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, LineDialog)
        await pilot.press(*"status:junk", "enter")
        await pilot.pause()
        model = app.model
        assert model is not None
        assert tree_of(app).rows == [*model.ancestors(child), child]
        assert "filter status:junk" in screen_text(app)
        assert "museum, gallery, exhibit" not in screen_text(app)
        await pilot.press("f", *"tag:nothing", "enter")
        await pilot.pause()
        assert tree_of(app).rows == [model.root.node_id]
        await pilot.press("f", "ctrl+u", "enter")  # empty clears
        await pilot.pause()
        assert "museum, gallery, exhibit" in screen_text(app)
        await pilot.press("f", *"status:bogus", "enter")
        await pilot.pause()
        assert any("unknown status 'bogus'" in t for t in toasts(app))


async def test_reconcile_toast_when_annotations_move_or_orphan(map_dir: Path) -> None:
    from vista_tui.core.model import MapModel

    model = MapModel.open(map_dir)
    target = model.walk()[1]
    with AnnotationStore.open(map_dir, "someone") as store:
        store.set_status("an-old-node-id", "junk", members=member_ids(model, target))
        store.set_status("a-lost-node-id", "junk", members=["no-such-context"])
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        await pilot.pause()
        assert "1 annotation followed its cluster, 1 orphaned — `vista export` lists it" in toasts(app)
        assert row_of(app, target).startswith("j")
        assert "triage 1/15 · junk 1" in screen_text(app)


async def test_corrupt_database_opens_map_with_triage_off(map_dir: Path) -> None:
    (map_dir / "annotations.sqlite").write_bytes(b"this is not a database" * 100)
    app = make_app(map_dir)
    async with app.run_test(size=SIZE) as pilot:
        await open_map(pilot, app)
        assert any(t.startswith("triage is read-only:") for t in toasts(app))
        await pilot.press("j", "2")
        await pilot.pause()
        assert any(t.startswith("triage is off:") for t in toasts(app))
        assert "music, melody, rhythm" in screen_text(app)  # exploring still works
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, MapScreen)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
async def test_read_only_map_dir_shows_existing_annotations(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "someone") as store:
        from vista_tui.core.model import MapModel

        node_id = MapModel.open(map_dir).walk()[1]
        store.set_status(node_id, "junk")
    map_dir.chmod(0o555)
    try:
        app = make_app(map_dir)
        async with app.run_test(size=SIZE) as pilot:
            await open_map(pilot, app)
            assert row_of(app, node_id).startswith("j")
            await pilot.press("j", "2")
            await pilot.pause()
            assert any(t.startswith("triage is off:") for t in toasts(app))
            assert "read-only" in screen_text(app).splitlines()[0]
    finally:
        map_dir.chmod(0o755)


async def test_locked_database_opens_map_with_triage_off(map_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    monkeypatch.setattr("vista_tui.core.annotations.BUSY_TIMEOUT_MS", 50)
    with AnnotationStore.open(map_dir, "someone") as store:
        store.set_status("x", "junk")
    holder = sqlite3.connect(map_dir / "annotations.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        app = make_app(map_dir)
        async with app.run_test(size=SIZE) as pilot:
            await open_map(pilot, app)
            await pilot.press("j", "2")
            await pilot.pause()
            assert any(t.startswith("triage is off:") for t in toasts(app))
            assert "music, melody, rhythm" in screen_text(app)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_help_lists_triage_keys(map_dir: Path) -> None:
    app = make_app(map_dir)
    async with app.run_test(size=(120, 60)) as pilot:
        await open_map(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for key in ("1", "t", "a", "A", "u", "f"):
            assert f" {key} " in text, key
        assert "triage status" in text and "unreviewed node" in text


def test_default_statuses_have_distinct_glyphs() -> None:
    from vista_tui.core.triage import status_glyphs

    glyphs = status_glyphs(DEFAULT_STATUSES)
    assert glyphs["unreviewed"] == "·" and glyphs["interpretable"] == "i" and glyphs["junk"] == "j"
    assert len(set(glyphs.values())) == len(DEFAULT_STATUSES)
