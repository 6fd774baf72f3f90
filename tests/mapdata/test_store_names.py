"""Finding a map by what a person types (`Store.find_map`), and the store from anywhere in a checkout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.small_map import small_map
from vista_tui.mapdata import MapNotFoundError, Store, resolve_store

ROOT = Path(__file__).resolve().parents[2]


def small_map_of_latent(store: Store, map_id: str, latent: int) -> Path:
    """A tiny map named `map_id` whose manifest says `latent`."""
    path = store.map_path(map_id)
    small_map(path)
    manifest = path / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["provenance"]["latent"] = latent
    manifest.write_text(json.dumps(raw))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """Maps of latents 702 and 1702 from one model, and one of latent 5 from another."""
    store = Store(tmp_path)
    small_map_of_latent(store, "minilm_h3_sae-a_L702", 702)
    small_map_of_latent(store, "minilm_h3_sae-a_L1702", 1702)
    small_map_of_latent(store, "gemma_h20_scope_L5", 5)
    return store


def test_a_map_by_its_id_a_unique_prefix_or_suffix(store: Store) -> None:
    assert store.find_map("minilm_h3_sae-a_L702") == store.map_path("minilm_h3_sae-a_L702")
    assert store.find_map("gemma") == store.map_path("gemma_h20_scope_L5")
    assert store.find_map("sae-a_L1702") == store.map_path("minilm_h3_sae-a_L1702")
    assert store.find_map("GEMMA_H20") == store.map_path("gemma_h20_scope_L5")  # any case
    assert store.find_map(str(store.map_path("gemma_h20_scope_L5"))) == store.map_path("gemma_h20_scope_L5")


def test_a_map_by_its_latent_before_any_suffix(store: Store) -> None:
    """`702` is the map of latent 702, although `…_L1702` ends in 702 too."""
    assert store.find_map("702") == store.map_path("minilm_h3_sae-a_L702")
    assert store.find_map("L702") == store.map_path("minilm_h3_sae-a_L702")
    assert store.find_map("l1702") == store.map_path("minilm_h3_sae-a_L1702")
    assert store.find_map("5") == store.map_path("gemma_h20_scope_L5")


def test_a_name_that_fits_several_maps_is_refused_listing_them(store: Store) -> None:
    with pytest.raises(MapNotFoundError) as caught:
        store.find_map("minilm")
    message = str(caught.value)
    assert "\n" not in message and "ambiguous" in message
    assert "minilm_h3_sae-a_L702 (latent 702)" in message and "minilm_h3_sae-a_L1702 (latent 1702)" in message
    assert "gemma" not in message and "`vista list`" in message
    small_map_of_latent(store, "other_L702", 702)  # a second map of latent 702
    with pytest.raises(MapNotFoundError) as caught:
        store.find_map("702")
    assert "'702' is ambiguous" in str(caught.value)
    assert "minilm_h3_sae-a_L702 (latent 702)" in str(caught.value) and "other_L702 (latent 702)" in str(caught.value)
    with pytest.raises(MapNotFoundError, match=r"no map 'nope'.*known maps"):
        store.find_map("nope")


def test_the_checkout_store_is_found_from_any_folder_of_the_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VISTA_CACHE", raising=False)
    checkout = tmp_path / "repo"
    (checkout / "cache").mkdir(parents=True)
    (checkout / "cache" / "README.md").write_text("store")
    (checkout / "pyproject.toml").write_text('[project]\nname = "vista-tui"\n')
    deep = checkout / "vista_tui" / "cli"
    deep.mkdir(parents=True)
    assert resolve_store(None, cwd=deep) == checkout / "cache"
    assert resolve_store(None, cwd=checkout / "cache") == checkout / "cache"
    monkeypatch.chdir(deep)
    assert resolve_store(None) == checkout / "cache"
    # the real checkout, from its package folder
    monkeypatch.chdir(ROOT / "vista_tui")
    assert resolve_store(None) == ROOT / "cache"
    # a project of another name above is not a checkout
    (checkout / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert resolve_store(None, cwd=deep).name == "vista-tui"
