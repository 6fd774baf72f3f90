"""Scores in the explorer: each reading's scores in the labels panel, `w` (worst covered first) and the
coverage view (`c`), on the labelled synthetic map with a real `scores.json` (tests/helpers/scored_map.py).

The published explanation, "muscle-related terms", covers the muscle sense and misses music and
mustard. Snapshots of the labels panel with scores (80x24) and of the coverage view (80x24, 160x48):
update after an intended change with `pytest tests/tui/test_scores_view.py --snapshot-update` and
look at the SVGs before committing.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from textual.color import Color
from textual.pilot import Pilot

from tests.helpers.scored_map import COVERAGE, PUBLISHED, READING_SCORES, SENSE_OFFSET, build_scored_map, corrupt_scores
from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, palette_search, screen_text, selected_title, tree_of, until
from vista_tui.core import model as model_module
from vista_tui.core.score_figures import (
    SCORES_LEGEND,
    coverage_rows,
    format_score,
    quality,
    score_bar,
    worst_covered_order,
)
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp
from vista_tui.tui.screens.coverage import CoverageScreen, CoverageTable
from vista_tui.tui.screens.help import HelpScreen
from vista_tui.tui.screens.map import MapScreen
from vista_tui.tui.widgets.labels import LabelsPanel

SIZE_ORDER = ["music sense", "museum, gallery, exhibit", "mustard, seed, sauce", "muscle sense", "(noise)"]
"""The first level in display order: biggest first, noise last."""
WORST_FIRST = ["music sense", "mustard, seed, sauce", "museum, gallery, exhibit", "muscle sense", "(noise)"]
"""By the published explanation's detection score on each cluster, ascending; unscored (noise) last."""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four maps: scored with coverage, scored without a published explanation, without scores, corrupt scores."""
    root = tmp_path_factory.mktemp("scores-view-store")
    maps = root / "maps"
    build_scored_map(maps / "syn-scored")
    build_scored_map(maps / "syn-no-coverage", coverage=False)
    build_synthetic_map(maps / "syn-unscored", n=180, seed=1, latent=7, agreement=True)
    corrupt_scores(build_scored_map(maps / "syn-corrupt"))
    return root


def app_for(store: Path, name: str = "syn-scored") -> VistaApp:
    """The explorer on one map of the store."""
    return VistaApp(Store(store), store / "maps" / name)


def notifications(app: VistaApp) -> list[str]:
    """Every toast shown so far."""
    return [str(note.message) for note in app._notifications]  # type: ignore[attr-defined]


async def settle(pilot: Pilot) -> None:  # type: ignore[type-arg]
    """Let workers finish and their messages land."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_scored(pilot: Pilot, title: str | None = None) -> MapScreen:  # type: ignore[type-arg]
    """Open the map, wait for its scores, and walk down to the node called `title` (default: the root)."""
    app = pilot.app
    screen = await open_map(pilot, app)  # type: ignore[arg-type]
    await until(pilot, lambda: screen.model.scores_if_read is not None)
    await settle(pilot)
    for _ in range(10):
        if title is None or selected_title(app) == title:  # type: ignore[arg-type]
            break
        await pilot.press("j")
        await pilot.pause()
    await settle(pilot)
    return screen


def first_level(app: VistaApp) -> list[str]:
    """The titles of the root's children, as the tree lists them now."""
    tree = tree_of(app)
    root = tree.model.root.node_id
    return [tree.model.title(node_id) for node_id in tree.rows if tree.model.parent(node_id) == root]


async def open_coverage(pilot: Pilot) -> CoverageScreen:  # type: ignore[type-arg]
    """Press `c` and wait until the coverage view shows what it read."""
    await pilot.press("c")
    await until(pilot, lambda: isinstance(pilot.app.screen, CoverageScreen))
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, CoverageScreen)
    return screen


# -- the figures, headless ---------------------------------------------------------------------


def test_scores_read_as_figures_with_a_quality() -> None:
    assert format_score(0.8249) == "0.82" and format_score(math.nan) == "—"
    assert format_score(0.82, compact=True) == ".82" and format_score(1.0, compact=True) == "1.0"
    assert [quality(s) for s in (0.5, 0.6, 0.74, 0.75, math.nan)] == ["low", "mid", "mid", "high", "none"]
    assert score_bar(0.5, 4) == "██  " and score_bar(1.0, 2) == "██" and score_bar(math.nan, 3) == ""
    assert score_bar(0.0625, 2) == "▏ "


def test_the_model_reads_scores_once_and_again_when_rewritten(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = model_module.read_score_reading

    def counting(map_dir: Path):  # type: ignore[no-untyped-def]
        calls.append(map_dir)
        return real(map_dir)

    monkeypatch.setattr(model_module, "read_score_reading", counting)
    model = model_module.MapModel.open(store / "maps" / "syn-scored")
    assert model.scores_if_read is None  # opening a map does not read them
    first = model.map_scores()
    assert model.map_scores() is first and model.map_scores(reload=True) is first and len(calls) == 1
    path = store / "maps" / "syn-scored" / "scores.json"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # as if `vista score` wrote it again
    try:
        assert model.map_scores() is first  # not without reload
        again = model.map_scores(reload=True)
        assert again is not first and len(calls) == 2
    finally:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rows = coverage_rows(first)
    titles = [model.title(row.node_id) for row in rows]
    assert titles == WORST_FIRST[:-1]
    assert worst_covered_order(first)[rows[0].node_id] == COVERAGE["music"]["detection"]


def test_missing_and_corrupt_scores_are_one_line(store: Path) -> None:
    unscored = model_module.MapModel.open(store / "maps" / "syn-unscored").map_scores()
    assert unscored.scores is None and unscored.error == "" and unscored.scorers == ()
    corrupt = model_module.MapModel.open(store / "maps" / "syn-corrupt").map_scores()
    assert corrupt.scores is None and "scores.json" in corrupt.message and "\n" not in corrupt.message


# -- the labels panel ---------------------------------------------------------------------------


def expected(kind: str, sense: str) -> str:
    """A reading's scores as the panel shows them: every scorer the map used, `—` where not scored."""
    by_scorer = READING_SCORES[kind]
    figures = []
    for scorer, name in (("detection", "det"), ("fuzzing", "fuzz"), ("embedding", "emb")):
        value = by_scorer.get(scorer)
        figures.append(f"{name} {format_score(value + SENSE_OFFSET[sense]) if value is not None else '—'}")
    return " · ".join(figures)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_labels_panel_shows_each_readings_scores(store: Path, size: tuple[int, int]) -> None:
    app = app_for(store)
    async with app.run_test(size=size) as pilot:
        await open_scored(pilot, "muscle sense")
        lines = screen_text(app).splitlines()

        def shows(name: str, scores: str) -> bool:
            return any(f"{name} {scores}" in " ".join(line.split()) for line in lines)

        assert shows("label", expected("llm_label", "muscle"))
        assert shows("explanation", expected("llm_explanation", "muscle"))
        assert shows("visual", expected("visual_prompt", "muscle"))  # fuzz —
        assert shows("keywords", expected("keywords", "muscle"))
        # the published explanation's score on this cluster
        assert shows("Neuronpedia", f"det {COVERAGE['muscle']['detection']:.2f} · fuzz — · emb 0.96")
        panel = app.screen.query_one("#labels", LabelsPanel)
        assert panel.tooltip == SCORES_LEGEND
        # coloured by quality: the theme's success for a high score, error for a low one
        rendered = panel.render()
        colours = {rendered.plain[span.start : span.end]: span.style.foreground for span in rendered.spans}  # type: ignore[union-attr]
        theme = {name: Color.parse(app.theme_variables[name]) for name in ("success", "warning", "error")}
        assert colours["0.95"] == theme["success"]  # the label's embedding score: high
        assert colours["0.63"] == theme["warning"]  # the visual prompt's detection score: mid
        await pilot.press("k", "k", "k", "k")  # up to the root: its readings and the published explanation
        await settle(pilot)
        lines = screen_text(app).splitlines()
        assert shows("Neuronpedia", "det 0.64 · fuzz — · emb 0.72")
        assert shows("label", expected("llm_label", "root"))
        rendered = panel.render()
        colours = {rendered.plain[span.start : span.end]: span.style.foreground for span in rendered.spans}  # type: ignore[union-attr]
        assert colours["0.54"] == theme["error"]  # the root's visual prompt, detection: low


async def test_a_node_without_scores_says_so_and_an_unscored_map_shows_nothing(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_scored(pilot, "(noise)")
        assert "scores: not scored" in screen_text(app)
    app = app_for(store, "syn-unscored")
    async with app.run_test(size=(160, 48)) as pilot:
        await open_scored(pilot, "muscle sense")
        text = screen_text(app)
        assert "det " not in text and "emb " not in text and "scores:" not in text
        assert app.screen.query_one("#labels", LabelsPanel).tooltip is None
        assert not [note for note in notifications(app) if "score" in note]


# -- w: worst covered first -------------------------------------------------------------------------


async def test_w_lists_the_worst_covered_sense_first_and_back(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_scored(pilot)
        assert first_level(app) == SIZE_ORDER
        await pilot.press("j", "l")  # open music sense: its children stay as they were
        await settle(pilot)
        children = [tree_of(app).model.title(n) for n in tree_of(app).rows]
        await pilot.press("w")
        await settle(pilot)
        assert first_level(app) == WORST_FIRST
        assert "worst covered first" in str(tree_of(app).border_title)
        assert any("worst covered first (det)" in note for note in notifications(app))
        assert [tree_of(app).model.title(n) for n in tree_of(app).rows][1:4] == children[1:4]  # music and its children
        await pilot.press("w")
        await settle(pilot)
        assert first_level(app) == SIZE_ORDER
        assert "worst covered" not in str(tree_of(app).border_title)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("syn-unscored", "import-explanations"),
        ("syn-no-coverage", "import-explanations"),
        ("syn-corrupt", "scores are unreadable"),
    ],
)
async def test_w_without_coverage_says_how_to_get_it(store: Path, name: str, line: str) -> None:
    app = app_for(store, name)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_scored(pilot)
        await pilot.press("w")
        await settle(pilot)
        assert first_level(app) == SIZE_ORDER
        said = [note for note in notifications(app) if line in note]
        assert said and all("\n" not in note for note in said)
        if name != "syn-corrupt":
            assert any("vista score" in note for note in said)


# -- c: the coverage view ---------------------------------------------------------------------------


async def test_c_shows_the_coverage_table_and_enter_jumps_to_the_cluster(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_scored(pilot)
        screen = await open_coverage(pilot)
        text = screen_text(app)
        assert f"published: “{PUBLISHED}”" in text
        assert "all contexts: det 0.64 · emb 0.72" in text
        assert "worst covered (≥10% of contexts): music sense · det 0.48 · 29.4% of contexts" in text
        table = screen.query_one(CoverageTable)
        titles = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert titles == WORST_FIRST[:-1]
        music = next(line for line in text.splitlines() if "music sense" in line and "53" in line)
        assert "29.4%" in music and "0.48" in music and "0.61" in music and "█" in music
        await pilot.press("down", "enter")  # mustard, the second worst
        await settle(pilot)
        assert isinstance(app.screen, MapScreen)
        assert selected_title(app) == "mustard, seed, sauce"
        for key in ("escape", "q", "c"):  # each closes it, selecting nothing
            await open_coverage(pilot)
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, MapScreen) and selected_title(app) == "mustard, seed, sauce"


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("syn-unscored", "no coverage: import the latent's published explanation, `vista import-explanations"),
        ("syn-no-coverage", "then run `vista score syn-no-coverage`"),
        ("syn-corrupt", "scores are unreadable:"),
    ],
)
async def test_the_coverage_view_without_coverage_is_one_line(store: Path, name: str, line: str) -> None:
    app = app_for(store, name)
    async with app.run_test(size=(200, 40)) as pilot:
        await open_scored(pilot)
        screen = await open_coverage(pilot)
        text = screen_text(app)
        assert [row for row in text.splitlines() if line in row]
        assert not screen.query(CoverageTable) and "Traceback" not in text
        await pilot.press("escape")
        assert isinstance(app.screen, MapScreen)


async def test_a_corrupt_file_is_one_notification_at_open(store: Path) -> None:
    app = app_for(store, "syn-corrupt")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_scored(pilot, "muscle sense")
        said = [note for note in notifications(app) if "scores are unreadable" in note]
        assert len(said) == 1 and "scores.json" in said[0] and "\n" not in said[0]
        assert "det " not in screen_text(app)


async def test_the_coverage_view_reads_scores_written_while_the_map_was_open(store: Path, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    build_synthetic_map(maps / "syn-late", n=180, seed=1, latent=7, agreement=True)
    app = VistaApp(Store(tmp_path), maps / "syn-late")
    async with app.run_test(size=(120, 40)) as pilot:
        await open_scored(pilot, "muscle sense")
        assert "det " not in screen_text(app)
        build_scored_map(maps / "syn-late")  # `vista score` ran meanwhile (same map, same tree)
        await open_coverage(pilot)
        assert "music sense" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert "label       det" in screen_text(app)  # the labels panel shows them too


# -- palette and help --------------------------------------------------------------------------------


async def test_the_palette_finds_coverage_and_worst_covered(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_scored(pilot)
        await palette_search(pilot, "worst covered")
        assert "Sort the tree worst covered first" in screen_text(app)
        await pilot.press("enter")
        await settle(pilot)
        assert first_level(app) == WORST_FIRST
        await palette_search(pilot, "Coverage of")
        assert "Coverage of the published explanation" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CoverageScreen))


async def test_help_lists_w_and_c_and_the_scores_legend(store: Path) -> None:
    app = app_for(store)
    async with app.run_test(size=(120, 110)) as pilot:  # tall enough for every key, the legend last
        await open_scored(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        lines = screen_text(app).splitlines()
        assert any(" w " in line and "Worst covered: List the first-level clusters" in line for line in lines)
        assert any(" c " in line and "Coverage: The published explanation's score" in line for line in lines)
        assert any(" coverage " in line and "esc q c" in line for line in lines)
        assert any("det detection" in line for line in lines)


# -- snapshots ---------------------------------------------------------------------------------------


def test_snapshot_labels_panel_with_scores(snap_compare, store: Path) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await open_scored(pilot, "muscle sense")

    assert snap_compare(app_for(store), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_coverage_view(snap_compare, store: Path, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:  # type: ignore[type-arg]
        await open_scored(pilot)
        await open_coverage(pilot)

    assert snap_compare(app_for(store), terminal_size=size, run_before=run_before)
