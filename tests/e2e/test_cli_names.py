"""Naming maps and nodes on the command line: `vista tree`, ids in `summary` and `list`, map and node
names every command takes, the store from any folder of a checkout, and how a build says to open
what it built."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, assert_one_line_error, vista
from tests.helpers.isolation import no_user_config  # noqa: F401  (autouse: no user config leaks in)
from tests.helpers.renamed_nodes import child_ids, rename_nodes
from tests.helpers.small_map import small_map
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.cli import pipeline as cli_pipeline
from vista_tui.core.node_names import NodeNames
from vista_tui.core.titles import latent_title, node_title
from vista_tui.mapdata import MapReader

MAP = "minilm_h3_demo-sae_L702"
LONG = "sentence-transformers-all-minilm-l6-v2_h3_gemma-scope-2b-pt-res_L1702"


def at_80(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`vista ARGS` printing to a pipe 80 columns wide (from the repository root, or from `cwd`)."""
    env = dict(os.environ, COLUMNS="80")
    if cwd is None:
        return vista(*args, env=env)
    env["PYTHONPATH"] = str(ROOT)
    env.pop("VISTA_CACHE", None)
    return subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store with a two-level synthetic map of latent 702 and a tiny one of latent 7 with a long id."""
    build_synthetic_map(tmp_path / "maps" / MAP, n=240, seed=0, latent=702)
    small_map(tmp_path / "maps" / LONG)
    return tmp_path


def names_of(store: Path) -> NodeNames:
    """The synthetic map's node names."""
    return NodeNames(MapReader(store / "maps" / MAP).tree, MAP)


def test_tree_prints_every_node_with_its_path_id_size_and_title(store: Path) -> None:
    names = names_of(store)
    done = at_80("tree", MAP, "--cache", str(store))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert f"{MAP}  latent 702 · 240 contexts · {len(names.paths)} nodes, depth 2" in lines[0]
    for node_id in names.walk():
        node = names.nodes[node_id]
        line = next(line for line in lines if line.split()[:2] == [names.paths[node_id], names.short[node_id]])
        assert line.split()[2] == f"{node.size:,}" and line.split()[3] == f"{node.mean_activation:.2f}"
        assert str(len(names.children[node_id])) == line.split()[4]
        # The root is titled as `vista summary` titles the latent (focus tokens first), the rest as in the explorer.
        assert (latent_title(node) if node_id == names.root_id else node_title(node, 6))[:20] in line
    assert "1.3 " in done.stdout and "│  └─ " in done.stdout  # the tree's guides, by depth

    shallow = at_80("tree", MAP, "--depth", "1", "--cache", str(store))
    assert shallow.returncode == 0, shallow.stderr
    shown = [node_id for node_id in names.walk() if names.nodes[node_id].depth <= 1]
    for node_id in names.walk():
        assert (names.short[node_id] in shallow.stdout) == (node_id in shown)
    assert f"… {len(names.paths) - len(shown)} deeper nodes not shown (--depth 1)" in shallow.stdout
    assert_one_line_error(at_80("tree", MAP, "--depth", "-1", "--cache", str(store)), "--depth")


def test_summary_shows_each_listed_clusters_short_id(store: Path) -> None:
    names = names_of(store)
    done = at_80("summary", MAP, "--cache", str(store))
    assert done.returncode == 0, done.stderr
    for node_id in [names.root_id, *names.children[names.root_id]]:
        line = next(line for line in done.stdout.splitlines() if names.short[node_id] in line)
        assert line.split()[0] == str(names.nodes[node_id].size)


def test_list_at_80_columns_shows_whole_ids(store: Path, tmp_path: Path) -> None:
    done = at_80("list", "--cache", str(store))  # too narrow for the table: two lines a map, the id alone
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert LONG in lines and MAP in lines
    assert lines[lines.index(MAP) + 1].startswith("  latent 702 · 240 contexts · synthetic-model · SAE ")
    short = tmp_path / "short"
    build_synthetic_map(short / "maps" / MAP, n=120, seed=0, latent=702)
    small_map(short / "maps" / "m1")
    done = at_80("list", "--cache", str(short))
    assert done.returncode == 0, done.stderr
    assert MAP in done.stdout.splitlines() and "m1" in done.stdout.splitlines()
    wide = vista("list", "--cache", str(short), env=dict(os.environ, COLUMNS="200"))  # room: a table
    row = next(line for line in wide.stdout.splitlines() if MAP in line)
    assert row.startswith(f"│ {MAP} │") and "synthetic-model" in row


def test_maps_by_prefix_suffix_or_latent_in_every_command(store: Path) -> None:
    cache = ("--cache", str(store))
    for name in ("702", "L702", "minilm", "demo-sae_L702"):
        done = vista("summary", name, *cache)
        assert done.returncode == 0, (name, done.stderr)
        assert done.stdout.startswith(MAP)
    assert vista("tree", "L702", *cache).returncode == 0
    assert vista("annotate", "702", "root", *cache).stdout.startswith(names_of(store).root_id)
    assert vista("triage-status", "minilm", *cache).stdout.startswith(f"{MAP}: 0 / ")
    assert vista("summary", "7", *cache).stdout.startswith(LONG)  # latent 7, the only one
    assert_one_line_error(vista("summary", "02", *cache), "ambiguous", MAP, LONG, "vista list")  # both end in 02


def test_node_prefixes_and_paths_in_annotate_and_render(store: Path) -> None:
    names = names_of(store)
    cache = ("--cache", str(store))
    target = names.children[names.children[names.root_id][0]][2]  # path 1.3
    done = vista("annotate", MAP, "1.3", "--status", "junk", *cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"saved {target} status=junk")
    other = next(n for n in names.walk()[1:] if not n[0].isdigit() and n != target)
    assert vista("annotate", MAP, other[:4], "--tag", "four", *cache).stdout.startswith(f"saved {other} ")

    database = store / "maps" / MAP / "annotations.sqlite"
    before = database.read_bytes()
    line = assert_one_line_error(vista("annotate", MAP, other[:3], "--status", "junk", *cache), "too short")
    assert f"{names.short[other]} ({names.paths[other]})" in line and f"`vista tree {MAP}`" in line
    assert database.read_bytes() == before
    assert_one_line_error(vista("render", MAP, "zzzz", *cache), "has no node 'zzzz'", f"`vista tree {MAP}`")
    assert_one_line_error(vista("render", MAP, "1.9", *cache), "no node at path 1.9", "node 1 has 3 children")


def test_an_ambiguous_prefix_is_refused_listing_the_candidates(store: Path) -> None:
    map_dir = store / "maps" / MAP
    first, second = child_ids(map_dir)[:2]
    rename_nodes(map_dir, {first: "abcd" + "1" * 12, second: "abcd" + "2" * 12})
    line = assert_one_line_error(
        vista("annotate", MAP, "abcd", "--status", "junk", "--cache", str(store)), "ambiguous", "2 ids start with"
    )
    assert "abcd1111 (" in line and "abcd2222 (" in line and "`vista tree" in line
    assert not (map_dir / "annotations.sqlite").exists()
    done = vista("annotate", MAP, "abcd2", "--status", "junk", "--cache", str(store))
    assert done.stdout.startswith("saved abcd2222")


def test_annotate_0_is_the_root_never_a_node_picked_by_its_first_digit(store: Path) -> None:
    """`vista annotate MAP 0` once overwrote whichever node's id began with 0."""
    map_dir = store / "maps" / MAP
    zero = "0" + "e" * 15
    rename_nodes(map_dir, {MapReader(map_dir).root.node_id: "f" * 16, child_ids(map_dir)[1]: zero})
    cache = ("--cache", str(store))
    done = vista("annotate", MAP, "0", "--status", "junk", *cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("saved ffffffffffffffff status=junk")
    assert vista("annotate", MAP, zero, *cache).stdout.endswith("(not annotated)\n")
    assert_one_line_error(vista("annotate", MAP, "0e", "--status", "junk", *cache), "too short", "0eeeeeee")


def test_label_takes_node_names_as_every_command_does(store: Path) -> None:
    from pipeline.cli import label_targets
    from vista_tui.core.node_names import NodeNameError

    names = names_of(store)
    first = names.children[names.root_id][0]
    map_dir = store / "maps" / MAP
    assert label_targets(map_dir, ["1", "root", first[:6], "0"]) == [first, names.root_id]
    with pytest.raises(NodeNameError, match="too short"):
        label_targets(map_dir, ["ab"])


def test_the_checkout_store_is_found_from_a_subfolder(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "cache").mkdir(parents=True)
    (checkout / "cache" / "README.md").write_text("the store")
    (checkout / "pyproject.toml").write_text('[project]\nname = "vista-tui"\n')
    (checkout / "vista_tui").mkdir()
    small_map(checkout / "cache" / "maps" / "m1")
    done = at_80("list", cwd=checkout / "vista_tui")
    assert done.returncode == 0, done.stderr
    assert f"maps in {checkout / 'cache' / 'maps'}" in done.stdout and "m1" in done.stdout


def test_build_and_demo_end_with_the_store_and_the_command_that_opens_each_map(
    store: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = [store / "maps" / MAP, store / "maps" / LONG]
    monkeypatch.setattr(cli_pipeline, "pipeline_missing", lambda: None)
    monkeypatch.setattr(cli_pipeline, "run_pipeline", lambda command, args: (0, built))
    monkeypatch.delenv("VISTA_CACHE", raising=False)
    for command in ("build", "demo"):
        assert cli_pipeline.cmd_pipeline(command, ["--cache", str(store), "--no-open"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-3:] == [
            f"store: {store}",
            f"open with: vista explore {MAP} --cache {shlex.quote(str(store))}",
            f"           vista explore {LONG} --cache {shlex.quote(str(store))}",
        ]
    # the store `vista` finds by itself: no --cache to type
    monkeypatch.setenv("VISTA_CACHE", str(store))
    assert cli_pipeline.cmd_pipeline("build", []) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"open with: vista explore {MAP}",
        f"           vista explore {LONG}",
    ]
    # label prints the map it labelled, and no open command
    assert cli_pipeline.cmd_pipeline("label", [MAP]) == 0
    assert "open with" not in capsys.readouterr().out
