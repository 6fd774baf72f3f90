"""vista_tui.core.cross_sae: a latent's matches from the store's match tables, matched nodes between two
maps of one corpus, and the child overlay's ranks and legend."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cross_sae_store import LONELY, NARROW, WIDE, CrossSaeStore, cross_sae_store
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.cross_sae import (
    MIN_JACCARD,
    NO_MATCH_TABLE,
    TreeSide,
    build_command,
    child_overlay,
    match_nodes,
    read_latent_matches,
    tree_side,
)
from vista_tui.core.model import MapModel
from vista_tui.mapdata import MapCorruptError, Store
from vista_tui.mapdata.children import read_children
from vista_tui.mapdata.matches import match_id_for


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> CrossSaeStore:
    return cross_sae_store(tmp_path_factory.mktemp("cross-sae-core"))


# -- matches -----------------------------------------------------------------------------------


def test_matches_from_side_a_list_neighbours_partner_and_maps(store: CrossSaeStore) -> None:
    reading = read_latent_matches(Store(store.root), NARROW, 42)
    assert reading.message is None and reading.tables == (match_id_for(NARROW, WIDE),)
    by_latent = {m.latent: m for m in reading.matches}
    assert [m.latent for m in reading.matches] == [1234, 77, 1500, 9]  # partner first, then decoder cosine
    assert by_latent[1234].one_to_one and not any(by_latent[j].one_to_one for j in (77, 1500, 9))
    assert by_latent[1234].decoder_cosine == pytest.approx(0.83, abs=1e-6)
    assert by_latent[1500].encoder_cosine == pytest.approx(0.50, abs=1e-6)
    assert math.isnan(by_latent[77].encoder_cosine)
    assert by_latent[1234].map_path == store.map_dir("wide-1234")
    assert by_latent[77].map_path == store.map_dir("wide-77")
    assert by_latent[1500].map_path is None
    assert by_latent[1500].build_command == f"vista build --sae {WIDE} --latents 1500"
    assert {m.d_sae for m in reading.matches} == {2048}


def test_matches_from_side_b_use_the_reverse_lookup(store: CrossSaeStore) -> None:
    reading = read_latent_matches(Store(store.root), WIDE, 77)
    assert [(m.latent, m.one_to_one, m.sae) for m in reading.matches] == [(6, True, NARROW), (42, False, NARROW)]
    assert reading.matches[0].decoder_cosine == pytest.approx(0.9, abs=1e-6)


def test_no_table_and_unreadable_table_are_one_line(store: CrossSaeStore, tmp_path: Path) -> None:
    assert read_latent_matches(Store(store.root), LONELY, 5).message == NO_MATCH_TABLE.format(sae=LONELY)
    copy = tmp_path / "store"
    shutil.copytree(store.root / "matches", copy / "matches")
    (copy / "matches" / match_id_for(NARROW, WIDE) / "matches.parquet").write_bytes(b"not parquet")
    reading = read_latent_matches(Store(copy), NARROW, 42)
    assert reading.matches == () and reading.message is not None
    assert "matches.parquet" in reading.message and "\n" not in reading.message


def test_build_command_names_a_local_sae_by_path(tmp_path: Path) -> None:
    assert build_command("gemma-scope-2b-pt-res/layer_20/width_16k/canonical", 5) == (
        "vista build --sae gemma-scope-2b-pt-res/layer_20/width_16k/canonical --latents 5"
    )
    local = tmp_path / "my sae"
    local.mkdir()
    assert build_command(str(local), 7) == f"vista build --sae-path '{local}' --latents 7"


# -- matched nodes -----------------------------------------------------------------------------


def side(ids: list[str], nodes: dict[str, list[int]]) -> TreeSide:
    return TreeSide(ids, list(nodes), {n: np.array(rows, dtype=np.int64) for n, rows in nodes.items()})


def test_jaccard_ties_and_threshold() -> None:
    ids = [f"c{i}" for i in range(20)]
    a = side(ids, {"root": list(range(20)), "x": [0, 1, 2, 3], "y": [10, 11], "z": [19]})
    # In B the same contexts sit at other rows: matching goes by id, not row.
    b_ids = [*reversed(ids[:19]), "elsewhere"]
    row = {c: i for i, c in enumerate(b_ids)}
    b = side(
        b_ids,
        {
            "top": [row[c] for c in ids[:19]] + [19],
            "p": [row[f"c{i}"] for i in (0, 1, 2, 3, 4, 5)],  # x: 4 shared of 6 → 0.667
            "q": [row[f"c{i}"] for i in (0, 1, 2, 3, 6, 7)],  # x: 0.667 too, later: loses the tie
            "r": [row["c10"]],  # y: 1/2
            "s": [row["c11"]],  # y: 1/2 too, later: loses the tie
        },
    )
    forward, backward = match_nodes(a, b)
    assert forward["root"].node_id == "top" and forward["root"].shared == 19
    assert forward["root"].jaccard == pytest.approx(19 / 21)
    assert forward["x"].node_id == "p" and forward["x"].jaccard == pytest.approx(4 / 6)
    assert forward["y"].node_id == "r" and forward["y"].shared == 1
    # z's one context (c19) is not in B: nothing shares it.
    assert forward["z"].node_id is None and forward["z"].jaccard == 0.0
    assert backward["p"].node_id == "x" and backward["q"].node_id == "x"
    # A node with a context that A lacks: the union counts it (c0 with x: 1 shared of 5).
    tiny = side(b_ids, {"top": list(range(20)), "lonely": [19, row["c0"]]})
    backward = match_nodes(a, tiny)[1]
    assert backward["lonely"].node_id == "x" and backward["lonely"].jaccard == pytest.approx(1 / 5)
    # Below the threshold there is no matching node, though the best is still reported.
    one = match_nodes(side(ids, {"one": [0]}), side(ids, {"all": list(range(20))}))[0]["one"]
    assert MIN_JACCARD > 1 / 20
    assert one.node_id is None and one.jaccard == pytest.approx(1 / 20) and one.shared == 1


def brute_force(a: MapModel, b: MapModel, node_id: str) -> tuple[str | None, float, int]:
    mine = {a.reader.context_ids[r] for r in a.nodes[node_id].members}
    order = b.walk()
    best: tuple[float, int, int] = (-1.0, 0, 0)
    found: tuple[str | None, float, int] = (None, 0.0, 0)
    for k, other in enumerate(order):
        theirs = {b.reader.context_ids[r] for r in b.nodes[other].members}
        score = len(mine & theirs) / len(mine | theirs)
        key = (score, -b.nodes[other].depth, -k)
        if key > best:
            best, found = key, (other, score, len(mine & theirs))
    node, score, shared = found
    return (node if score >= MIN_JACCARD else None), score, shared


def test_matching_equals_brute_force_on_two_different_trees(tmp_path: Path) -> None:
    a = MapModel.open(build_synthetic_map(tmp_path / "a", n=240, seed=0, latent=1))
    b = MapModel.open(build_synthetic_map(tmp_path / "b", n=180, seed=3, latent=2))
    forward, backward = match_nodes(tree_side(a), tree_side(b))
    assert set(forward) == set(a.nodes) and set(backward) == set(b.nodes)
    for node_id, match in forward.items():
        expected, score, shared = brute_force(a, b, node_id)
        assert (match.node_id, match.shared) == (expected, shared)
        assert match.jaccard == pytest.approx(score)
    for node_id, match in backward.items():
        assert match.node_id == brute_force(b, a, node_id)[0]
    assert any(m.node_id is not None for m in forward.values())


# -- children ----------------------------------------------------------------------------------


def test_overlay_ranks_follow_the_root_and_the_dominant_child(store: CrossSaeStore) -> None:
    model = MapModel.open(store.map_dir("narrow"))
    children = read_children(store.map_dir("narrow"))
    assert children is not None
    overlay = child_overlay(children, model.n_contexts, model.root.node_id, model.walk())
    root = children.nodes[model.root.node_id]
    assert overlay.order[: len(root.children)] == tuple(c.latent for c in root.children if c.dominant_share > 0)
    for row in range(model.n_contexts):
        dominant = children.dominant(row)
        assert overlay.ranks[row] == (overlay.order.index(dominant) if dominant >= 0 else -1)
    # 1234 dominates the muscle nodes and classical music: several nodes, all listed.
    assert len(overlay.dominated[1234]) >= 4
    assert all(children.nodes[n].dominant.latent == 1234 for n in overlay.dominated[1234])  # type: ignore[union-attr]
    lines = overlay.lines(model.root.node_id, model.title)
    assert lines[0].text.startswith(f"latent {overlay.order[0]} · cos ")
    assert lines[-1].rank == -1 and lines[-1].text.startswith("no child fires: ")


def test_overlay_refuses_a_children_file_of_another_map(store: CrossSaeStore) -> None:
    model = MapModel.open(store.map_dir("wide-1234"))
    children = read_children(store.map_dir("narrow"))
    assert children is not None
    with pytest.raises(MapCorruptError, match=r"children\.json has 240 contexts but the map has 200"):
        child_overlay(children, model.n_contexts, model.root.node_id, model.walk())


def test_a_demo_map_without_children_is_told_the_demo_command() -> None:
    from pipeline.demo.run import DEMO_PREFIX
    from vista_tui.core.cross_sae import NO_CHILDREN, no_children_message

    assert "vista demo --wide" in no_children_message(f"{DEMO_PREFIX}d2048_L702")
    assert no_children_message("gemma-2-2b_h12_res-16k_L1234") == NO_CHILDREN
