"""Match tables and children.json: round trips, lookups both ways, shares that sum, one-line errors."""

from __future__ import annotations

import math
import os

import pytest

from vista_tui.mapdata import (
    LatentMatches,
    MapCorruptError,
    MapNotFoundError,
    MatchManifest,
    SaeRef,
    SchemaVersionError,
    Store,
    map_children,
    match_id_for,
    read_children,
    read_match_table,
    sae_key,
    write_children,
    write_match_table,
)
from vista_tui.mapdata.children import CHILDREN_FILE, dominant_child, node_children
from vista_tui.mapdata.matches import MATCH_MANIFEST, MATCH_TABLE_FILE


def _manifest(a: str, b: str) -> MatchManifest:
    return MatchManifest(
        match_id=match_id_for(a, b),
        created="2026-11-29T00:00:00Z",
        sae_a=SaeRef(sae=a, d_in=8, d_sae=3),
        sae_b=SaeRef(sae=b, d_in=8, d_sae=6),
        k=2,
        threshold=0.7,
        method="dense",
        exact=True,
        mean_matched_cosine=0.8,
        share_above=2 / 3,
        n_matched=3,
        note="",
    )


# Cosines exact in float32, so that a round trip compares equal.
ROWS = [
    LatentMatches(0, (4, 1), (0.875, 0.5), (4, 2), (0.75, 0.25), 4, 0.875),
    LatentMatches(1, (1, 4), (0.75, 0.625), (1, 0), (0.6875, 0.125), 1, 0.75),
    LatentMatches(2, (5, 1), (0.375, 0.3125), (5, 3), (0.5, 0.1875), 5, 0.375),
]


def test_a_match_table_round_trips_and_looks_up_both_ways(tmp_path) -> None:
    store = Store(tmp_path)
    manifest = _manifest("release/a", "release/b")
    write_match_table(store.match_path(manifest.match_id), manifest, ROWS)
    table = read_match_table(store.match_path(manifest.match_id))
    assert table.manifest == manifest
    assert table.row(1) == ROWS[1]
    assert table.row(9) is None
    # B's latent 1 is a neighbour of A's 1 (0.75) and of A's 0 (0.5), and the partner of A's 1.
    assert table.reverse(1) == [(1, pytest.approx(0.75)), (0, pytest.approx(0.5)), (2, pytest.approx(0.3125))]
    assert table.reverse(3) == []
    assert [e.match_id for e in store.matches_for("release/b")] == [manifest.match_id]
    assert store.matches_for("release/c") == []


def test_a_local_sae_path_matches_however_it_is_spelled(tmp_path) -> None:
    sae = tmp_path / "saes" / "wide"
    sae.mkdir(parents=True)
    relative = os.path.relpath(sae)
    assert sae_key(str(sae)) == sae_key(relative) == sae_key(f"{tmp_path}/saes/../saes/wide")
    assert sae_key("gemma-scope/layer_3") == "gemma-scope/layer_3"


def test_match_id_names_both_saes_and_does_not_collide(tmp_path) -> None:
    one = match_id_for("x/a/narrow", "y/wide")
    assert "narrow" in one and "wide" in one
    assert one != match_id_for("z/a/narrow", "y/wide")


def test_a_damaged_match_table_is_one_line(tmp_path) -> None:
    manifest = _manifest("a", "b")
    where = write_match_table(tmp_path / "m", manifest, ROWS)
    (where / MATCH_TABLE_FILE).write_bytes((where / MATCH_TABLE_FILE).read_bytes()[:40])
    with pytest.raises(MapCorruptError, match="vista match") as error:
        read_match_table(where)
    assert "\n" not in str(error.value)
    (where / MATCH_MANIFEST).write_text('{"schema_version": 9, "match_id": "m"}')
    with pytest.raises(SchemaVersionError):
        read_match_table(where)
    with pytest.raises(MapNotFoundError):
        read_match_table(tmp_path / "nowhere")


CONTEXTS = [[(7, 1.0), (3, 2.0)], [], [(7, 0.5)], [(3, 1.0), (7, 1.0)], [(9, 0.2)]]


def test_node_shares_sum_as_stated() -> None:
    node = node_children(CONTEXTS, range(5))
    assert node.n == 5 and node.none_share == pytest.approx(0.2)
    by = {c.latent: c for c in node.children}
    assert by[7].share == pytest.approx(3 / 5) and by[3].share == pytest.approx(2 / 5)
    # Dominant: row 0 → 3 (2.0), row 2 → 7, row 3 → 3 (tie at 1.0 goes to the smaller latent), row 4 → 9.
    assert by[3].dominant_share == pytest.approx(2 / 5)
    assert by[7].dominant_share == pytest.approx(1 / 5)
    assert math.fsum(c.dominant_share for c in node.children) + node.none_share == pytest.approx(1.0)
    assert by[7].mean_activation == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert node.dominant is not None and node.dominant.latent == 3
    assert dominant_child([]) == -1 and node_children(CONTEXTS, [1]).dominant is None


def test_children_round_trip_and_absent_file(tmp_path) -> None:
    assert read_children(tmp_path) is None
    children = map_children(
        sae="saes/wide",
        d_sae=16,
        latent=4,
        neighbours=[(3, 0.94), (7, 0.93), (9, 0.2)],
        contexts=CONTEXTS,
        node_members={"root": range(5), "a": [0, 3]},
    )
    write_children(tmp_path, children)
    back = read_children(tmp_path)
    assert back == children
    assert back.contexts[0] == ((3, 2.0), (7, 1.0))  # strongest first
    assert back.dominant(2) == 7 and back.dominant(1) == -1
    assert back.cosine(7) == pytest.approx(0.93) and math.isnan(back.cosine(5))
    assert back.nodes["a"].dominant.latent == 3
    (tmp_path / CHILDREN_FILE).write_text("{not json")
    with pytest.raises(MapCorruptError, match="--also-sae"):
        read_children(tmp_path)
