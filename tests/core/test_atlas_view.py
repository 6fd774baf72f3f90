"""The latent browser's view model: orders, filter, search, triage read from the maps, all on numpy arrays."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.atlas_fixture import build_atlas
from vista_tui.core.annotations import DB_NAME, AnnotationStore
from vista_tui.core.atlas_view import NOT_BUILT, UNREADABLE, AtlasView, label_agreement, read_root_statuses
from vista_tui.core.triage_config import DEFAULT_STATUSES
from vista_tui.mapdata import Store, map_root_id


def test_label_agreement_is_the_overlap_of_content_words() -> None:
    assert label_agreement("river banks", "banks of a river") == 1.0
    assert label_agreement("music and melody", "songs and melodies") == 0.0
    assert math.isclose(label_agreement("python code", "source code"), 1 / 3)
    assert math.isnan(label_agreement("", "anything")) and math.isnan(label_agreement("the of", "a"))


def test_orders_put_missing_values_last_and_break_ties_by_latent(tmp_path: Path) -> None:
    view = AtlasView.open(build_atlas(tmp_path, "a", n=50, maps=()))
    view.set_sort("fidelity")
    gains = view.fidelity_gain[view.order]
    n_missing = int(np.isnan(view.fidelity_gain).sum())
    assert n_missing and np.all(np.isnan(gains[-n_missing:])) and np.all(np.diff(gains[:-n_missing]) <= 0)
    assert list(view.latent[view.order[-n_missing:]]) == sorted(view.latent[np.isnan(view.fidelity_gain)])
    view.set_sort("density")
    dead = view.latent[view.density == 0]
    assert list(view.latent[view.order[-len(dead) :]]) == sorted(dead)  # ties (all 0) by latent


def test_an_atlas_with_an_order_opens_in_it_and_one_without_offers_none(tmp_path: Path) -> None:
    view = AtlasView.open(build_atlas(tmp_path, "a", n=12, maps=(), order=(9, 2, 11, 0)))
    assert view.sort_key == "atlas" and view.sorts[0] == "atlas"
    assert list(view.latent[view.order]) == [9, 2, 11, 0, 1, 3, 4, 5, 6, 7, 8, 10]  # the rest by latent
    view.set_filter("l1")  # l1, l10, l11
    assert list(view.latent[view.order]) == [11, 1, 10]
    plain = AtlasView.open(build_atlas(tmp_path, "b", n=12, maps=()))
    assert plain.sort_key == "latent" and "atlas" not in plain.sorts
    with pytest.raises(ValueError, match="unknown sort 'atlas'"):
        plain.set_sort("atlas")


def test_filter_needs_every_word_and_search_gives_display_positions(tmp_path: Path) -> None:
    view = AtlasView.open(build_atlas(tmp_path, "a", n=50, maps=()))
    view.set_filter("River banks")
    texts = [f"l{r.latent} {' '.join(r.top_tokens)} {r.llm_label} {r.explanation}".lower() for r in view.atlas.rows()]
    expected = [i for i, text in enumerate(texts) if "river" in text and "banks" in text]
    assert expected and list(view.order) == expected
    assert any("river" in text and "banks" not in text for text in texts)  # one word is not enough
    view.set_filter("l4")
    assert list(view.latent[view.order]) == [4, *range(40, 50)]
    view.set_filter("")
    view.set_sort("max_activation")
    hits = view.search("CODE")  # any case
    rows = view.order[hits]
    assert len(rows) and np.all(np.diff(hits) > 0)
    rows_by_latent = view.atlas.rows()
    for row in rows:
        latent = rows_by_latent[int(row)]
        assert "code" in f"{' '.join(latent.top_tokens)} {latent.llm_label} {latent.explanation}".lower()
    assert view.search("").size == 0


def test_triage_is_read_from_each_maps_root(tmp_path: Path) -> None:
    atlas_dir = build_atlas(tmp_path, "a", n=6, maps=(0, 1, 2))
    view = AtlasView.open(atlas_dir)
    store = Store(atlas_dir)
    with AnnotationStore.open(store.map_path("a_L1"), "tester") as annotations:
        annotations.set_status(map_root_id(store.map_path("a_L1")), "junk")
    (store.map_path("a_L2") / DB_NAME).write_bytes(b"not a database at all, not even close" * 100)
    results: dict[int, str | None] = {}
    for batch in read_root_statuses(view.built_rows(), DEFAULT_STATUSES, "tester", batch=1):
        assert len(batch) == 1
        results.update(batch)
    assert results == {0: "unreviewed", 1: "junk", 2: None}
    assert not (store.map_path("a_L0") / DB_NAME).exists()  # reading created nothing
    view.set_triage(DEFAULT_STATUSES, results)
    assert [view.triage_text(row) for row in range(4)] == ["—", "junk", "?", ""]
    assert view.triage_rank[2] == UNREADABLE and view.triage_rank[3] == NOT_BUILT and view.triaged_count() == 1
    view.set_sort("triage")
    assert list(view.order[:3]) == [1, 0, 2]
