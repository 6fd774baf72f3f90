"""opening.npz: the same tree, columns and first page as the parquet files, or not used at all."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers.small_map import small_map
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import (
    OPENING_FILE,
    MapCorruptError,
    MapReader,
    StepRecord,
    context_from_table,
    rows_by_activation,
    update_tree,
)
from vista_tui.mapdata.opening import FIRST_PAGE
from vista_tui.mapdata.writer import TREE_FILE, tree_table


def _parquet_only(map_dir: Path) -> MapReader:
    """A reader that reads the parquet files, as for a map without an opening file."""
    reader = MapReader(map_dir)
    reader.__dict__["opening"] = None  # the cached_property, answered: "no opening file"
    return reader


def _drop_opening(map_dir: Path) -> None:
    manifest = json.loads((map_dir / "manifest.json").read_text())
    del manifest["files"]["opening"]
    (map_dir / "manifest.json").write_text(json.dumps(manifest))
    (map_dir / OPENING_FILE).unlink()


def _rows(nodes: list[Any]) -> list[dict[str, Any]]:
    """The tree as the tree file's rows, NaN made comparable."""
    return [
        {key: "NaN" if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
        for row in tree_table(nodes).to_pylist()
    ]


def _same_context(a: Any, b: Any) -> bool:
    return json.dumps(a.__dict__, sort_keys=True) == json.dumps(b.__dict__, sort_keys=True)  # NaN == NaN here


@pytest.fixture(params=["small", "hostile"])
def map_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "small":
        small_map(tmp_path / "m")
        return tmp_path / "m"
    # 240 contexts, escape sequences and control characters in their text: more than a first page
    return build_synthetic_map(tmp_path / "m", n=240, seed=3, hostile=True, llm_labels=True)


def test_the_opening_file_gives_what_the_parquet_files_give(map_dir: Path) -> None:
    reader, parquet = MapReader(map_dir), _parquet_only(map_dir)
    assert reader.opening is not None
    assert "opening" in reader.manifest.files
    assert _rows(reader.tree) == _rows(parquet.tree)
    for ours, theirs in zip(reader.tree, parquet.tree, strict=True):
        assert ours.members.dtype == theirs.members.dtype == np.int32
    for name in ("activations", "layout"):
        ours, theirs = getattr(reader, name), getattr(parquet, name)
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)
    assert reader.context_ids == parquet.context_ids
    assert reader.n_contexts == parquet.n_contexts
    assert reader.group_rows.tolist() == parquet.group_rows.tolist()
    root = parquet.tree[0]
    first = rows_by_activation(root.members, parquet.activations)[:FIRST_PAGE].tolist()
    assert sorted(reader.first_page) == sorted(first)
    assert len(first) == min(FIRST_PAGE, len(root.members))
    table = parquet.contexts_table()
    for row in first:  # as the explorer reads a context: invalid UTF-8 replaced (the hostile map has some)
        assert _same_context(reader.first_page[row], context_from_table(table.slice(row, 1)))


def test_a_map_without_one_reads_its_parquet_files(tmp_path: Path) -> None:
    small_map(tmp_path / "m")
    _drop_opening(tmp_path / "m")
    reader = MapReader(tmp_path / "m")
    assert reader.opening is None
    assert reader.first_page == {}
    assert reader.n_contexts == 12 and [n.kind for n in reader.tree] == ["root", "cluster", "noise"]


def test_a_tree_rewritten_by_another_writer_is_read_from_its_file(tmp_path: Path) -> None:
    """A writer that does not know the opening file keeps its manifest entry: the copy is stale, and unused."""
    small_map(tmp_path / "m")
    tree = pq.read_table(tmp_path / "m" / TREE_FILE)
    labels = tree.column("llm_label").to_pylist()
    labels[1] = "rewritten elsewhere"
    tree = tree.set_column(tree.schema.get_field_index("llm_label"), "llm_label", [labels])
    pq.write_table(tree, tmp_path / "m" / TREE_FILE)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["files"]["tree"]["size"] = (tmp_path / "m" / TREE_FILE).stat().st_size
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    reader = MapReader(tmp_path / "m")
    assert reader.opening is None
    assert reader.tree[1].labels.llm_label == "rewritten elsewhere"


def test_our_writer_rewrites_it_with_the_tree(tmp_path: Path) -> None:
    small_map(tmp_path / "m")
    reader = MapReader(tmp_path / "m")
    nodes = reader.tree
    nodes[1].labels.llm_label = "muscle words"
    before = reader.manifest.files["opening"]
    step = StepRecord(name="label", step_id="abc", params={}, versions={}, upstream=None)
    update_tree(reader.path, reader.manifest, nodes, step)
    again = MapReader(tmp_path / "m")
    assert again.opening is not None
    assert again.manifest.files["opening"] != before
    assert again.tree[1].labels.llm_label == "muscle words"


def test_a_map_written_before_it_existed_gets_one_with_its_next_commit(tmp_path: Path) -> None:
    """Written from the files then: 9,000 contexts, so the root's strongest (the last rows) are in the second row group."""
    small_map(tmp_path / "m", n=9000)
    _drop_opening(tmp_path / "m")
    reader = _parquet_only(tmp_path / "m")
    assert len(reader.group_rows) == 2
    step = StepRecord(name="label", step_id="abc", params={}, versions={}, upstream=None)
    update_tree(reader.path, reader.manifest, reader.tree, step)
    again = MapReader(tmp_path / "m")
    assert again.opening is not None
    first = rows_by_activation(reader.root.members, reader.activations)[:FIRST_PAGE].tolist()
    assert min(first) >= reader.group_rows[0]
    table = reader.contexts_table()
    for row in first:
        assert _same_context(again.first_page[row], context_from_table(table.slice(row, 1)))
    np.testing.assert_array_equal(again.layout, reader.layout)
    assert again.context_ids == reader.context_ids


def _rewrite_version(path: Path) -> None:
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["version"] = np.int64(2)
    with open(path, "r+b") as handle:
        np.savez(handle, **arrays)
        handle.truncate()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"\0" * p.stat().st_size), id="zeros of the right size"),
        pytest.param(_rewrite_version, id="another version"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-10]), id="truncated"),
        pytest.param(lambda p: p.unlink(), id="missing"),
    ],
)
def test_a_damaged_opening_file_is_not_used(tmp_path: Path, damage: Any) -> None:
    small_map(tmp_path / "m")
    damage(tmp_path / "m" / OPENING_FILE)
    reader = MapReader(tmp_path / "m")
    assert reader.opening is None
    assert reader.n_contexts == 12 and reader.tree[1].labels.keywords == ["muscle", "biceps"]
    if not (tmp_path / "m" / OPENING_FILE).exists() or (tmp_path / "m" / OPENING_FILE).stat().st_size != (
        reader.manifest.files["opening"].size
    ):
        with pytest.raises(MapCorruptError, match="opening"):
            reader.verify()  # the manifest lists it: a torn one is reported like any other file


def test_contexts_rewritten_with_the_same_size_are_read_from_their_file(tmp_path: Path) -> None:
    small_map(tmp_path / "m")
    path = tmp_path / "m" / "contexts.parquet"
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(MapCorruptError, match="unreadable"):
        _ = MapReader(tmp_path / "m").activations


def test_the_first_page_is_read_without_pyarrow(tmp_path: Path) -> None:
    """In a fresh process, as the explorer's worker opens a map: pyarrow loads with the page's row groups, after the first frame."""
    path = build_synthetic_map(tmp_path / "maps" / "m", n=240)
    probe = textwrap.dedent(
        f"""
        import sys
        from vista_tui.core.model import MapModel
        from vista_tui.core.triage import open_triage
        from vista_tui.core.triage_config import TriageConfig

        model = MapModel.open_for_explorer({str(path)!r})
        triage = open_triage(model, TriageConfig())
        rows = model.members_by_activation(model.root.node_id)
        page = [model.contexts.get(int(row)) for row in rows[:64]]
        beyond = int(rows[100])  # past the first page, in its row group (240 rows: one group)
        print(all(c is not None for c in page), "pyarrow" in sys.modules, triage.error, model.contexts.is_loaded(beyond))
        model.contexts.warm()  # what the explorer does once its first frame is drawn
        print("pyarrow" in sys.modules, model.contexts.is_loaded(beyond), model.contexts.get(beyond) is not None)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", "False", "None", "False", "True", "True", "True"]
