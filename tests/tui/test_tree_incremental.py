"""Folding and unfolding the tree changes only the rows under the node; what shows equals a full rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.tui import open_map, screen_text, selected_title, tree_of
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView

SIZE = (120, 48)
"""Tall enough that the 15 rows of the unfolded tree fit: a rebuild's scroll (to the top) changes nothing."""


@pytest.fixture
def plain(synthetic_store: Path) -> VistaApp:
    return VistaApp(Store(synthetic_store), synthetic_store / "maps" / "syn-plain")


def tree_state(tree: ClusterTreeView) -> dict[str, Any]:
    """Rows, cursor, each option's id and prompt, and each line drawn with the option index it carries."""
    lines = [tree.render_line(y) for y in range(tree.scrollable_content_region.height)]
    return {
        "rows": list(tree.rows),
        "highlighted": tree.highlighted,
        "selected": tree.selected,
        "options": [(option.id, str(option.prompt)) for option in tree.options],
        "ids": {option.id: index for index, option in enumerate(tree.options)},
        "lines": [line.text for line in lines],
        # The index a click on the line selects (OptionList keeps it in each segment's meta).
        "clicks": [
            next((segment.style.meta.get("option") for segment in line if segment.style and segment.style.meta), None)
            for line in lines
        ],
        "height": tree.virtual_size.height,
    }


async def assert_as_rebuilt(pilot: Any, tree: ClusterTreeView) -> dict[str, Any]:
    """The tree after the keys equals the same tree rebuilt from scratch; returns that state.

    Also the screen: the compositor draws each widget from the lines it keeps and redraws only the
    lines refreshed since, as a terminal shows only what was repainted; a line a fold or an unfold
    moved but did not repaint would still show its old row.
    """
    await pilot.pause()
    incremental = tree_state(tree)
    shown = screen_text(tree.app)
    tree.rebuild()
    await pilot.pause()
    rebuilt = tree_state(tree)
    assert incremental == rebuilt
    assert shown == screen_text(tree.app)
    return rebuilt


def title_row(tree: ClusterTreeView, title: str) -> int:
    return next(i for i, node_id in enumerate(tree.rows) if tree.model.title(node_id) == title)


async def test_unfold_inserts_the_children_under_the_node(plain: VistaApp) -> None:
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        before = len(tree.rows)
        await pilot.press("j", "j", "l")  # museum → its first sub-cluster
        assert selected_title(plain) == "modern, exhibit, curator"
        state = await assert_as_rebuilt(pilot, tree)
        assert len(state["rows"]) == before + 2
        assert state["highlighted"] == 3  # root, music, museum, then its first child
        assert "▾ museum, gallery, ex" in screen_text(plain)


async def test_fold_removes_them_and_keeps_the_cursor_on_the_node(plain: VistaApp) -> None:
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        first = await assert_as_rebuilt(pilot, tree)
        await pilot.press("j", "l", "h")  # music open, back on music
        assert selected_title(plain) == "music, melody, rhythm"
        opened = await assert_as_rebuilt(pilot, tree)
        assert len(opened["rows"]) == len(first["rows"]) + 3
        await pilot.press("h")  # fold music
        assert selected_title(plain) == "music, melody, rhythm"
        folded = await assert_as_rebuilt(pilot, tree)
        assert folded["rows"] == first["rows"]
        assert folded["options"] == first["options"]
        assert "folk, rhythm, song" not in screen_text(plain)


async def test_nested_unfold_and_fold_of_the_root(plain: VistaApp) -> None:
    """Folding the root hides every open level; unfolding it shows them again as they were."""
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        await pilot.press("j", "l", "h", *"jjjjj", "l", "h")  # music and muscle open, cursor on muscle
        assert selected_title(plain) == "muscle, biceps, tendon"
        both = await assert_as_rebuilt(pilot, tree)
        assert len(both["rows"]) == 1 + 5 + 3 + 2
        await pilot.press("g", "space")  # fold the root
        assert tree.rows == [tree.model.root.node_id]
        await assert_as_rebuilt(pilot, tree)
        await pilot.press("space")  # unfold it: music and muscle are still open
        again = await assert_as_rebuilt(pilot, tree)
        assert again["rows"] == both["rows"] and again["options"] == both["options"]
        assert selected_title(plain) == "latent 42"


async def test_cursor_below_the_change_keeps_its_node(plain: VistaApp) -> None:
    """Space on an open node above the cursor is not a key, but a fold from elsewhere (search, palette) may be."""
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        await pilot.press("j", "l", "h", "G")  # music open, cursor on the last row
        assert selected_title(plain) == "(noise)"
        music = tree.rows[1]
        tree.fold(music)
        assert selected_title(plain) == "(noise)"
        await assert_as_rebuilt(pilot, tree)
        tree.unfold(music)
        assert selected_title(plain) == "(noise)"
        await assert_as_rebuilt(pilot, tree)
        await pilot.press("g", "j", "l", "j", "j")  # into music's children, then fold music from its last child
        assert selected_title(plain) == "jazz, rhythm, song"
        tree.fold(music)
        assert selected_title(plain) == "music, melody, rhythm"  # the cursor was inside: it goes to the node
        await assert_as_rebuilt(pilot, tree)


async def test_a_click_after_an_unfold_selects_the_row_clicked(plain: VistaApp) -> None:
    """The rows below an unfold moved: a click on one selects that one (not the row that was there before)."""
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        await pilot.press("j", "l")  # music's three children now sit above museum
        row = title_row(tree, "museum, gallery, exhibit")
        assert row == 5
        await pilot.click(ClusterTreeView, offset=(10, 1 + row - round(tree.scroll_offset.y)))
        await pilot.pause()
        # A click opens the node clicked: museum's first child (the row's old option, noise, has none).
        assert selected_title(plain) == "modern, exhibit, curator"


async def test_unfold_and_fold_in_a_small_terminal_keep_the_cursor_in_view(plain: VistaApp) -> None:
    """At 60x14 the tree shows a few rows: after each key the cursor's row is on screen, the rows as rebuilt."""
    async with plain.run_test(size=(60, 14)) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        for keys in (("j", "l"), ("h", "j", "l"), ("h", "j", "l"), ("h", "h"), ("k", "h"), ("G",), ("g", "space")):
            await pilot.press(*keys)
            await pilot.pause()
            top, height = round(tree.scroll_offset.y), tree.scrollable_content_region.height
            assert tree.highlighted is not None and top <= tree.highlighted < top + height
            assert tree.rows == tree._visible()
            assert [option.id for option in tree.options] == tree.rows


async def test_rows_back_at_their_index_get_their_lines_back(plain: VistaApp) -> None:
    """Open a node and fold it again: the rows under it moved down and back, and draw the very lines
    they drew before (the lines before the index are kept per option, and a Strip keeps its copies
    with a style added, the index's meta), which equal a rebuild's."""
    async with plain.run_test(size=SIZE) as pilot:
        await open_map(pilot, plain)
        tree = tree_of(plain)
        await pilot.press("j")  # music
        await pilot.pause()
        before = [tree.render_line(y) for y in range(len(tree.rows))]
        await pilot.press("l", "h", "h")  # open music, back to it, fold it
        assert selected_title(plain) == "music, melody, rhythm"
        await pilot.pause()
        after = [tree.render_line(y) for y in range(len(tree.rows))]
        below = range(2, len(tree.rows))  # root, music, then the rows that moved
        assert len(below) >= 3
        assert all(after[y] is before[y] for y in below)
        await assert_as_rebuilt(pilot, tree)
