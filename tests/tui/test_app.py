"""The explorer driven like a person: keys in, screen content checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from tests.helpers.tui import open_map, palette_search, screen_text, selected_title, tree_of
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.context_detail import ContextScreen
from vista_tui.tui.screens.error import ErrorScreen
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.picker import PickerScreen
from vista_tui.tui.widgets.contexts import ContextList


@pytest.fixture
def plain(synthetic_store: Path) -> VistaApp:
    return VistaApp(Store(synthetic_store), synthetic_store / "maps" / "syn-plain")


async def test_opens_on_the_root_with_its_clusters(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        text = screen_text(plain)
        assert "syn-plain" in text and "latent 42" in text
        assert "music, melody, rhythm" in text  # a top-level cluster, by keywords
        assert "(noise)" in text
        assert selected_title(plain) == "latent 42"


async def test_jk_move_and_panels_follow(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("j")
        first = selected_title(plain)
        assert first == "music, melody, rhythm"
        await pilot.pause()
        assert "contexts · " in screen_text(plain)
        contexts = plain.screen.query_one("#contexts", ContextList)
        node = tree_of(plain).model.nodes[tree_of(plain).selected]  # type: ignore[index]
        assert contexts.border_title.startswith(f"contexts · {node.size}")  # type: ignore[union-attr]
        await pilot.press("j", "k")
        assert selected_title(plain) == first
        await pilot.press("k")
        assert selected_title(plain) == "latent 42"


async def test_drill_down_two_levels_and_back(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("j", "l")  # music → its first sub-cluster
        assert selected_title(plain) == "folk, rhythm, song"
        assert "folk, rhythm, song" in screen_text(plain)
        await pilot.press("h")  # back to music, still open
        assert selected_title(plain) == "music, melody, rhythm"
        assert "folk, rhythm, song" in screen_text(plain)
        await pilot.press("h")  # fold music
        assert selected_title(plain) == "music, melody, rhythm"
        assert "folk, rhythm, song" not in screen_text(plain)
        await pilot.press("enter")
        assert selected_title(plain) == "folk, rhythm, song"
        await pilot.press("backspace", "backspace", "backspace")
        assert selected_title(plain) == "latent 42"
        assert "museum, gallery, exhibit" in screen_text(plain)  # the root stays open


async def test_first_last_and_fold(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("G")
        assert selected_title(plain) == "(noise)"
        await pilot.press("g")
        assert selected_title(plain) == "latent 42"
        await pilot.press("space")  # fold the root
        assert tree_of(plain).rows == [tree_of(plain).model.root.node_id]
        await pilot.press("space")
        assert len(tree_of(plain).rows) == 1 + len(tree_of(plain).model.children(tree_of(plain).model.root.node_id))


async def test_search_highlights_and_jumps(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("slash")
        assert plain.screen.query_one("#search", Input).has_focus
        await pilot.press(*"jazz", "enter")
        await plain.workers.wait_for_complete()
        await pilot.pause()
        assert selected_title(plain) == "music, melody, rhythm"  # holds jazz contexts; first in tree order
        assert "hits for 'jazz'" in screen_text(plain)
        await pilot.press("n")
        assert selected_title(plain) == "jazz, rhythm, song"
        await pilot.press("N")
        assert selected_title(plain) == "music, melody, rhythm"
        await pilot.press("escape")
        assert "hits for" not in screen_text(plain)


async def test_zoom_to_subtree_and_out(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("j", "z")
        text = screen_text(plain)
        assert "zoom: music" in text
        assert "museum" not in text.split("zoom:")[1].split("\n", 12)[-1] or "museum, gallery" not in text
        assert tree_of(plain).rows[0] == tree_of(plain).selected
        await pilot.press("Z")
        assert "zoom:" not in screen_text(plain)
        assert "museum, gallery, exhibit" in screen_text(plain)


async def test_context_opens_in_full(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("tab")
        assert plain.screen.query_one("#contexts", ContextList).has_focus
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(plain.screen, ContextScreen)
        await plain.workers.wait_for_complete()
        await pilot.pause()
        assert "synthetic/doc0" in screen_text(plain)
        await pilot.press("escape")
        assert isinstance(plain.screen, MapScreen)


async def test_help_lists_every_key(plain: VistaApp) -> None:
    async with plain.run_test(size=(120, 120)) as pilot:  # tall enough for every row, triage keys included
        await open_map(pilot, plain)
        await pilot.press("question_mark")
        assert isinstance(plain.screen, HelpScreen)
        text = screen_text(plain)
        for key in ("j", "k", "l", "h", "g", "G", "/", "n", "N", "z", "Z", "ctrl+p", "q", "space", "tab"):
            assert f" {key} " in f" {text} " or f" {key}\n" in text, key
        await pilot.press("escape")
        await pilot.press("f1")
        assert isinstance(plain.screen, HelpScreen)


async def test_palette_jumps_to_a_node(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await palette_search(pilot, "jazz")
        await pilot.press("enter")
        await pilot.pause()
        assert selected_title(plain) == "jazz, rhythm, song"


@pytest.mark.parametrize("name", ["1.3", "ID"])
async def test_palette_goes_to_a_node_by_path_or_id_prefix(plain: VistaApp, name: str) -> None:
    """The names `vista tree` prints (and every command takes) work in the palette too."""
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        model = tree_of(plain).model
        target = model.children(model.children(model.root.node_id)[0])[2]  # 1.3
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*(target[:5] if name == "ID" else name))
        await pilot.pause(0.3)
        assert f"[1.3 · {target[:8]}]" in screen_text(plain)  # the top hit, named both ways
        await pilot.press("enter")
        await pilot.pause()
        assert tree_of(plain).selected == target
        assert selected_title(plain) == "jazz, rhythm, song"


async def test_q_quits(plain: VistaApp) -> None:
    async with plain.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, plain)
        await pilot.press("q")
        await pilot.pause()
        assert not plain.is_running


async def test_picker_filters_and_opens(synthetic_store: Path) -> None:
    app = VistaApp(Store(synthetic_store))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)
        table = app.screen.query_one("#maps", DataTable)
        assert table.row_count == 3
        text = screen_text(app)
        assert "syn-plain" in text and "syn-labelled" in text and "syn-broken" in text
        await pilot.press(*"labelled")
        assert table.row_count == 1
        await pilot.press("enter")
        screen = await open_map(pilot, app)
        assert screen.model.map_id == "syn-labelled"
        assert "words starting with mus-" in screen_text(app)


async def test_picker_explains_a_broken_map(synthetic_store: Path) -> None:
    app = VistaApp(Store(synthetic_store))
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
        await pilot.press(*"broken", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)
        assert "no manifest.json" in screen_text(app)


async def test_truncated_map_shows_an_error_screen(tmp_path: Path) -> None:
    from tests.helpers.synthetic_map import build_synthetic_map

    path = build_synthetic_map(tmp_path / "maps" / "cut")
    contexts = path / "contexts.parquet"
    contexts.write_bytes(contexts.read_bytes()[:200])
    app = VistaApp(Store(tmp_path), path)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(50):
            await pilot.pause(0.02)
            if isinstance(app.screen, ErrorScreen):
                break
        assert isinstance(app.screen, ErrorScreen)
        await pilot.pause()
        text = screen_text(app)
        assert "cannot be opened" in text and "truncated" in text and "vista build" in text
        # Under the error: the picker (not the header of a map that will never open).
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, PickerScreen)


async def test_the_header_shows_while_the_map_is_read(tmp_path: Path) -> None:
    from tests.helpers.synthetic_map import build_synthetic_map
    from vista_tui.mapdata import read_manifest
    from vista_tui.tui.screens.loading import LoadingScreen

    path = build_synthetic_map(tmp_path / "maps" / "syn", latent=42)
    app = VistaApp(Store(tmp_path))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await app.push_screen(LoadingScreen(read_manifest(path)))
        await pilot.pause()
        text = screen_text(app)
        assert "syn · latent 42 · synthetic-model · hook layer.3" in text
        assert "reading the cluster tree and" in text
        # Opening the map replaces it with the explorer, whose header is the same line.
        app.open_map(path)
        screen = await open_map(pilot, app)
        assert not any(isinstance(s, LoadingScreen) for s in app.screen_stack)
        assert screen.query_one("#map-header").render().plain.startswith("syn · latent 42")


async def test_published_explanation_shows_at_the_root(tmp_path: Path) -> None:
    import json

    from tests.helpers.synthetic_map import build_synthetic_map

    path = build_synthetic_map(tmp_path / "maps" / "syn", latent=42)
    explanations = {"schema_version": 1, "latent": 42, "explanations": [{"description": "words beginning with mus"}]}
    (path / "explanations.json").write_text(json.dumps(explanations))
    app = VistaApp(Store(tmp_path), path)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_map(pilot, app)
        text = screen_text(app)
        assert "Neuronpedia: words" in text and "beginning with mus" in text, text
        await pilot.press("j")
        await pilot.pause()
        assert "Neuronpedia" not in screen_text(app)


async def test_a_key_right_after_a_move_acts_on_the_new_node(plain: VistaApp) -> None:
    """Typed fast (j then r in one burst), the render goes to the node the cursor moved to."""
    async with plain.run_test(size=(100, 30)) as pilot:
        screen = await open_map(pilot, plain)
        await pilot.press("j", "r")
        moved_to = tree_of(plain).selected
        assert moved_to != screen.model.root.node_id
        assert screen.render_jobs and list(screen.render_jobs) == [moved_to]
        plain.renders.close()
