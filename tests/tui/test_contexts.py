"""The context list and the context dialog, driven like a person on synthetic maps."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.model import ContextStore, MapModel
from vista_tui.core.sanitize import MAX_TOKEN_CHARS, sanitize_token
from vista_tui.tui.screens.context_detail import ContextScreen
from vista_tui.tui.widgets.context_line import focus_column, format_activation
from vista_tui.tui.widgets.contexts import PLACEHOLDER, ContextList

SIZE = (80, 24)
FORBIDDEN = {"\x1b", "\x9b", "\x9d", "\u202e", "\x7f"}


class Host(App[None]):
    """The list alone, full screen; opens the context dialog on Opened, as the map screen does."""

    def __init__(self, model: MapModel) -> None:
        super().__init__()
        self.model = model
        self.opened: list[int] = []
        self.highlighted: list[int] = []

    def compose(self) -> ComposeResult:
        yield ContextList(self.model, id="contexts")

    def on_mount(self) -> None:
        contexts = self.query_one(ContextList)
        contexts.show_node(self.model.root.node_id)
        contexts.focus()

    def on_context_list_highlighted(self, event: ContextList.Highlighted) -> None:
        self.highlighted.append(event.row)

    def on_context_list_opened(self, event: ContextList.Opened) -> None:
        self.opened.append(event.row)
        self.push_screen(ContextScreen(self.model, event.row))


def screen_text(app: App[None]) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())  # type: ignore[attr-defined]


def lines(contexts: ContextList) -> list[str]:
    return [contexts.render_line(y).text for y in range(contexts.scrollable_content_region.height)]


async def settle(pilot: Pilot[None]) -> None:
    """Let pending workers finish and their messages be handled."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def focus_core(model: MapModel, row: int) -> str:
    context = model.contexts.fetch(row)
    return sanitize_token(context.focus_token).lstrip()


@pytest.fixture(scope="module")
def plain_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_map(tmp_path_factory.mktemp("contexts") / "plain", n=240)


@pytest.fixture(scope="module")
def hostile_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_map(tmp_path_factory.mktemp("contexts") / "hostile", n=240, hostile=True)


async def test_highest_activation_first_with_focus_at_a_fixed_column(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        shown = lines(contexts)
        rows = model.members_by_activation(model.root.node_id)
        assert shown[0].lstrip("▸ ").startswith(format_activation(model.max_activation).strip())
        values = [float(line[1:7]) for line in shown]
        assert values == sorted(values, reverse=True)
        column = focus_column(contexts.scrollable_content_region.width)
        for y, line in enumerate(shown):
            assert PLACEHOLDER not in line
            core = focus_core(model, int(rows[y]))
            assert line[column : column + len(core)] == core, (y, line)
        assert app.highlighted[:1] == [int(rows[0])]


async def test_keys_move_the_cursor_and_the_view(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        rows = model.members_by_activation(model.root.node_id)
        height = contexts.scrollable_content_region.height

        await pilot.press("j", "j", "down")
        assert contexts.cursor == 3
        assert contexts.render_line(3).text.startswith("▸")
        await pilot.press("k")
        assert contexts.cursor == 2
        assert app.highlighted[-1] == int(rows[2])

        await pilot.press("pagedown")
        assert contexts.cursor == 2 + height
        await settle(pilot)
        shown = lines(contexts)
        cursor_line = next(line for line in shown if line.startswith("▸"))
        assert format_activation(float(model.activations[rows[2 + height]])) in cursor_line

        await pilot.press("end")
        await settle(pilot)
        assert contexts.cursor == len(rows) - 1
        last = lines(contexts)[-1]
        assert last.startswith("▸" + format_activation(float(model.activations[rows[-1]])))
        assert PLACEHOLDER not in last

        await pilot.press("pageup")
        assert contexts.cursor == len(rows) - 1 - height
        await pilot.press("home")
        assert contexts.cursor == 0
        assert contexts.scroll_offset.y == 0
        await pilot.press("G")
        assert contexts.cursor == len(rows) - 1
        await pilot.press("g")
        assert contexts.cursor == 0


async def test_click_selects_and_show_node_switches(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        await pilot.click(ContextList, offset=(20, 4))
        assert contexts.cursor == 4

        node_id = model.children(model.root.node_id)[1]
        rows = model.members_by_activation(node_id)
        contexts.show_node(node_id)
        await settle(pilot)
        assert contexts.node_id == node_id
        assert contexts.cursor == 0
        assert app.highlighted[-1] == int(rows[0])
        shown = lines(contexts)
        assert len([line for line in shown if line.strip()]) == min(len(rows), len(shown))
        for y, line in enumerate(shown[: len(rows)]):
            assert format_activation(float(model.activations[rows[y]])) in line
            assert focus_core(model, int(rows[y])) in line


async def test_a_resize_lays_the_lines_out_again(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        rows = model.members_by_activation(model.root.node_id)
        assert contexts.move_to_row(int(rows[5])) and contexts.cursor == 5
        assert not contexts.move_to_row(model.n_contexts + 1)
        narrow = focus_column(contexts.scrollable_content_region.width)
        await pilot.resize_terminal(120, 24)
        await settle(pilot)
        width = contexts.scrollable_content_region.width
        assert focus_column(width) > narrow
        for y, line in enumerate(lines(contexts)):
            assert len(line) == width
            core = focus_core(model, int(rows[y]))
            assert line[focus_column(width) : focus_column(width) + len(core)] == core


async def test_enter_opens_the_context_with_its_neighbours(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j", "enter")
        await settle(pilot)
        rows = model.members_by_activation(model.root.node_id)
        row = int(rows[1])
        assert app.opened == [row]
        assert isinstance(app.screen, ContextScreen)
        context = model.contexts.fetch(row)
        text = screen_text(app)
        window = next(line for line in text.splitlines() if focus_core(model, row) in line)
        assert all(token.strip() in text for token in context.tokens), window  # the whole window
        assert f"row {row}" in text and context.context_id in text and context.doc_id in text
        assert f"({context.x:.3f}, {context.y:.3f})" in text
        neighbours = model.nearest_in_layout(row, k=8)
        for neighbour in neighbours:
            assert format_activation(float(model.activations[neighbour])) in text
            assert focus_core(model, neighbour) in text

        await pilot.press("j", "enter")  # the second neighbour, in the same dialog
        await settle(pilot)
        assert app.opened == [row]  # the dialog keeps its own Opened
        assert isinstance(app.screen, ContextScreen) and app.screen.row == neighbours[1]
        assert model.contexts.fetch(neighbours[1]).context_id in screen_text(app)
        await pilot.press("backspace")
        assert app.screen.row == row

        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ContextScreen)
        assert app.query_one(ContextList).cursor == 1
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ContextScreen)
        await pilot.press("q")
        await pilot.pause()
        assert not isinstance(app.screen, ContextScreen)


async def test_the_dialog_reads_a_context_that_is_not_loaded(big_map: Path) -> None:
    model = MapModel.open(big_map)
    app = Host(model)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        far = model.n_contexts - 5
        assert model.contexts.get(far) is None
        app.push_screen(ContextScreen(model, far))
        await settle(pilot)
        assert model.contexts.fetch(far).context_id in screen_text(app)


def check_inert(text: str) -> None:
    assert not any(ord(char) < 0x20 or 0x80 <= ord(char) < 0xA0 for char in text), repr(text)
    assert not FORBIDDEN & set(text), repr(text)


async def test_hostile_text_renders_inert(hostile_map: Path) -> None:
    model = MapModel.open(hostile_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        width = contexts.scrollable_content_region.width
        seen: list[str] = []
        for top in range(0, model.n_contexts, contexts.scrollable_content_region.height):
            contexts.scroll_to(y=top, animate=False, immediate=True)
            await settle(pilot)
            seen.extend(lines(contexts))
        assert len(seen) >= model.n_contexts
        for line in seen:
            check_inert(line)
            assert PLACEHOLDER not in line
            assert len(line) == width
        long_row = next(line for line in seen if "xxxx" in line)
        assert "x" * MAX_TOKEN_CHARS not in long_row and "…" in long_row
        assert any("␛]52;" in line for line in seen)  # shown, not obeyed

        for row in (0, 1, 4, 7, 10, 13, 16):  # the invalid UTF-8 row and every hostile one
            app.push_screen(ContextScreen(model, row))
            await settle(pilot)
            text = screen_text(app)
            for line in text.splitlines():
                check_inert(line)
            assert "x" * (MAX_TOKEN_CHARS + 1) not in text
            if row == 0:
                assert "\ufffd" in text
            await pilot.press("escape")
            await pilot.pause()


def corrupt_focus_token(map_dir: Path) -> None:
    """Make row 0's focus token invalid UTF-8 (a writer that never validated), keeping the manifest true."""
    path = map_dir / "contexts.parquet"
    table = pq.read_table(path)
    tokens = table.column("tokens").to_pylist()
    flat = [token.encode("utf-8") for row in tokens for token in row]
    focus = table.column("focus")[0].as_py()
    flat[focus] = b"\xff\xfebad" + flat[focus]
    offsets = np.zeros(len(flat) + 1, dtype=np.int32)
    np.cumsum([len(token) for token in flat], out=offsets[1:])
    values = pa.Array.from_buffers(
        pa.string(), len(flat), [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(flat))]
    )
    list_offsets = np.zeros(len(tokens) + 1, dtype=np.int32)
    np.cumsum([len(row) for row in tokens], out=list_offsets[1:])
    column = pa.ListArray.from_arrays(pa.array(list_offsets), values)
    table = table.set_column(table.schema.get_field_index("tokens"), "tokens", column)
    pq.write_table(table, path, row_group_size=8192)
    manifest = json.loads((map_dir / "manifest.json").read_text())
    for entry in manifest["files"].values():
        if entry["name"] == path.name:
            entry["size"] = path.stat().st_size
    (map_dir / "manifest.json").write_text(json.dumps(manifest))


async def test_invalid_utf8_tokens_render_as_replacement(tmp_path: Path) -> None:
    map_dir = build_synthetic_map(tmp_path / "bad", n=60)
    corrupt_focus_token(map_dir)
    model = MapModel.open(map_dir)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        first = app.query_one(ContextList).render_line(0).text  # row 0 has the highest activation
        assert "\ufffd\ufffdbad" in first
        check_inert(first)


async def test_a_big_node_scrolls_to_the_end_without_blocking(big_map: Path) -> None:
    model = MapModel.open(big_map)
    rows = model.members_by_activation(model.root.node_id)
    last_focus = focus_core(MapModel.open(big_map), int(rows[-1]))  # read by another model, before the gate
    store = model.contexts
    gate = threading.Event()
    read_on: list[str] = []
    real_load = store.load

    def gated_load(rows: np.ndarray | list[int]) -> None:
        read_on.append(threading.current_thread().name)
        assert threading.current_thread() is not threading.main_thread()
        gate.wait(timeout=30)
        real_load(rows)

    store.load = gated_load  # type: ignore[method-assign]
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        contexts = app.query_one(ContextList)
        assert len(rows) == 100_000
        await pilot.pause()
        # the root's first page is the opening file's: drawn while every read waits at the gate
        assert PLACEHOLDER not in "".join(lines(contexts))
        assert format_activation(model.max_activation) in lines(contexts)[0]

        await pilot.press("end")  # the UI answers while the worker is held
        assert contexts.cursor == len(rows) - 1
        await pilot.press("k", "j")
        assert contexts.cursor == len(rows) - 1
        last = lines(contexts)[-1]
        assert last.startswith("▸" + format_activation(float(model.activations[rows[-1]])))
        assert PLACEHOLDER in last

        gate.set()
        await settle(pilot)
        last = lines(contexts)[-1]
        assert PLACEHOLDER not in last
        assert last_focus in last
        assert read_on and all(name != threading.main_thread().name for name in read_on)


def test_row_groups_read_from_many_threads_at_once(big_map: Path) -> None:
    """Two context workers can overlap (a cancelled one runs on): their reads of one contexts file
    must not run at the same time (pyarrow's ParquetFile crashed the process when they did)."""
    reference = MapModel.open(big_map)
    n = reference.n_contexts
    wanted = [min(n - 1, i * n // 8 + k) for i in range(8) for k in range(2)]  # every row group, twice
    expected = {row: reference.contexts.fetch(row) for row in wanted}
    for _ in range(5):
        store = MapModel.open(big_map).contexts
        start = threading.Barrier(len(wanted))
        failures: list[BaseException] = []

        def read(
            row: int,
            store: ContextStore = store,
            start: threading.Barrier = start,
            failures: list[BaseException] = failures,
        ) -> None:
            try:
                start.wait()
                store.load([row])
                assert store.get(row) == expected[row]
            except BaseException as error:  # reported below, from the test's thread
                failures.append(error)

        threads = [threading.Thread(target=read, args=(row,)) for row in wanted]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not failures


async def test_the_bottom_border_says_which_rows_are_in_view(plain_map: Path) -> None:
    model = MapModel.open(plain_map)
    app = Host(model)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        contexts = app.query_one(ContextList)
        n_rows = len(model.members_by_activation(model.root.node_id))
        height = contexts.scrollable_content_region.height
        assert contexts.border_subtitle == f"1–{height} of {n_rows:,}"
        await pilot.press("pagedown", "pagedown")
        await settle(pilot)
        top = round(contexts.scroll_offset.y)
        assert top > 0
        assert contexts.border_subtitle == f"{top + 1}–{top + height} of {n_rows:,}"
        await pilot.press("end")
        await settle(pilot)
        assert contexts.border_subtitle == f"{n_rows - height + 1}–{n_rows} of {n_rows:,}"
        # A node that fits in the view needs no position.
        small = next(n for n in model.nodes.values() if 0 < n.size < height)
        contexts.show_node(small.node_id)
        await settle(pilot)
        assert contexts.border_subtitle is None
