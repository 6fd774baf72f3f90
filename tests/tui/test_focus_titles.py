"""The explorer's tree names nodes by their focus tokens when those decide the sense (a seeded map)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.focus_map import build_focus_map
from tests.helpers.tui import open_map, screen_text, selected_title
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp


async def test_tree_titles_show_the_planted_focus_tokens(tmp_path: Path) -> None:
    map_dir = build_focus_map(tmp_path / "maps" / "seeded")
    app = VistaApp(Store(tmp_path), map_dir)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for whole titles
        await open_map(pilot, app)
        text = screen_text(app)
        assert "latent 1705" in text  # the root keeps its name
        assert '" want" ×54 · " wanted" ×6' in text
        assert '" need" ×45 · " needed" ×5' in text
        assert "garden" in text or "soil" in text  # the spread sense, by its keywords
        await pilot.press("j")
        assert selected_title(app) == '" want" ×54 · " wanted" ×6'  # the biggest child first
