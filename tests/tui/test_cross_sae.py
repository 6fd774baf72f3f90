"""One latent across SAEs in the explorer: the matches list (M), the matched latent's map and back, the
split view following the matched node (|), the child overlay (C), and the toasts when a piece is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from textual.pilot import Pilot

from tests.helpers.cross_sae_store import LONELY, WIDE, CrossSaeStore, cross_sae_store
from tests.helpers.tui import open_map, palette_search, screen_text, until
from vista_tui.core.cross_sae import NO_CHILDREN, NO_MATCH_TABLE
from vista_tui.core.model import MapModel
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.error import ErrorScreen
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.matches import MatchesScreen
from vista_tui.tui.screens.picker import PickerScreen
from vista_tui.tui.screens.split import SplitScreen
from vista_tui.tui.widgets.contexts import ContextList
from vista_tui.tui.widgets.minimap import CHILD_BASE, CHILD_NONE, SELECTED, Minimap, colour_children


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CrossSaeStore:
    return cross_sae_store(tmp_path_factory.mktemp("cross-sae"))


def notes(app: VistaApp) -> list[str]:
    return [str(note.message) for note in app._notifications]  # type: ignore[attr-defined]


def app_on(store: CrossSaeStore, name: str) -> VistaApp:
    return VistaApp(Store(store.root), store.map_dir(name))


async def highlight_match(pilot: Pilot[None], app: VistaApp, latent: int) -> None:
    """Open the matches list (M) and put its cursor on `latent`."""
    await pilot.press("M")
    await until(pilot, lambda: isinstance(app.screen, MatchesScreen))
    latents = [m.latent for m in app.screen.reading.matches]  # type: ignore[attr-defined]
    for _ in range(latents.index(latent)):
        await pilot.press("down")


async def test_matches_list_enter_opens_the_matched_map_and_back(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(120, 40)) as pilot:
        narrow = await open_map(pilot, app)
        narrow_triage = app.triage
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MatchesScreen))
        await pilot.pause()
        text = screen_text(app)
        assert "1:1" in text and "1234" in text and "0.83" in text and "0.77" in text  # decoder, encoder
        assert "1500" in text and "77" in text
        assert app.screen.highlighted.one_to_one and app.screen.highlighted.latent == 1234  # type: ignore[attr-defined]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen is not narrow)
        await app.workers.wait_for_complete()
        assert app.model is not None and app.model.manifest.provenance.latent == 1234
        assert app.screen.model.manifest.provenance.sae == WIDE  # type: ignore[attr-defined]
        await pilot.press("escape")  # as from a latent's map to the atlas browser: back where it was opened
        await until(pilot, lambda: app.screen is narrow)
        assert app.map_screen is narrow and app.model is narrow.model
        assert app.triage is narrow_triage and narrow_triage is not None
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MatchesScreen))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen is not narrow)
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("backspace")  # the tree's cursor is on the root: Backspace goes back too
        await until(pilot, lambda: app.screen is narrow)
        # The picker from a map opened over another: both maps go, and the maps below are forgotten.
        await highlight_match(pilot, app, 1234)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MapScreen) and app.screen is not narrow)
        app.action_pick_map()
        await until(pilot, lambda: isinstance(app.screen, PickerScreen))
        assert not app._maps_below and not any(isinstance(s, MapScreen) for s in app.screen_stack)


async def test_a_matched_map_that_cannot_be_opened_leaves_the_first_one_as_it_was(
    store: CrossSaeStore, tmp_path: Path
) -> None:
    shutil.copytree(store.root, tmp_path / "store")
    broken = CrossSaeStore(tmp_path / "store")
    (broken.map_dir("wide-1234") / "contexts.parquet").write_bytes(b"torn")
    app = app_on(broken, "narrow")
    async with app.run_test(size=(120, 40)) as pilot:
        narrow = await open_map(pilot, app)
        triage = app.triage
        await highlight_match(pilot, app, 1234)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "contexts.parquet" in screen_text(app)
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is narrow)
        assert app.map_screen is narrow and app.triage is triage and not app._maps_below


async def test_the_other_side_of_a_match_table_lists_the_narrow_latent(store: CrossSaeStore) -> None:
    app = app_on(store, "wide-1234")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_map(pilot, app)
        await pilot.press("M")
        await until(pilot, lambda: isinstance(app.screen, MatchesScreen))
        matches = app.screen.reading.matches  # type: ignore[attr-defined]
        assert [(m.latent, m.one_to_one) for m in matches] == [(42, True), (5, False)]
        assert matches[0].map_path == store.map_dir("narrow")
        assert matches[0].encoder_cosine == pytest.approx(0.77, abs=1e-6)


async def test_a_match_without_a_map_says_how_to_build_it(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_map(pilot, app)
        await highlight_match(pilot, app, 1500)
        await pilot.press("enter")
        await until(pilot, lambda: any("vista build" in note for note in notes(app)))
        assert f"no map of latent 1500 of {WIDE}: run `vista build --sae {WIDE} --latents 1500`" in notes(app)
        assert isinstance(app.screen, MatchesScreen)  # still there, to pick another


async def test_no_match_table_and_no_children_are_toasts(store: CrossSaeStore) -> None:
    app = app_on(store, "lonely")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_map(pilot, app)
        await pilot.press("M")
        await until(pilot, lambda: NO_MATCH_TABLE.format(sae=LONELY) in notes(app))
        assert NO_MATCH_TABLE.format(sae=LONELY) == (f"no match table for SAE {LONELY}: run `vista match SAE_A SAE_B`")
        await pilot.press("C")
        await until(pilot, lambda: NO_CHILDREN in notes(app))
        assert "rebuild it with `vista build … --also-sae SAE_B`" in NO_CHILDREN
        await pilot.press("vertical_line")
        await until(pilot, lambda: any(note.startswith(NO_CHILDREN) for note in notes(app) if note != NO_CHILDREN))
        assert isinstance(app.screen, MapScreen)


async def test_child_overlay_colours_the_map_and_contexts_and_shows_the_legend(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        minimap = screen.query_one("#minimap", Minimap)
        contexts = screen.query_one("#contexts", ContextList)
        assert SELECTED in minimap.frame.kinds
        await pilot.press("C")
        await until(pilot, lambda: screen.children_controller.shown)
        await pilot.pause()
        kinds = minimap.frame.kinds
        assert SELECTED not in kinds and CHILD_NONE in kinds
        assert {CHILD_BASE + r for r in range(4)} <= set(np.unique(kinds).tolist())  # four children at the root
        ranks = screen.children_controller.overlay.ranks  # type: ignore[union-attr]
        first = int(contexts.rows[0])
        assert contexts.row_tint is not None
        assert (contexts.row_tint(first) is None) == (ranks[first] < 0)
        legend = screen.query_one("#children-legend")
        assert legend.display
        text = screen_text(app)
        assert "children · 2,048-wide syn-release/wide-2048" in text
        assert "latent 1234 · cos 0.83" in text
        assert text.count("2,048-wide") == 1  # the heading names the SAE, each child only its latent
        # The music node splits between two children: both on its legend.
        model = screen.model
        music = next(n for n in model.walk() if model.title(n).startswith("music"))
        screen.jump_to(music)
        await pilot.pause()
        text = screen_text(app)
        assert "latent 1500 ·" in text and "latent 1234 ·" in text and "of this node" in text
        # Child 1234 is spread over several nodes: its line lists where it dominates.
        assert "dominant in 4 nodes: classical; muscle;" in text and "anatomy +1" in text  # wrapped at 120
        await pilot.press("C")
        await pilot.pause()
        assert not screen.children_controller.shown and not legend.display
        assert contexts.row_tint is None and minimap.child_ranks is None
        assert SELECTED in minimap.frame.kinds


def jaccard_match(a: MapModel, b: MapModel, node_id: str) -> tuple[str | None, float]:
    """Brute force: the node of `b` whose context ids share the most with `node_id`'s (ties: shallower, earlier)."""
    ids_a, ids_b = a.reader.context_ids, b.reader.context_ids
    mine = {ids_a[row] for row in a.nodes[node_id].members}
    best: tuple[float, int, int, str | None] = (0.0, 0, 0, None)
    for order, other in enumerate(b.walk()):
        theirs = {ids_b[row] for row in b.nodes[other].members}
        score = len(mine & theirs) / len(mine | theirs)
        key = (score, -b.nodes[other].depth, -order, other)
        if key[:3] > best[:3]:
            best = key
    return (best[3] if best[0] >= 0.1 else None), best[0]


async def test_split_view_follows_the_matched_node(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        await pilot.press("vertical_line")  # narrow has children.json: beside its dominant child's map
        await until(pilot, lambda: isinstance(app.screen, SplitScreen))
        split = app.screen
        assert isinstance(split, SplitScreen)
        left, right = split.models
        assert left is screen.model and right.manifest.provenance.latent == 1234
        await pilot.pause()
        for _ in range(4):
            await pilot.press("j")
            await pilot.pause()
            node = split.tree(0).selected
            assert node is not None
            expected, score = jaccard_match(left, right, node)
            assert expected is not None and split.followed == expected
            assert split.minimap(1).node_id == expected
            assert f"Jaccard {score:.2f}" in screen_text(app)
        await pilot.press("tab")  # the cursor goes right; the left follows
        await pilot.press("j", "l")
        await pilot.pause()
        node = split.tree(1).selected
        assert node is not None
        assert split.followed == jaccard_match(right, left, node)[0]
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen)


async def test_split_without_children_opens_the_best_match_that_has_a_map(store: CrossSaeStore) -> None:
    app = app_on(store, "wide-1234")  # no children.json; its match table's 1:1 partner (narrow 42) has a map
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        assert not (store.map_dir("wide-1234") / "children.json").exists()
        await pilot.press("vertical_line")
        await until(pilot, lambda: isinstance(app.screen, SplitScreen))
        left, right = app.screen.models  # type: ignore[attr-defined]
        assert left is screen.model and right.manifest.provenance.latent == 42
        await until(pilot, lambda: any("beside its one-to-one match, latent 42" in note for note in notes(app)))
        node = app.screen.tree(0).selected  # type: ignore[attr-defined]
        assert app.screen.followed == jaccard_match(left, right, node)[0]  # type: ignore[attr-defined]


async def test_split_with_a_map_of_another_corpus_says_no_matching_node(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(160, 48)) as pilot:
        await open_map(pilot, app)
        await highlight_match(pilot, app, 77)
        await pilot.press("vertical_line")
        await until(pilot, lambda: isinstance(app.screen, SplitScreen))
        await pilot.pause()
        assert "no matching node (best Jaccard 0.00" in screen_text(app)


async def test_help_and_palette_list_the_new_keys(store: CrossSaeStore) -> None:
    app = app_on(store, "narrow")
    async with app.run_test(size=(160, 200)) as pilot:
        await open_map(pilot, app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        text = screen_text(app)
        for words in ("Matches: The latent's matches", "Children: Colour the map", "Side by side"):
            assert words in text
        assert "|" in text
        await pilot.press("escape")
        await palette_search(pilot, "matches other SAEs")
        assert "Matches of this latent in other SAEs" in screen_text(app)


def test_store_fixture_shares_context_ids(store: CrossSaeStore, tmp_path: Path) -> None:
    """The two maps of one corpus share the narrow map's first 200 context ids (what the split view matches on)."""
    narrow = MapModel.open(store.map_dir("narrow")).reader.context_ids
    wide = MapModel.open(store.map_dir("wide-1234")).reader.context_ids
    assert wide == narrow[:200]


def test_minimap_cell_takes_its_commonest_child() -> None:
    kinds = np.zeros(4, dtype=np.uint8)
    dots = np.array([0, 1, 2, 8, 9, 16, 17, 18, 24, 25, -1])  # cells 0, 1, 2, 3; the last point is off the map
    ranks = np.array([1, 1, 0, 2, 0, -1, -1, 3, -1, 0, 0])
    colour_children(kinds, dots, ranks)
    assert kinds.tolist() == [
        CHILD_BASE + 1,  # two of rank 1 beat one of rank 0
        CHILD_BASE + 0,  # a tie goes to the better rank
        CHILD_NONE,  # most have no child
        CHILD_BASE + 0,  # a tie between none and a child goes to the child
    ]
