"""Node names (`vista_tui.core.node_names`): paths in the explorer's order, id prefixes of 4 or more,
and one-line refusals that list the candidates; never a node picked by a short prefix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.renamed_nodes import child_ids, rename_nodes
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.model import MapModel
from vista_tui.core.node_names import NodeNameError, NodeNames, resolve_node, short_ids
from vista_tui.mapdata import ClusterNode, MapReader


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic map of two levels (four senses, their sub-senses, noise)."""
    return build_synthetic_map(tmp_path_factory.mktemp("names") / "maps" / "m", n=240, seed=0, latent=702)


def node(template: ClusterNode, node_id: str, parent: str | None, size: int, kind: str = "cluster") -> ClusterNode:
    """`template` with what naming reads replaced: id, parent, kind, size (members)."""
    members = np.arange(size, dtype=np.int32)
    return replace(template, node_id=node_id, parent_id=parent, kind=kind, members=members)  # type: ignore[arg-type]


def test_paths_count_children_from_one_in_the_explorers_order(map_dir: Path) -> None:
    model = MapModel.open(map_dir)
    names = model.names
    root = model.root.node_id
    first = model.children(root)[0]
    assert names.resolve("1") == first
    assert names.resolve("1.3") == model.children(first)[2]
    assert names.paths[model.children(first)[2]] == "1.3"
    last = model.children(root)[-1]
    assert model.nodes[last].kind == "noise" and names.paths[last] == str(len(model.children(root)))
    assert names.walk() == model.walk()  # the paths number what the explorer's tree shows
    assert names.resolve("root") == names.resolve("0") == names.resolve("ROOT") == root
    for node_id, path in names.paths.items():
        assert names.resolve(path) == node_id


def test_a_prefix_of_four_or_more_names_a_node(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    names = NodeNames(reader.tree, "m")
    for tree_node in reader.tree:
        assert names.resolve(tree_node.node_id) == tree_node.node_id
        assert names.resolve(names.short[tree_node.node_id]) == tree_node.node_id
    target = reader.tree[3].node_id
    prefix = next(target[:n] for n in range(4, 17) if sum(x.node_id.startswith(target[:n]) for x in reader.tree) == 1)
    assert resolve_node(reader.tree, "m", prefix) == target
    assert resolve_node(reader.tree, "m", prefix.upper()) == target


def test_a_prefix_under_four_characters_is_refused_with_its_candidates(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    names = NodeNames(reader.tree, "m")
    target = next(n.node_id for n in reader.tree[1:] if not n.node_id[0].isdigit())  # digits are a path
    for prefix in (target[:1], target[:3]):
        with pytest.raises(NodeNameError) as caught:
            names.resolve(prefix)
        message = str(caught.value)
        assert "\n" not in message and "too short" in message and "at least 4 characters" in message
        assert f"{names.short[target]} ({names.paths[target]})" in message  # a candidate, named both ways
        assert message.endswith("`vista tree m` shows every node's id and path")


def test_an_ambiguous_prefix_is_refused_listing_the_candidates(tmp_path: Path) -> None:
    map_dir = build_synthetic_map(tmp_path / "maps" / "m", n=240, seed=0)
    first, second, third = child_ids(map_dir)[:3]
    rename_nodes(map_dir, {first: "abcd" + "1" * 12, second: "abcd" + "2" * 12, third: "abce" + "3" * 12})
    names = NodeNames(MapReader(map_dir).tree, "m")
    with pytest.raises(NodeNameError) as caught:
        names.resolve("abcd")
    message = str(caught.value)
    assert "\n" not in message and "ambiguous" in message and "2 ids start with 'abcd'" in message
    assert "abcd1111" in message and "abcd2222" in message and "abce" not in message
    assert "`vista tree m`" in message
    assert names.resolve("abcd1") == "abcd" + "1" * 12
    assert names.resolve("abce") == "abce" + "3" * 12
    with pytest.raises(NodeNameError, match=r"too short.*3 ids start with 'abc': .*abcd1111"):
        names.resolve("abc")
    assert short_ids(names.nodes)["abcd" + "1" * 12] == "abcd1111"


def test_zero_is_the_root_never_the_node_whose_id_starts_with_zero(tmp_path: Path) -> None:
    """`vista annotate MAP 0` once wrote to whichever node's id began with 0."""
    map_dir = build_synthetic_map(tmp_path / "maps" / "m", n=240, seed=0)
    reader = MapReader(map_dir)
    zero_node = "0" + "e" * 15
    rename_nodes(map_dir, {reader.root.node_id: "f" * 16, child_ids(map_dir)[1]: zero_node})
    names = NodeNames(MapReader(map_dir).tree, "m")
    assert names.resolve("0") == "f" * 16
    with pytest.raises(NodeNameError, match="too short"):
        names.resolve("0e")
    with pytest.raises(NodeNameError) as caught:
        names.resolve("9")
    assert "no node at path 9" in str(caught.value) and "the root has" in str(caught.value)


def test_bad_paths_say_how_far_the_tree_goes(map_dir: Path) -> None:
    names = NodeNames(MapReader(map_dir).tree, "m")
    with pytest.raises(NodeNameError, match=r"no node at path 1\.9: node 1 has 3 children"):
        names.resolve("1.9")
    with pytest.raises(NodeNameError, match="counted from 1"):
        names.resolve("1.0")
    with pytest.raises(NodeNameError, match="empty"):
        names.resolve("  ")


def test_digits_that_are_a_path_and_an_id_prefix_are_refused(map_dir: Path) -> None:
    """A root with 1,300 children: `1234` is a path, and one id starts with it; neither is guessed."""
    template = MapReader(map_dir).tree[1]
    root = node(template, "f" * 16, None, 5000, "root")
    kids = [node(template, f"{index:04x}" + "a" * 12, root.node_id, 2000 - index) for index in range(1300)]
    kids[5].node_id = "1234" + "b" * 12  # the sixth child: path 6
    names = NodeNames([root, *kids], "m")
    with pytest.raises(NodeNameError) as caught:
        names.resolve("1234")
    message = str(caught.value)
    assert "ambiguous" in message and "the path 1234 is" in message and "1234bbbb (6)" in message
    assert names.resolve("1234b") == "1234" + "b" * 12
    assert names.resolve("6") == "1234" + "b" * 12
    assert names.resolve("1299") == kids[1298].node_id  # no id starts with 1299: the path
    with pytest.raises(NodeNameError, match=r"the path 0006 is 1234bbbb \(6\), and 1 id starts with '0006'"):
        names.resolve("0006")  # digits are a path even with a leading zero, and here an id prefix too
    assert names.resolve("0006a") == kids[6].node_id


def test_short_ids_are_eight_characters_or_as_many_as_tell_them_apart() -> None:
    ids = ["0123456789abcdef", "0123456789abffff", "fedcba9876543210"]
    assert short_ids(ids) == {
        "0123456789abcdef": "0123456789abc",
        "0123456789abffff": "0123456789abf",
        "fedcba9876543210": "fedcba98",
    }
