"""A labelled child node with its agreement: LLM label | visual prompt | keywords side by side, as an SVG snapshot.

The map carries what `vista label` and its agreement step write (label, explanation, the LLM's
visual prompt, status ok, an agreement score), written through the real map writer by
tests/helpers/synthetic_map.py. Update after an intended change with
`pytest tests/tui/test_labels_snapshot.py --snapshot-update` and look at the SVG before committing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot

from tests.helpers.synthetic_map import READINGS, build_synthetic_map
from tests.helpers.tui import open_map, screen_text, selected_title
from vista_tui.mapdata import Store
from vista_tui.tui.app import VistaApp

TARGET = "muscle sense"
"""A top-level cluster (a child of the root) with an LLM label and an agreement score."""
EXPLANATION, VISUAL_PROMPT, AGREEMENT = READINGS["muscle"]


@pytest.fixture(scope="module")
def agreement_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding one labelled and scored map (no path of it shows on screen, only the map id)."""
    root = tmp_path_factory.mktemp("labels-snapshot-store")
    build_synthetic_map(root / "maps" / "syn-agreement", n=180, seed=1, latent=7, agreement=True)
    return root


def app_for(store: Path) -> VistaApp:
    return VistaApp(Store(store), store / "maps" / "syn-agreement")


async def select_by_keys(pilot: Pilot, title: str) -> None:
    """Press `j` down the tree until the node called `title` is selected, then let the panels settle."""
    app = pilot.app
    await open_map(pilot, app)  # type: ignore[arg-type]
    for _ in range(20):
        if selected_title(app) == title:  # type: ignore[arg-type]
            break
        await pilot.press("j")
        await pilot.pause()
    assert selected_title(app) == title  # type: ignore[arg-type]
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await pilot.pause()


async def test_labelled_child_shows_both_readings_and_agreement(agreement_store: Path) -> None:
    app = app_for(agreement_store)
    async with app.run_test(size=(160, 48)) as pilot:
        await select_by_keys(pilot, TARGET)
        text = screen_text(app)
        assert "not computed yet" not in text
        columns = label_columns(text)
        assert list(columns) == ["LLM label", "visual", "keywords"]
        assert columns["LLM label"] == f"{TARGET} {EXPLANATION}"
        assert columns["visual"] == VISUAL_PROMPT
        assert columns["keywords"] == "muscle, biceps, tendon, flex, strength"
        assert f"agreement: {AGREEMENT:.2f}" in text


def label_columns(text: str) -> dict[str, str]:
    """The labels panel's three columns, each heading with its wrapped cells joined back into one text."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if "LLM label" in line)
    bottom = next(i for i, line in enumerate(lines) if "agreement:" in line)
    left = lines[top].index("LLM label")
    rows = [[cell.strip() for cell in line[left:].split("│")] for line in lines[top:bottom]]
    return {heading: " ".join(" ".join(row[i] for row in rows[1:]).split()) for i, heading in enumerate(rows[0])}


def test_snapshot_labelled_child_with_agreement(snap_compare, agreement_store: Path) -> None:  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot) -> None:
        await select_by_keys(pilot, TARGET)

    assert snap_compare(app_for(agreement_store), terminal_size=(160, 48), run_before=run_before)
