"""Labels, agreement and relabelling in the explorer, driven with the Pilot on a labelled synthetic map."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.llm_server import chat_server
from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tui import open_map, screen_text, tree_of
from vista_tui.mapdata import AGREEMENT_FILE, MapReader, StepRecord, Store, update_tree
from vista_tui.tui.app import VistaApp

RELABEL_SCRIPT = """
import sys
from vista_tui.mapdata import MapReader, StepRecord, update_tree

map_dir, node_id = sys.argv[1], sys.argv[sys.argv.index("--node") + 1]
reader = MapReader(map_dir)
nodes = reader.tree
for node in nodes:
    if node.node_id == node_id:
        node.labels.llm_label = "freshly relabelled sense"
        node.labels.label_status = "ok"
        node.labels.agreement = 0.99
update_tree(reader.path, reader.manifest, nodes, StepRecord("label", "fake", {}, {}, None))
"""

FAILING_SCRIPT = """
import sys
print("loading the labeller", file=sys.stderr)
print("LabelError: no API key in VISTA_LLM_KEY", file=sys.stderr)
sys.exit(2)
"""


@pytest.fixture
def labelled_map(tmp_path: Path) -> Path:
    """A labelled synthetic map whose top clusters' agreement runs against their size order."""
    map_dir = build_synthetic_map(tmp_path / "store" / "maps" / "syn-agree", n=240, seed=0, llm_labels=True)
    reader = MapReader(map_dir)
    nodes = reader.tree
    root = nodes[0].node_id
    tops = sorted((n for n in nodes if n.parent_id == root and n.kind != "noise"), key=lambda n: (-n.size, n.node_id))
    for rank, node in enumerate(tops):
        node.labels.agreement = 0.9 - 0.2 * rank if rank != 1 else float("nan")  # biggest agrees most
    update_tree(map_dir, reader.manifest, nodes, StepRecord("agreement", "test", {}, {}, None))
    (map_dir / AGREEMENT_FILE).write_text(
        json.dumps({"published": ["music"], "clusters": {n.node_id: 0.5 for n in tops}}), encoding="utf-8"
    )
    return map_dir


def app_for(map_dir: Path) -> VistaApp:
    return VistaApp(Store(map_dir.parent.parent), map_dir)


def messages(app: VistaApp) -> list[str]:
    return [str(n.message) for n in app._notifications]  # type: ignore[attr-defined]


async def test_labels_and_agreement_show_for_a_labelled_node(labelled_map: Path) -> None:
    app = app_for(labelled_map)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        text = screen_text(app)
        assert "published vs clusters:" in text  # the root shows the latent-level agreement
        node_id = next(n for n in screen.model.walk() if screen.model.nodes[n].labels.llm_label == "muscle sense")
        screen.jump_to(node_id)
        await pilot.pause()
        text = screen_text(app)
        assert "muscle sense" in text
        assert "an illustration of muscle" in text
        assert f"agreement: {screen.model.nodes[node_id].labels.agreement:.2f}" in text


async def test_d_lists_children_by_disagreement(labelled_map: Path) -> None:
    app = app_for(labelled_map)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        model = screen.model
        tops = [n for n in model.children(model.root.node_id) if model.nodes[n].kind != "noise"]
        await pilot.press("d")
        await pilot.pause()
        shown = [n for n in tree_of(app).rows if n in tops]
        scores = [model.nodes[n].labels.agreement for n in shown]
        finite = [s for s in scores if s == s]
        assert finite == sorted(finite) and scores[-1] != scores[-1]  # ascending, NaN last
        assert shown != tops  # the size order was the reverse
        text = screen_text(app)
        assert "disagreement order" in text
        lines = text.splitlines()
        positions = [next(i for i, line in enumerate(lines) if model.title(n)[:12] in line) for n in shown]
        assert positions == sorted(positions)
        await pilot.press("d")
        await pilot.pause()
        assert [n for n in tree_of(app).rows if n in tops] == tops
        assert "disagreement order" not in screen_text(app)


async def test_L_relabels_through_the_label_command(labelled_map: Path, tmp_path: Path) -> None:
    script = tmp_path / "fake_label.py"
    script.write_text(RELABEL_SCRIPT, encoding="utf-8")
    app = app_for(labelled_map)
    app.label_command = [sys.executable, str(script)]
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_map(pilot, app)
        node_id = next(n for n in screen.model.walk() if screen.model.nodes[n].labels.llm_label == "music sense")
        screen.jump_to(node_id)
        await pilot.pause()
        await pilot.press("L")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()
        text = screen_text(app)
        assert "freshly relabelled sense" in text
        assert "agreement: 0.99" in text
        assert "relabelled freshly relabelled sense" in messages(app)


async def relabel_failures(map_dir: Path, label_command: list[str]) -> list[str]:
    """Open the map, press `L` with this label command, wait for it; the toasts that say it failed."""
    app = app_for(map_dir)
    app.label_command = label_command
    async with app.run_test(size=(160, 48)) as pilot:
        await open_map(pilot, app)
        await pilot.press("L")
        await app.workers.wait_for_complete()
        await pilot.pause()
        return [m for m in messages(app) if "failed" in m]


async def test_L_failure_toasts_the_last_stderr_line(labelled_map: Path, tmp_path: Path) -> None:
    script = tmp_path / "failing_label.py"
    script.write_text(FAILING_SCRIPT, encoding="utf-8")
    failed = await relabel_failures(labelled_map, [sys.executable, str(script)])
    assert len(failed) == 1
    assert failed[0].endswith("LabelError: no API key in VISTA_LLM_KEY")
    assert "\n" not in failed[0]


async def test_L_against_a_404_toasts_the_url_and_the_v1_hint(labelled_map: Path) -> None:
    with chat_server() as server:
        root = server.base_url.removesuffix("/v1")
        command = [sys.executable, "-m", "pipeline", "label", "--base-url", root, "--no-agreement"]
        failed = await relabel_failures(labelled_map, command)
        assert len(server.requests) == 1
    assert len(failed) == 1 and "\n" not in failed[0]
    assert f"failed: the LLM endpoint answered HTTP 404 Not Found to POST {root}/chat/completions;" in failed[0]
    assert failed[0].endswith(f"does the base URL end in /v1? (e.g. --base-url {root}/v1)")
