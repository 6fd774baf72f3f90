"""`vista explore ATLAS`: the name resolved to a map or an atlas, and a 16,384-latent atlas in a real terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.atlas_fixture import build_atlas
from tests.helpers.cli import assert_one_line_error, vista
from tests.helpers.small_map import small_map
from tests.helpers.tmux import TMUX, Tmux
from vista_tui.cli.maps import find_map_or_atlas
from vista_tui.mapdata import MapNotFoundError, Store

N_LATENTS = 16_384


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a 16,384-latent atlas (maps for latents 0, 1, 2) and one plain map."""
    root = tmp_path_factory.mktemp("atlas-store")
    build_atlas(root, "syn-atlas-16k", n=N_LATENTS, maps=(0, 1, 2))
    small_map(Store(root).map_path("plain-map"))
    return root


def test_a_name_finds_a_map_else_an_atlas(big_store: Path) -> None:
    store = Store(big_store)
    assert find_map_or_atlas(store, "plain-map") == (store.map_path("plain-map"), None)
    assert find_map_or_atlas(store, "syn-atlas") == (None, store.atlas_path("syn-atlas-16k"))
    assert find_map_or_atlas(store, "16k") == (None, store.atlas_path("syn-atlas-16k"))
    atlas_dir = str(store.atlas_path("syn-atlas-16k"))
    assert find_map_or_atlas(store, atlas_dir) == (None, store.atlas_path("syn-atlas-16k"))
    with pytest.raises(MapNotFoundError) as caught:
        find_map_or_atlas(store, "nothing-like-it")
    message = str(caught.value)
    assert "\n" not in message and "no map 'nothing-like-it'" in message and "atlases: syn-atlas-16k" in message


def test_neither_a_map_nor_an_atlas_is_one_line_and_exit_2(big_store: Path) -> None:
    result = vista("explore", "nothing-like-it", "--cache", str(big_store))
    assert result.returncode == 2
    assert_one_line_error(result, "nothing-like-it", "syn-atlas-16k")


@pytest.fixture
def atlas_terminal(big_store: Path) -> Iterator[Tmux]:
    command = [sys.executable, "-m", "vista_tui.cli", "explore", "syn-atlas-16k", "--cache", str(big_store)]
    tmux = Tmux(command, big_store)
    try:
        yield tmux
    finally:
        tmux.kill()


@pytest.mark.skipif(TMUX is None, reason="tmux not installed")
def test_a_16k_atlas_opens_and_walks_in_a_real_terminal(atlas_terminal: Tmux) -> None:
    tmux = atlas_terminal
    tmux.wait_for("16,384 latents")  # the atlas's header, at once; the table follows from a worker
    screen = tmux.wait_for("1 of 16,384")  # the table's position line: the table is drawn
    lines = screen.splitlines()
    assert "16,384 latents" in screen
    assert lines[2].split()[:4] == ["latent", "density", "max", "ctx"]
    assert [line.split()[0] for line in lines[3:8]] == ["▸", "1", "2", "3", "4"]  # the cursor marks latent 0
    tmux.keys("G")
    tmux.wait_for("16,384 of 16,384")
    assert "16383" in tmux.screen()
    tmux.keys("g", "j", "Enter")  # latent 1's map, over the browser
    tmux.wait_for("syn-atlas-16k_L1 · latent 1")
    tmux.wait_for("─ clusters ─")  # the map itself, not its loading screen
    tmux.keys("BSpace")  # back to the browser, on latent 1
    screen = tmux.wait_for("2 of 16,384")
    assert "▸     1 " in screen
    tmux.keys("o")
    tmux.wait_for("sorted by density")
    tmux.keys("q")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "16,384" in tmux.screen():
        time.sleep(0.2)
