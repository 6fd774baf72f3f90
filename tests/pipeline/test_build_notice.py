"""What `vista build` says before a harvest no cached one serves: the pass over the corpus, and how to share it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import harvest
from pipeline.build import BuildConfig, corpus_extent, harvest_notice, sibling_harvest
from pipeline.steps import params_of
from vista_tui.mapdata import Store


def config(corpus: Path, latents: tuple[int, ...], **overrides: object) -> BuildConfig:
    """A build of `latents` over `corpus` with a fixed model, hook and SAE."""
    params: dict[str, object] = {"model": "minilm", "hook": "3", "latents": latents, "corpus": (str(corpus),)}
    params["sae_path"] = "/saes/topk"
    force = bool(overrides.pop("force", False))
    return BuildConfig(harvest=harvest.HarvestConfig(**{**params, **overrides}), force=force)  # type: ignore[arg-type]


def cache_harvest(store: Store, cfg: BuildConfig, key: str, n_documents: int, n_tokens: int) -> Path:
    """A finished harvest's harvest.json for `cfg` (its record and counts are all the notice reads)."""
    folder = store.root / "harvests" / key
    folder.mkdir(parents=True)
    record = {"name": "harvest", "step_id": key, "params": params_of(cfg.harvest)}
    payload = {"record": record, "n_documents": n_documents, "n_tokens_seen": n_tokens, "latents": []}
    (folder / harvest.HARVEST_FILE).write_text(json.dumps(payload))
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_bytes(b"x" * 2_500_000)
    return path


def test_a_first_harvest_names_the_corpus_and_how_to_share_the_pass(tmp_path: Path, corpus: Path) -> None:
    store = Store(tmp_path / "store")
    assert harvest_notice(config(corpus, (702,)), store) == (
        "harvesting latent 702: one pass over the corpus (texts.jsonl, 2.5 MB) — harvest several latents at "
        "once with --latents a,b,c to share it"
    )
    capped = config(corpus, (702, 9), max_tokens=100_000)
    assert corpus_extent(capped.harvest) == "texts.jsonl, 2.5 MB; at most 100,000 tokens"
    assert harvest_notice(capped, store).startswith("harvesting latents 702, 9: one pass over the corpus (")


def test_a_new_latent_on_a_cached_corpus_says_how_long_the_pass_was(tmp_path: Path, corpus: Path) -> None:
    store = Store(tmp_path / "store")
    cache_harvest(store, config(corpus, (1888, 2000)), "aaaa", n_documents=2_345, n_tokens=375_415)
    cache_harvest(store, config(corpus, (5,), top_n=10), "bbbb", n_documents=1, n_tokens=2)  # other parameters
    (store.root / "harvests" / "cccc").mkdir()  # an unfinished harvest
    (store.root / "harvests" / "dddd").mkdir()
    (store.root / "harvests" / "dddd" / harvest.HARVEST_FILE).write_text("{torn")
    cfg = config(corpus, (702,))
    sibling = sibling_harvest(cfg.harvest, store)
    assert sibling is not None and sibling.latents == (1888, 2000) and sibling.n_tokens_seen == 375_415
    assert harvest_notice(cfg, store) == (
        "harvesting latent 702: one more pass over the corpus (2,345 documents / 375,415 tokens, as the cached "
        "harvest of latents 1888, 2000 read it) — a harvest serves only its own latents: harvest several at "
        "once with --latents 1888,2000,702 to share one pass"
    )


def test_a_forced_harvest_says_so_without_advice(tmp_path: Path) -> None:
    cfg = config(Path("python-stdlib-docstrings"), (3,), force=True)
    assert harvest_notice(cfg, Store(tmp_path)) == (
        "harvesting latent 3 again (--force): one pass over the corpus (the standard library's docstrings)"
    )
