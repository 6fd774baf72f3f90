"""The statistics view (`s` on the map): the latent's figures and the selected node's, on a seeded map.

The maps are tests/helpers/focus_map.py's with a real `stats.json` (tests/helpers/stats_map.py):
per-node histograms and positions, quantile examples whose tokens hold escape sequences, and
logits. Snapshots at 80x24 and 160x48: update after an intended change with
`pytest tests/tui/test_stats_view.py --snapshot-update` and look at the SVGs before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.helpers.stats_map import build_stats_map, corrupt_stats
from tests.helpers.tui import open_map, palette_search, screen_text, tree_of, until
from vista_tui.core import model as model_module
from vista_tui.core import stats_figures as stats_module
from vista_tui.core.stats_figures import (
    NO_QUANTILES,
    NO_UNEMBEDDING,
    NOT_RECORDED,
    format_activation_range,
    format_share,
    last_position,
    logits_message,
    spark_blocks,
    spark_cells,
)
from vista_tui.mapdata import Store, read_latent_stats
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.screens.stats import StatsScreen
from vista_tui.tui.widgets.figures import ExampleLines

NOTE = "no unembedding: seeded-model has no LM head"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store, six maps: with statistics, without, without logits (with and without a note), without quantile
    examples, corrupt."""
    root = tmp_path_factory.mktemp("stats-view-store")
    maps = root / "maps"
    build_stats_map(maps / "seeded-stats")
    build_stats_map(maps / "seeded-unembedding", logits=False)
    build_stats_map(maps / "seeded-note", logits=False, logits_note=NOTE)
    corrupt_stats(build_stats_map(maps / "seeded-corrupt"))
    build_stats_map(maps / "seeded-no-quantiles", quantiles=False)
    build_stats_map(maps / "seeded-old")
    (maps / "seeded-old" / "stats.json").unlink()  # a map built before statistics were recorded
    return root


def app_for(store: Path, name: str = "seeded-stats") -> VistaApp:
    return VistaApp(Store(store), store / "maps" / name)


async def open_stats(pilot: Pilot, *keys: str) -> StatsScreen:  # type: ignore[type-arg]
    """Open the map, press `keys` (to select a node), then `s`; wait until the statistics are read."""
    app = pilot.app
    await open_map(pilot, app)  # type: ignore[arg-type]
    if keys:
        await pilot.press(*keys)
    await pilot.press("s")
    await until(pilot, lambda: isinstance(app.screen, StatsScreen))
    await until(pilot, lambda: "reading statistics" not in screen_text(app))  # type: ignore[arg-type]
    await app.workers.wait_for_complete()
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, StatsScreen)
    return screen


# -- the figures, headless ---------------------------------------------------------------------


def test_share_keeps_three_significant_digits() -> None:
    assert format_share(0.4) == "40.0%"
    assert format_share(0.0151) == "1.51%"
    assert format_share(0.00152) == "0.152%"
    assert format_share(1.0) == "100%"
    assert format_share(0.0) == "0%"


def test_spark_cells_average_bins_and_stretch_short_profiles() -> None:
    # 6 bins on 4 cells: groups of 2 and 1 bins are averaged, so equal bins make equal cells.
    assert spark_cells([2, 2, 2, 2, 2, 2], 4) == [2.0, 2.0, 2.0, 2.0]
    assert spark_cells([1, 2], 5) == [1.0, 1.0, 2.0, 2.0]
    assert spark_cells([], 10) == []


def test_spark_blocks_keep_small_counts_visible() -> None:
    assert spark_blocks([0, 1, 100]) == [" ▁█"]
    assert spark_blocks([0, 0]) == ["  "]
    assert spark_blocks([0, 4, 16], height=2) == ["  █", " ▄█"]


def test_positions_end_at_the_last_firing() -> None:
    assert last_position((0, 3, 0, 1, 0, 0), (0, 0, 0, 0, 2)) == 4
    assert last_position((0, 0)) == -1


def test_the_model_reads_statistics_once(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = stats_module.read_stats  # the model imports it on its first call (not to open a map)

    def counting(map_dir: Path):  # type: ignore[no-untyped-def]
        calls.append(map_dir)
        return real(map_dir)

    monkeypatch.setattr(stats_module, "read_stats", counting)
    model = model_module.MapModel.open(store / "maps" / "seeded-stats")
    assert not model.stats_read
    first = model.latent_stats()
    assert model.latent_stats() is first and model.stats_read
    assert len(calls) == 1
    assert first.stats is not None and first.message == ""
    corrupt = model_module.MapModel.open(store / "maps" / "seeded-corrupt").latent_stats()
    assert corrupt.stats is None and "stats.json" in corrupt.message and "\n" not in corrupt.message


def test_logits_message_says_why_there_are_none(store: Path) -> None:
    def stats(name: str):  # type: ignore[no-untyped-def]
        return read_latent_stats(store / "maps" / name)

    assert logits_message(stats("seeded-stats")) == ""
    assert logits_message(stats("seeded-unembedding")) == NO_UNEMBEDDING
    assert logits_message(stats("seeded-note")) == NOTE


# -- the view, driven by keys ------------------------------------------------------------------


async def test_s_shows_the_selected_nodes_statistics(store: Path) -> None:
    app = app_for(store)
    stats = read_latent_stats(store / "maps" / "seeded-stats")
    assert stats is not None and stats.quantiles is not None
    async with app.run_test(size=(160, 48)) as pilot:
        await open_map(pilot, app)
        await pilot.press("j")  # the biggest child: the " want" sense
        selected = tree_of(app).selected
        screen = await open_stats(pilot)
        assert screen.node_id == selected
        text = screen_text(app)
        assert '" want" ×54 · " wanted" ×6' in text  # the node's title
        assert "density 1.51% (15,130 of 1,000,000 tokens)" in text
        assert "max activation 12.4" in text
        assert "this node · 60 contexts (40.0% of 150)" in text
        assert "all firings" in text and "this node" in text
        # the node's focus tokens: count and share of the node
        assert any('" want"' in line and "54" in line and "90.0%" in line for line in text.splitlines())
        assert any('" wanted"' in line and "6" in line and "10.0%" in line for line in text.splitlines())
        # the logits, side by side
        assert any('" want"' in line and "+3.25" in line and '" hate"' in line for line in text.splitlines())
        assert '" desire"' in text and "-1.25" in text
        # the quantile examples, highest interval first
        edges = stats.quantiles.edges
        top = text.index(format_activation_range(edges[3], edges[4]))
        assert top < text.index(format_activation_range(edges[2], edges[3])) < text.index("none drawn")
        assert "interval 4 of 4" in text


async def test_quantile_examples_highlight_the_focus_token_and_make_escapes_inert(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_stats(pilot, "j")
        highlighted = []
        for lines in screen.query(ExampleLines):
            rendered = lines.render()
            highlighted += [rendered.plain[span.start : span.end] for span in rendered.spans if span.style.reverse]
        assert highlighted == ["want", "wanted", "need", "want", "want"]  # highest interval first
        text = screen_text(app)
        assert "␛[31m" in text and "␛]52;c;aGVsbG8=␇" in text and '"␛[2J"' in text and '"␀nul"' in text
        for raw in ("\x1b", "\x07", "\x00"):
            assert raw not in text
            assert raw not in app.export_screenshot()


async def test_escape_closes_and_another_node_shows_that_node(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_stats(pilot, "j")
        await pilot.press("escape")
        assert isinstance(app.screen, MapScreen)
        await pilot.press("j")  # the next sense: " need"
        selected = tree_of(app).selected
        screen = await open_stats(pilot)
        assert screen.node_id == selected
        text = screen_text(app)
        assert '" need" ×45 · " needed" ×5' in text
        assert "this node · 50 contexts" in text
        for key in ("q", "s"):  # both close too
            await pilot.press(key)
            assert isinstance(app.screen, MapScreen)
            await pilot.press("s")
            await until(pilot, lambda: isinstance(app.screen, StatsScreen))


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_logits_sit_side_by_side_unless_narrow_and_columns_when_wide(store: Path, size: tuple[int, int]) -> None:
    app = app_for(store)
    async with app.run_test(size=size) as pilot:
        screen = await open_stats(pilot, "j")
        positive = screen.query_one("#logits-positive").region
        negative = screen.query_one("#logits-negative").region
        if size[0] < 70:
            assert positive.x == negative.x and positive.bottom <= negative.y  # stacked
        else:
            assert positive.y == negative.y and positive.right <= negative.x  # side by side
        left = screen.query_one("#stats-left").region
        right = screen.query_one("#stats-right").region
        if size[0] >= 120:
            assert left.y == right.y and left.right <= right.x  # two columns
        else:
            assert left.x == right.x and left.bottom <= right.y  # the latent's and the node's figures first


async def test_the_root_shows_the_whole_map(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_stats(pilot)
        assert screen.node_id == screen.model.root.node_id
        text = screen_text(app)
        assert "statistics · latent 1705" in text
        assert "the whole map · 150 contexts (100% of 150)" in text


async def test_the_palette_finds_statistics(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_map(pilot, app)
        await palette_search(pilot, "Statistics")
        assert "Statistics of the latent and the selected node" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, StatsScreen))


async def test_help_lists_s(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 80)) as pilot:
        await open_map(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        lines = screen_text(app).splitlines()
        row = next(line for line in lines if "Stats: Density, histograms, positions" in line)
        assert " map " in row and " s " in row
        assert any(" stats " in line and "esc q s" in line and "Close" in line for line in lines)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("seeded-old", NOT_RECORDED),
        ("seeded-unembedding", NO_UNEMBEDDING),
        ("seeded-note", NOTE),
        ("seeded-no-quantiles", NO_QUANTILES),
    ],
)
async def test_what_is_missing_is_said(store: Path, name: str, line: str) -> None:
    app = app_for(store, name)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_stats(pilot, "j")
        text = screen_text(app)
        assert line in text
        if name == "seeded-old":
            assert "activations ·" not in text and "logits ·" not in text
        elif name == "seeded-no-quantiles":
            assert "+3.25" in text and "interval 4 of 4" not in text
        else:
            assert "+3.25" not in text and "interval 4 of 4" in text


async def test_a_corrupt_file_shows_one_line(store: Path) -> None:
    app = app_for(store, "seeded-corrupt")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_stats(pilot, "j")
        lines = [line for line in screen_text(app).splitlines() if "statistics are unreadable" in line]
        assert len(lines) == 1 and "stats.json" in lines[0]
        assert "Traceback" not in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MapScreen)


# -- snapshots ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_stats_view(snap_compare, store: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await open_stats(pilot, "j")

    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)
