"""A real terminal: `vista explore` in tmux at 80x24, driven with send-keys, read with capture-pane."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from tests.helpers.tmux import TMUX, Tmux

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux not installed")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    build_synthetic_map(tmp_path / "maps" / "syn-plain", n=240, seed=0, latent=42)
    build_synthetic_map(tmp_path / "maps" / "syn-hostile", n=240, seed=3, latent=9, hostile=True)
    return tmp_path


def explore(store: Path, map_id: str) -> Iterator[Tmux]:
    command = [sys.executable, "-m", "vista_tui.cli", "explore", map_id, "--cache", str(store)]
    tmux = Tmux(command, store)
    try:
        yield tmux
    finally:
        tmux.kill()


@pytest.fixture
def plain_terminal(store: Path) -> Iterator[Tmux]:
    yield from explore(store, "syn-plain")


@pytest.fixture
def hostile_terminal(store: Path) -> Iterator[Tmux]:
    yield from explore(store, "syn-hostile")


def tree_pane(screen: str) -> str:
    """The left column (the cluster tree) of an 80-column screen."""
    return "\n".join(line[:33] for line in screen.splitlines()[1:11])


def test_drill_down_two_levels_and_back(plain_terminal: Tmux) -> None:
    tmux = plain_terminal
    tree = tree_pane(tmux.wait_for("music, melody"))
    assert "latent 42" in tree and "museum" in tree and "mustard" in tree and "(noise)" in tree
    tmux.keys("j", "l")  # into music: its sub-clusters unfold, the cursor on the first
    tree = tree_pane(tmux.wait_for("classical"))
    assert "folk" in tree and "classical" in tree and "jazz" in tree
    tmux.keys("l")  # a leaf: focus moves to its contexts
    tmux.keys("tab", "h", "h")  # back to the tree, up to music, fold it
    for _ in range(50):
        tree = tree_pane(tmux.screen())
        if "classical" not in tree:
            break
        time.sleep(0.2)
    assert "classical" not in tree and "music, melody" in tree
    tmux.keys("h")  # up to the root, which stays open
    assert "museum" in tree_pane(tmux.screen())
    tmux.keys("space")  # fold the root
    for _ in range(50):
        tree = tree_pane(tmux.screen())
        if "museum" not in tree:
            break
        time.sleep(0.2)
    assert "museum" not in tree and "latent 42" in tree
    tmux.keys("q")


def test_hostile_text_reaches_the_terminal_inert(hostile_terminal: Tmux) -> None:
    tmux = hostile_terminal
    tmux.wait_for("latent 9")  # the header, drawn from the manifest while the map is read
    tmux.wait_for("clusters")  # the map screen
    screen = tmux.wait_for("␛")  # its contexts, escapes shown as a visible placeholder (read lazily)
    assert "\x1b" not in screen and "\x07" not in screen
    # Nothing was interpreted: no clipboard write (OSC 52), no title change, screen not cleared.
    assert tmux.run("list-buffers").strip() == ""
    assert "owned" not in tmux.run("display-message", "-p", "#{pane_title}")
    assert "latent 9" in tmux.screen()
    tmux.keys("q")


def test_keys_typed_right_after_q_do_not_crash_the_exit(store: Path) -> None:
    """`q` then `s`, `t`, `c`, `?` in one burst: the app leaves cleanly (before, `s` opened the statistics
    screen during the teardown, or `t` read the closed annotation store, and the terminal showed a traceback)."""
    app = f"{sys.executable} -m vista_tui.cli explore syn-plain --cache {store}"
    tmux = Tmux(["sh", "-c", f"'{app}; echo EXIT=$?; sleep 60'"], store)
    try:
        tmux.wait_for("clusters")
        tmux.run("send-keys", "qstc?")  # one burst, as a fast typist would
        screen = tmux.wait_for("EXIT=")
        assert "EXIT=0" in screen and "Traceback" not in screen and "Error" not in screen
    finally:
        tmux.kill()
