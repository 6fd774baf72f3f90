"""Cluster tree: nesting, coverage, noise, and ids that survive a reshuffle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import cluster
from pipeline.cluster import ClusterConfig, ClusterTree
from vista_tui.mapdata import node_id_for


def nested_blobs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Blob A made of two sub-blobs, a far blob B, and uniform background noise."""
    rng = np.random.default_rng(seed)
    xy = np.concatenate(
        [
            rng.normal(0, 0.3, size=(120, 2)) + np.array([-3.0, 0.0]),  # A1
            rng.normal(0, 0.3, size=(120, 2)) + np.array([-1.5, 0.0]),  # A2
            rng.normal(0, 0.4, size=(180, 2)) + np.array([5.0, 0.0]),  # B
            rng.uniform(-7, 8, size=(40, 2)),  # background
        ]
    )
    activations = rng.gamma(2.0, 1.0, size=len(xy))
    ids = [f"ctx-{seed}-{row:04d}" for row in range(len(xy))]
    return xy, activations, ids


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray, list[str]]:
    return nested_blobs()


@pytest.fixture(scope="module")
def tree(blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> ClusterTree:
    xy, activations, ids = blobs
    return cluster.run(ClusterConfig(min_cluster_size=15), xy, activations, ids)


def children_of(tree: ClusterTree) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {node.node_id: [] for node in tree.nodes}
    for node in tree.nodes:
        if node.parent_id is not None:
            out[node.parent_id].append(node.node_id)
    return out


def test_root_first_parents_before_children(tree: ClusterTree, blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    root = tree.nodes[0]
    assert root.kind == "root" and root.depth == 0 and root.parent_id is None
    np.testing.assert_array_equal(root.members, np.arange(len(blobs[0])))
    seen = {root.node_id}
    by_id = {node.node_id: node for node in tree.nodes}
    for node in tree.nodes[1:]:
        assert node.parent_id in seen
        assert node.depth == by_id[node.parent_id].depth + 1
        assert node.kind in ("cluster", "noise")
        seen.add(node.node_id)
    assert len(seen) == len(tree.nodes)  # ids are unique


def test_nested_blobs_give_two_levels(tree: ClusterTree) -> None:
    clusters = [node for node in tree.nodes if node.kind == "cluster"]
    assert max(node.depth for node in clusters) >= 2
    top = sorted((n for n in clusters if n.depth == 1), key=lambda n: n.centroid[0])
    assert len(top) == 2  # A (left, holding the sub-blobs) and B (right)
    sub = [n for n in clusters if n.parent_id == top[0].node_id]
    assert len(sub) == 2
    assert all(n.size >= 100 for n in sub)
    assert 170 <= top[1].size <= 200


def test_every_row_sits_in_exactly_one_leaf(tree: ClusterTree) -> None:
    kids = children_of(tree)
    leaves = [node for node in tree.nodes if not kids[node.node_id]]
    counts = np.bincount(np.concatenate([leaf.members for leaf in leaves]), minlength=tree.root.size)
    assert np.all(counts == 1)
    for leaf in leaves:
        assert all(tree.leaf_of[row] == leaf.node_id for row in leaf.members)
    assert all(tree.leaf_of)


def test_parent_members_are_the_union_of_its_children(tree: ClusterTree) -> None:
    kids = children_of(tree)
    by_id = {node.node_id: node for node in tree.nodes}
    for node in tree.nodes:
        if not kids[node.node_id]:
            continue
        parts = np.concatenate([by_id[kid].members for kid in kids[node.node_id]])
        assert len(parts) == node.size  # disjoint
        np.testing.assert_array_equal(np.sort(parts), node.members)
        noise = [kid for kid in kids[node.node_id] if by_id[kid].kind == "noise"]
        assert len(noise) <= 1
        # no chain: a single child never repeats its parent
        assert not (len(kids[node.node_id]) == 1 and by_id[kids[node.node_id][0]].size == node.size)


def test_background_noise_gets_a_noise_node(tree: ClusterTree) -> None:
    noise = [node for node in tree.nodes if node.kind == "noise"]
    assert noise
    root_noise = [node for node in noise if node.parent_id == tree.root.node_id]
    assert len(root_noise) == 1
    assert root_noise[0].size >= 20  # most of the 40 background points
    assert all(node.stability == 0.0 for node in noise)


def test_ids_hash_the_members_and_fields_are_filled(
    tree: ClusterTree, blobs: tuple[np.ndarray, np.ndarray, list[str]]
) -> None:
    xy, activations, ids = blobs
    for node in tree.nodes:
        assert node.members.dtype == np.int32
        assert np.all(np.diff(node.members) > 0)
        assert node.node_id == node_id_for([ids[row] for row in node.members], node.kind)
        member_xy = xy[node.members]
        assert node.centroid == pytest.approx(tuple(member_xy.mean(axis=0)))
        assert node.bbox == pytest.approx((*member_xy.min(axis=0), *member_xy.max(axis=0)))
        assert node.mean_activation == pytest.approx(activations[node.members].mean())
        assert node.max_activation == pytest.approx(activations[node.members].max())
        assert node.labels.keywords == [] and node.labels.llm_label == ""
        if node.kind == "cluster":
            assert node.stability > 0


def test_ids_survive_a_row_permutation(tree: ClusterTree, blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    xy, activations, ids = blobs
    perm = np.random.default_rng(9).permutation(len(ids))
    shuffled = cluster.run(ClusterConfig(min_cluster_size=15), xy[perm], activations[perm], [ids[i] for i in perm])
    assert [node.node_id for node in shuffled.nodes] == [node.node_id for node in tree.nodes]
    leaf_by_context = dict(zip(ids, tree.leaf_of, strict=True))
    assert all(leaf_by_context[ids[i]] == leaf for i, leaf in zip(perm, shuffled.leaf_of, strict=True))


def test_same_input_same_tree(tree: ClusterTree, blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    again = cluster.run(ClusterConfig(min_cluster_size=15), *blobs)
    assert [n.node_id for n in again.nodes] == [n.node_id for n in tree.nodes]
    assert again.leaf_of == tree.leaf_of


def test_max_depth_one_keeps_only_the_top_level(blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    shallow = cluster.run(ClusterConfig(min_cluster_size=15, max_depth=1), *blobs)
    assert max(node.depth for node in shallow.nodes) == 1
    assert sum(node.kind == "cluster" for node in shallow.nodes) == 2


def test_equal_blobs_are_siblings() -> None:
    rng = np.random.default_rng(3)
    xy = np.concatenate([rng.normal(0, 0.3, size=(100, 2)) + centre for centre in ([-3, 0], [3, 0], [0, 5])])
    flat = cluster.run(ClusterConfig(min_cluster_size=15), xy, np.ones(300), [str(i) for i in range(300)])
    assert sorted(node.size for node in flat.nodes if node.depth == 1 and node.kind == "cluster") == [100, 100, 100]


def test_too_few_contexts_leave_the_root_alone() -> None:
    tree = cluster.run(ClusterConfig(), np.zeros((3, 2)), np.ones(3), ["a", "b", "c"])
    assert len(tree.nodes) == 1
    assert tree.leaf_of == [tree.root.node_id] * 3
    assert tree.root.node_id == node_id_for(["a", "b", "c"], "root")


def test_auto_cluster_size() -> None:
    assert ClusterConfig().cluster_size_for(100) == 5
    assert ClusterConfig().cluster_size_for(4000) == 80
    assert ClusterConfig(min_cluster_size=7).cluster_size_for(4000) == 7


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"min_cluster_size": 1}, "min_cluster_size"),
        ({"min_samples": 0}, "min_samples"),
        ({"max_depth": 0}, "max_depth"),
        ({"min_persistence": 1.0}, "min_persistence"),
        ({"lift_share": 0.4}, "lift_share"),
        ({"lift_share": 1.5}, "lift_share"),
        ({"lift_share": float("nan")}, "lift_share"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_names_the_bad_value(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ClusterConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_refused(blobs: tuple[np.ndarray, np.ndarray, list[str]]) -> None:
    xy, activations, ids = blobs
    with pytest.raises(ValueError, match="xy"):
        cluster.run(ClusterConfig(), xy[:-1], activations, ids)
    with pytest.raises(ValueError, match="activations"):
        cluster.run(ClusterConfig(), xy, activations[:-1], ids)
    with pytest.raises(ValueError, match="no contexts"):
        cluster.run(ClusterConfig(), np.zeros((0, 2)), np.zeros(0), [])


def test_build_option_lift_share(tmp_path: Path) -> None:
    from pipeline.cli import build_config_from_args, make_parser

    args = ["build", "--model", "minilm", "--hook", "3", "--sae-path", str(tmp_path), "--corpus", str(tmp_path)]
    parser = make_parser()
    assert build_config_from_args(parser.parse_args([*args, "--latents", "3"])).cluster.lift_share == 0.75
    chosen = build_config_from_args(parser.parse_args([*args, "--latents", "3", "--lift-share", "0.9"]))
    assert chosen.cluster.lift_share == 0.9
    with pytest.raises(ValueError, match="lift_share"):
        build_config_from_args(parser.parse_args([*args, "--latents", "3", "--lift-share", "0.3"]))
