"""The map format: round trip, atomic writes, and clear refusals of bad maps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.small_map import small_map
from vista_tui.mapdata import (
    SCHEMA_VERSION,
    MapCorruptError,
    MapNotFoundError,
    MapReader,
    SchemaVersionError,
    SparseCodes,
    Store,
    atomic_write,
    node_id_for,
    read_manifest,
    resolve_store,
    update_tree,
)
from vista_tui.mapdata.writer import CONTEXTS_FILE, TREE_FILE


def test_round_trip(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    reader = MapReader(tmp_path / "m1")
    assert reader.manifest.schema_version == SCHEMA_VERSION
    assert reader.manifest.provenance.latent == 7
    assert reader.n_contexts == 12
    assert reader.activations.shape == (12,)
    assert reader.layout.shape == (12, 2)
    ctx = reader.context(3)
    assert ctx.focus_token == " mus"
    assert ctx.token_activations[ctx.focus] == pytest.approx(ctx.activation)
    assert [n.kind for n in reader.tree] == ["root", "cluster", "noise"]
    assert reader.tree[1].labels.keywords == ["muscle", "biceps"]
    assert np.isnan(reader.tree[1].labels.agreement)
    assert [c.node_id for c in reader.children(reader.root.node_id)] == [n.node_id for n in reader.tree[1:]]
    assert reader.codes.n_rows == 12
    assert reader.codes.to_dense()[5, 7] == pytest.approx(reader.activations[5], rel=1e-3)
    assert reader.fidelity is not None and reader.fidelity.best_k == 2


def test_reader_is_lazy(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    (tmp_path / "m1" / TREE_FILE).write_bytes(b"garbage")
    reader = MapReader(tmp_path / "m1")  # opening reads only the manifest
    with pytest.raises(MapCorruptError, match=r"tree\.parquet"):
        _ = reader.tree


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    path = tmp_path / "m1" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(raw))
    with pytest.raises(SchemaVersionError, match=r"version 2.*reads version 1"):
        MapReader(tmp_path / "m1")


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    path = tmp_path / "m1" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["future_field"] = {"x": 1}
    raw["provenance"]["future"] = "y"
    path.write_text(json.dumps(raw))
    assert MapReader(tmp_path / "m1").manifest.provenance.latent == 7


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "manifest.json").unlink(), "no manifest.json"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "manifest.json").write_text("[]"), "not a VISTA map"),
    ],
)
def test_bad_manifest(tmp_path: Path, damage: object, message: str) -> None:
    small_map(tmp_path / "m1")
    damage(tmp_path / "m1")  # type: ignore[operator]
    with pytest.raises(MapCorruptError, match=message):
        MapReader(tmp_path / "m1")


def test_truncated_contexts_file(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    path = tmp_path / "m1" / CONTEXTS_FILE
    path.write_bytes(path.read_bytes()[:100])
    reader = MapReader(tmp_path / "m1")
    with pytest.raises(MapCorruptError, match="truncated"):
        _ = reader.activations


def test_corrupt_contexts_of_right_size(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    path = tmp_path / "m1" / CONTEXTS_FILE
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(MapCorruptError, match="unreadable"):
        _ = MapReader(tmp_path / "m1").activations


def test_missing_file(tmp_path: Path) -> None:
    small_map(tmp_path / "m1")
    (tmp_path / "m1" / "codes.npz").unlink()
    with pytest.raises(MapCorruptError, match=r"missing codes\.npz"):
        _ = MapReader(tmp_path / "m1").codes


def test_missing_map(tmp_path: Path) -> None:
    with pytest.raises(MapNotFoundError):
        read_manifest(tmp_path / "nope")
    with pytest.raises(MapNotFoundError, match="vista demo"):
        Store(tmp_path).find_map("nope")


def test_atomic_write_keeps_old_file_when_writer_dies(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, lambda h: h.write(b"old"))

    def dies(handle: object) -> None:
        handle.write(b"half")  # type: ignore[attr-defined]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, dies)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_update_tree_keeps_other_files(tmp_path: Path) -> None:
    from vista_tui.mapdata import StepRecord

    small_map(tmp_path / "m1")
    reader = MapReader(tmp_path / "m1")
    nodes = reader.tree
    nodes[1].labels.llm_label = "muscle words"
    step = StepRecord(name="label", step_id="abc", params={}, versions={}, upstream=None)
    update_tree(reader.path, reader.manifest, nodes, step)
    again = MapReader(tmp_path / "m1")
    assert again.tree[1].labels.llm_label == "muscle words"
    assert "label" in again.manifest.steps
    assert again.n_contexts == 12


def test_node_ids_are_stable() -> None:
    a = node_id_for(["c", "a", "b"])
    assert a == node_id_for(np.array(["b", "c", "a"]))
    assert a != node_id_for(["a", "b"])
    assert a != node_id_for(["a", "b", "c"], "noise")
    assert len(a) == 16


def test_sparse_codes_take() -> None:
    codes = SparseCodes(
        indptr=np.array([0, 1, 3, 3], dtype=np.int64),
        indices=np.array([2, 0, 1], dtype=np.int32),
        values=np.array([1.0, 2.0, 3.0], dtype=np.float32),
        n_latents=3,
    )
    taken = codes.take(np.array([2, 1]))
    np.testing.assert_array_equal(taken.to_dense(), codes.to_dense()[[2, 1]])


def test_store_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISTA_CACHE", raising=False)
    assert resolve_store(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("VISTA_CACHE", str(tmp_path / "env"))
    assert resolve_store(None) == tmp_path / "env"
    monkeypatch.delenv("VISTA_CACHE")
    checkout = tmp_path / "repo"
    (checkout / "cache").mkdir(parents=True)
    (checkout / "cache" / "README.md").write_text("store")
    (checkout / "pyproject.toml").write_text('[project]\nname = "vista-tui"\n')
    assert resolve_store(None, cwd=checkout) == checkout / "cache"
    elsewhere = resolve_store(None, cwd=tmp_path)
    assert elsewhere.name == "vista-tui"


def test_list_maps_newest_first_and_broken_ones_explained(tmp_path: Path) -> None:
    store = Store(tmp_path)
    small_map(store.map_path("a"))
    small_map(store.map_path("b"))
    manifest = store.map_path("a") / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["created"] = "2099-01-01T00:00:00+00:00"
    manifest.write_text(json.dumps(raw))
    (store.map_path("broken")).mkdir()
    entries = store.list_maps()
    assert [e.map_id for e in entries][:2] == ["a", "b"]
    broken = next(e for e in entries if e.map_id == "broken")
    assert broken.manifest is None and "manifest.json" in (broken.error or "")
    assert os.path.samefile(store.find_map("a"), store.map_path("a"))


def test_focus_tokens_round_trip(tmp_path: Path) -> None:
    from vista_tui.mapdata import FocusToken, StepRecord

    small_map(tmp_path / "m1")
    reader = MapReader(tmp_path / "m1")
    nodes = reader.tree
    nodes[1].labels.focus_tokens = [FocusToken(" mus", 6, 12.5, 0.75), FocusToken("\x1b[2J", 2, float("nan"), 0.125)]
    update_tree(reader.path, reader.manifest, nodes, StepRecord("keywords", "x", {}, {}, None))
    again = MapReader(tmp_path / "m1").tree
    first, second = again[1].labels.focus_tokens
    assert (first.token, first.count, first.mass, first.score) == (" mus", 6, 12.5, 0.75)
    assert (second.token, second.count, second.score) == ("\x1b[2J", 2, 0.125) and np.isnan(second.mass)
    assert again[0].labels.focus_tokens == [] and again[1].labels.keywords == ["muscle", "biceps"]


def test_a_tree_written_before_focus_tokens_still_opens(tmp_path: Path) -> None:
    """Maps built before the `focus_tokens` column: no focus tokens, titled by keywords as before."""
    import pyarrow.parquet as pq

    from vista_tui.core.model import MapModel
    from vista_tui.mapdata.writer import tree_table

    small_map(tmp_path / "m1")
    path = tmp_path / "m1" / TREE_FILE
    table = tree_table(MapReader(tmp_path / "m1").tree)
    old = table.select([name for name in table.column_names if name != "focus_tokens"])
    pq.write_table(old, path)
    manifest = tmp_path / "m1" / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["files"]["tree"]["size"] = path.stat().st_size
    manifest.write_text(json.dumps(raw))
    assert "focus_tokens" not in pq.read_schema(path).names
    model = MapModel.open(tmp_path / "m1")
    assert all(node.labels.focus_tokens == [] for node in model.nodes.values())
    cluster = next(node for node in model.nodes.values() if node.kind == "cluster")
    assert model.title(cluster.node_id) == "muscle, biceps"
