"""A real terminal: the child overlay (C) of a map built with --also-sae, in tmux at 80x24."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.helpers.cross_sae_store import cross_sae_store
from tests.helpers.tmux import TMUX, Tmux

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux not installed")


def test_children_overlay_shows_its_legend(tmp_path: Path) -> None:
    store = cross_sae_store(tmp_path / "store")
    command = [sys.executable, "-m", "vista_tui.cli", "explore", "narrow", "--cache", str(store.root)]
    tmux = Tmux(command, tmp_path)
    try:
        tmux.wait_for("music, melody")
        assert "children ·" not in tmux.screen()
        tmux.keys("C")
        screen = tmux.wait_for("children · 2,048-wide syn-release/wide-2048")
        assert "latent 1234 · cos 0.83 · 30% of this node" in screen  # the heading names the SAE, a line its latent
        assert "■" in screen
        tmux.keys("C")
        tmux.wait_gone("children ·")
    finally:
        tmux.kill()
