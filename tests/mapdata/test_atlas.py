"""The atlas on disk: round trip, atomic row updates, one-line errors, listing and finding."""

from __future__ import annotations

import json
import math
import multiprocessing
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.atlas_fixture import atlas_manifest, build_atlas, synthetic_rows
from vista_tui.mapdata import (
    ATLAS_SCHEMA_VERSION,
    LATENTS_FILE,
    AtlasManifest,
    LatentRow,
    MapCorruptError,
    MapNotFoundError,
    SchemaVersionError,
    Store,
    latents_schema,
    map_root_id,
    read_atlas,
    read_atlas_manifest,
    update_latent_rows,
    write_atlas,
)


def _same(a: LatentRow, b: LatentRow) -> bool:
    """Rows equal, NaN equal to NaN and float32 columns compared at float32 precision."""
    if math.isnan(a.fidelity_gain) != math.isnan(b.fidelity_gain):
        return False
    fa = replace(a, fidelity_gain=0.0, max_activation=round(a.max_activation, 4))
    fb = replace(b, fidelity_gain=0.0, max_activation=round(b.max_activation, 4))
    gain_close = math.isnan(a.fidelity_gain) or abs(a.fidelity_gain - b.fidelity_gain) < 1e-6
    return fa == fb and gain_close


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    rows = synthetic_rows(30, seed=1, hostile=True)
    rows[2] = replace(rows[2], map_id="m_L2", built=True)
    manifest = atlas_manifest("a1", range(30), d_sae=64)
    write_atlas(tmp_path / "a1", manifest, reversed(rows))  # any order in, ascending out
    atlas = read_atlas(tmp_path / "a1")
    assert atlas.manifest == manifest
    assert atlas.table.schema == latents_schema()
    back = atlas.rows()
    assert [r.latent for r in back] == list(range(30))
    assert all(_same(a, b) for a, b in zip(rows, back, strict=True))
    assert back[0].top_tokens == ("\x1b[31mred", "\u202eevil")  # stored as given; sanitised only on display
    assert math.isnan(back[3].fidelity_gain) and back[3].error == "never fired in the corpus"
    assert Store(atlas.path).map_path("m_L2") == tmp_path / "a1" / "maps" / "m_L2"
    assert AtlasManifest.from_dict(json.loads((tmp_path / "a1" / "manifest.json").read_text())) == manifest


def test_column_types_are_the_documented_ones(tmp_path: Path) -> None:
    write_atlas(tmp_path / "a", atlas_manifest("a", range(3), 16), synthetic_rows(3))
    schema = pq.read_schema(tmp_path / "a" / LATENTS_FILE)
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert types == {
        "latent": "int32",
        "density": "double",
        "n_fired": "int64",
        "max_activation": "float",
        "n_contexts": "int32",
        "top_tokens": "list<element: string>",
        "top_counts": "list<element: int32>",
        "explanation": "string",
        "llm_label": "string",
        "fidelity_k": "int32",
        "fidelity_gain": "float",
        "map_id": "string",
        "built": "bool",
        "error": "string",
        "order": "int32",
    }


def test_the_order_round_trips_and_an_older_table_without_it_reads_as_none(tmp_path: Path) -> None:
    rows = [replace(row, order={4: 0, 1: 1, 7: 2}.get(row.latent, -1)) for row in synthetic_rows(9)]
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(9), 16), rows)
    assert [row.order for row in read_atlas(atlas_dir).rows()] == [-1, 1, -1, -1, 0, -1, -1, 2, -1]
    update_latent_rows(atlas_dir, [replace(rows[2], order=3)])
    assert read_atlas(atlas_dir).rows()[2].order == 3
    table = pq.read_table(atlas_dir / LATENTS_FILE).drop_columns(["order"])  # as written before the column
    pq.write_table(table, atlas_dir / LATENTS_FILE)
    atlas = read_atlas(atlas_dir)
    assert atlas.table.schema == latents_schema()
    assert [row.order for row in atlas.rows()] == [-1] * 9
    update_latent_rows(atlas_dir, [replace(rows[4], order=0)])  # an old atlas takes an update
    assert [row.order for row in read_atlas(atlas_dir).rows()] == [-1, -1, -1, -1, 0, -1, -1, -1, -1]


def test_bad_rows_are_refused(tmp_path: Path) -> None:
    rows = synthetic_rows(3)
    with pytest.raises(ValueError, match="latent 1 is given twice"):
        write_atlas(tmp_path / "a", atlas_manifest("a", range(3), 16), [*rows, rows[1]])
    with pytest.raises(ValueError, match="2 top tokens but 1 counts"):
        LatentRow(
            latent=1, density=0.1, n_fired=1, max_activation=1.0, n_contexts=1, top_tokens=("a", "b"), top_counts=(1,)
        )
    assert not (tmp_path / "a" / "manifest.json").exists()


def test_update_replaces_rows_by_latent_and_adds_new_ones(tmp_path: Path) -> None:
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(10), 16), synthetic_rows(8))
    before = read_atlas(atlas_dir).rows()
    new5 = replace(before[5], map_id="a_L5", built=True, llm_label="rebuilt")
    row9 = replace(before[1], latent=9)
    update_latent_rows(atlas_dir, [row9, new5])
    after = read_atlas(atlas_dir).rows()
    assert [r.latent for r in after] == [0, 1, 2, 3, 4, 5, 6, 7, 9]
    assert after[5].built and after[5].map_id == "a_L5" and after[5].llm_label == "rebuilt"
    assert all(_same(a, b) for a, b in zip(before[:5], after[:5], strict=True))
    assert not list(atlas_dir.glob(".*.tmp"))  # nothing left of the temporary files


def _update_one(atlas_dir: str, latent: int) -> None:
    """A child process marks one latent built."""
    rows = read_atlas(atlas_dir).rows()
    update_latent_rows(atlas_dir, [replace(rows[latent], built=True, map_id=f"m{latent}")])


def test_concurrent_updates_keep_every_row(tmp_path: Path) -> None:
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(12), 16), synthetic_rows(12))
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        pool.starmap(_update_one, [(str(atlas_dir), latent) for latent in range(0, 12, 2)])
    rows = read_atlas(atlas_dir).rows()
    assert [r.built for r in rows] == [latent % 2 == 0 for latent in range(12)]


def test_update_of_a_missing_atlas_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MapCorruptError) as caught:
        update_latent_rows(tmp_path / "nothing", synthetic_rows(1))
    assert "\n" not in str(caught.value) and "no manifest.json" in str(caught.value)


def _one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_corrupt_truncated_and_wrong_version_are_one_line(tmp_path: Path) -> None:
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(50), 64), synthetic_rows(50))
    latents = atlas_dir / LATENTS_FILE
    data = latents.read_bytes()
    latents.write_bytes(data[: len(data) // 2])
    with pytest.raises(MapCorruptError) as caught:
        read_atlas(atlas_dir)
    assert "truncated or damaged" in _one_line(caught)

    latents.unlink()
    with pytest.raises(MapCorruptError) as caught:
        read_atlas(atlas_dir)
    assert "has no latents.parquet" in _one_line(caught)

    manifest = atlas_dir / "manifest.json"
    raw = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**raw, "schema_version": ATLAS_SCHEMA_VERSION + 1}))
    with pytest.raises(SchemaVersionError) as caught:
        read_atlas_manifest(atlas_dir)
    assert "atlas format version 2" in _one_line(caught)

    manifest.write_text(json.dumps({k: v for k, v in raw.items() if k != "d_sae"}))
    with pytest.raises(MapCorruptError) as caught:
        read_atlas_manifest(atlas_dir)
    assert "d_sae" in _one_line(caught)

    manifest.write_text("{not json")
    with pytest.raises(MapCorruptError) as caught:
        read_atlas_manifest(atlas_dir)
    assert "not valid JSON" in _one_line(caught)

    with pytest.raises(MapNotFoundError) as caught:
        read_atlas(tmp_path / "missing")
    assert "does not exist" in _one_line(caught)


def test_a_table_without_a_column_is_one_line(tmp_path: Path) -> None:
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(3), 16), synthetic_rows(3))
    table = pq.read_table(atlas_dir / LATENTS_FILE).drop_columns(["built"])
    pq.write_table(table, atlas_dir / LATENTS_FILE)
    with pytest.raises(MapCorruptError) as caught:
        read_atlas(atlas_dir)
    assert "lacks the columns built" in _one_line(caught)


def test_unknown_keys_and_columns_are_ignored(tmp_path: Path) -> None:
    atlas_dir = write_atlas(tmp_path / "a", atlas_manifest("a", range(3), 16), synthetic_rows(3))
    manifest = atlas_dir / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "future": {"x": 1}}))
    table = pq.read_table(atlas_dir / LATENTS_FILE)
    pq.write_table(table.append_column("future", table.column("latent")), atlas_dir / LATENTS_FILE)
    atlas = read_atlas(atlas_dir)
    assert atlas.table.column_names == latents_schema().names and atlas.manifest.atlas_id == "a"


def test_store_lists_and_finds_atlases(tmp_path: Path) -> None:
    store = Store(tmp_path)
    assert store.list_atlases() == []
    build_atlas(tmp_path, "gemma-2b_h20_res16k", n=5, maps=())
    build_atlas(tmp_path, "minilm_h3_sae-a", n=5, maps=(1,))
    (store.atlases_dir / "broken").mkdir()
    entries = store.list_atlases()
    assert {e.atlas_id for e in entries} == {"gemma-2b_h20_res16k", "minilm_h3_sae-a", "broken"}
    broken = next(e for e in entries if e.atlas_id == "broken")
    assert broken.manifest is None and broken.error and "no manifest.json" in broken.error
    assert store.find_atlas("minilm_h3_sae-a") == store.atlas_path("minilm_h3_sae-a")
    assert store.find_atlas("GEMMA") == store.atlas_path("gemma-2b_h20_res16k")
    assert store.find_atlas("res16k") == store.atlas_path("gemma-2b_h20_res16k")
    assert store.find_atlas(str(store.atlas_path("minilm_h3_sae-a"))) == store.atlas_path("minilm_h3_sae-a")
    build_atlas(tmp_path, "minilm_h3_sae-b", n=3, maps=())
    with pytest.raises(MapNotFoundError) as caught:
        store.find_atlas("minilm")
    assert "ambiguous" in _one_line(caught)
    with pytest.raises(MapNotFoundError) as caught:
        store.find_atlas("nope")
    assert "no atlas 'nope'" in _one_line(caught)


def test_an_atlas_is_a_store_for_its_maps(tmp_path: Path) -> None:
    atlas_dir = build_atlas(tmp_path, "a", n=4, maps=(1,))
    rows = read_atlas(atlas_dir).rows()
    assert rows[1].built and rows[1].map_id == "a_L1"
    map_dir = Store(atlas_dir).find_map("a_L1")
    assert map_dir == atlas_dir / "maps" / "a_L1"
    assert len(map_root_id(map_dir)) > 4
    assert not rows[0].built and rows[0].map_id == ""


def test_listing_reads_manifests_only(tmp_path: Path) -> None:
    atlas_dir = build_atlas(tmp_path, "a", n=4, maps=())
    (atlas_dir / LATENTS_FILE).write_bytes(b"garbage")  # never opened by a listing
    (entry,) = Store(tmp_path).list_atlases()
    assert entry.manifest is not None and entry.manifest.latents == (0, 1, 2, 3)
