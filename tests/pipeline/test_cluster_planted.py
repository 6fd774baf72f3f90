"""The cluster tree recovers planted senses at its first level and sub-senses at its second.

The data (tests/helpers/planted.py) is built so that HDBSCAN's condensed tree is a chain: the
far senses split off one by one before the near ones separate. Lifting the dominant child
must put all six senses side by side under the root, and a single dense blob must stay
one cluster.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from pipeline import cluster
from pipeline.cluster import ClusterConfig, ClusterTree
from tests.helpers.planted import NOISE, SENSES, Planted, gaussian_blob, planted_codes, planted_layout
from vista_tui.mapdata import ClusterNode

MIN_ARI = 0.9


def level_labels(tree: ClusterTree, parent: ClusterNode, n_rows: int) -> np.ndarray:
    """For each row, the index of the child of `parent` that holds it (-1 outside `parent`)."""
    labels = np.full(n_rows, -1)
    for index, child in enumerate(tree.children(parent.node_id)):
        labels[child.members] = index
    return labels


def first_level_ari(tree: ClusterTree, planted: Planted) -> float:
    """ARI of the root's children against the planted senses, over the planted (non-noise) rows.

    Rows the tree puts in a noise node keep that node as their label, so they count against it.
    """
    labels = level_labels(tree, tree.root, len(planted.sense))
    keep = planted.sense != NOISE
    return float(adjusted_rand_score(planted.sense[keep], labels[keep]))


def second_level_ari(tree: ClusterTree, planted: Planted, sense: int) -> float:
    """ARI of the sub-tree under the first-level node holding most of `sense` against its sub-senses."""
    rows = np.flatnonzero(planted.sense == sense)
    first_level = tree.children(tree.root.node_id)
    holder = max(first_level, key=lambda node: np.isin(rows, node.members).sum())
    labels = level_labels(tree, holder, len(planted.sense))
    return float(adjusted_rand_score(planted.sub_sense[rows], labels[rows]))


COMPOSITE = [index for index, sense in enumerate(SENSES) if sense.sub_senses > 1]


@pytest.fixture(scope="module")
def layout_tree() -> tuple[ClusterTree, Planted]:
    planted = planted_layout(seed=0)
    return cluster.run(ClusterConfig(), planted.xy, planted.activations, planted.context_ids), planted


def test_first_level_is_the_six_senses(layout_tree: tuple[ClusterTree, Planted]) -> None:
    tree, planted = layout_tree
    first = [node for node in tree.children(tree.root.node_id) if node.kind == "cluster"]
    assert len(first) == len(SENSES)
    assert first_level_ari(tree, planted) >= MIN_ARI


@pytest.mark.parametrize("sense", COMPOSITE)
def test_second_level_is_the_sub_senses(layout_tree: tuple[ClusterTree, Planted], sense: int) -> None:
    tree, planted = layout_tree
    assert second_level_ari(tree, planted, sense) >= MIN_ARI


def test_without_lifting_the_senses_sit_in_a_chain() -> None:
    """The same data with lifting off (share 1.0): the old chain, so the test above tests the lift."""
    planted = planted_layout(seed=0)
    tree = cluster.run(ClusterConfig(lift_share=1.0), planted.xy, planted.activations, planted.context_ids)
    first = [node for node in tree.children(tree.root.node_id) if node.kind == "cluster"]
    assert max(node.size for node in first) > 0.75 * tree.root.size
    assert first_level_ari(tree, planted) < MIN_ARI


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_recover_the_senses_too(seed: int) -> None:
    planted = planted_layout(seed=seed)
    tree = cluster.run(ClusterConfig(), planted.xy, planted.activations, planted.context_ids)
    assert first_level_ari(tree, planted) >= MIN_ARI
    assert all(second_level_ari(tree, planted, sense) >= MIN_ARI for sense in COMPOSITE)


def test_lifted_clusters_keep_their_ids(layout_tree: tuple[ClusterTree, Planted]) -> None:
    """Senses and sub-senses sat deeper in the chain; lifted, they keep their ids (same members,
    same hash), so annotations made on them survive the rebuild."""
    tree, planted = layout_tree
    chain = cluster.run(
        ClusterConfig(lift_share=1.0, max_depth=6), planted.xy, planted.activations, planted.context_ids
    )
    lifted = {node.node_id for node in tree.nodes if node.kind == "cluster"}
    assert lifted <= {node.node_id for node in chain.nodes if node.kind == "cluster"}
    assert tree.root.node_id == chain.root.node_id


def test_max_depth_counts_real_splits(layout_tree: tuple[ClusterTree, Planted]) -> None:
    tree, planted = layout_tree
    shallow = cluster.run(ClusterConfig(max_depth=1), planted.xy, planted.activations, planted.context_ids)
    assert shallow.depth == 1
    assert sum(node.kind == "cluster" for node in shallow.nodes) == len(SENSES)
    # The pass-through levels of the chain cost no depth: depth 1 is the full tree's first level.
    assert [node.node_id for node in shallow.children(shallow.root.node_id)] == [
        node.node_id for node in tree.children(tree.root.node_id)
    ]
    two = cluster.run(ClusterConfig(max_depth=2), planted.xy, planted.activations, planted.context_ids)
    assert second_level_ari(two, planted, COMPOSITE[0]) >= MIN_ARI


@pytest.mark.parametrize(("n", "seed"), [(500, 0), (1000, 1), (1000, 2), (1500, 2), (3000, 2)])
def test_a_single_blob_has_no_first_level_split(n: int, seed: int) -> None:
    blob = gaussian_blob(n, seed)
    tree = cluster.run(ClusterConfig(), blob.xy, blob.activations, blob.context_ids)
    assert [node.kind for node in tree.children(tree.root.node_id)] == []
    assert tree.leaf_of == [tree.root.node_id] * n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_dense_core_keeps_its_satellite_and_is_not_split(seed: int) -> None:
    """One blob holding ~95 % of the contexts and a small far cluster: both shown, the blob whole."""
    blob = gaussian_blob(1500, seed)
    rng = np.random.default_rng(100 + seed)
    xy = np.concatenate([blob.xy, rng.normal((1.5, 0.5), 0.01, size=(80, 2))])
    ids = [*blob.context_ids, *(f"satellite-{seed}-{row:03d}" for row in range(80))]
    tree = cluster.run(ClusterConfig(), xy, np.ones(len(ids)), ids)
    first = sorted((node for node in tree.children(tree.root.node_id) if node.kind == "cluster"), key=lambda n: n.size)
    assert len(first) == 2
    satellite, core = first
    assert satellite.size == 80 and np.all(satellite.members >= 1500)
    assert core.size >= 1000 and np.all(core.members < 1500)
    assert tree.children(core.node_id) == []


@pytest.mark.slow
def test_planted_codes_through_the_layout(umap_warm: None) -> None:
    """The map's path: SAE-like codes -> VISTA distance + UMAP -> the cluster tree."""
    from pipeline import layout

    planted = planted_codes(seed=0)
    xy = layout.run(layout.LayoutConfig(), planted.codes, planted.activations)
    tree = cluster.run(ClusterConfig(), xy, planted.activations, planted.context_ids)
    assert first_level_ari(tree, planted) >= MIN_ARI
    assert all(second_level_ari(tree, planted, sense) >= MIN_ARI for sense in COMPOSITE)
