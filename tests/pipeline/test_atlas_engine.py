"""The atlas's engines: the same atlas in process and on Ray, a lost worker, a rerun that resumes, sharding.

Real MiniLM, a seeded TopK SAE with a dead latent, a small real corpus; tiny atlases (6 latents,
30 contexts each), since every process that lays out a map pays UMAP's JIT once. The Ray tests run
on the session's local instance (`ray_local`, 2 CPUs).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from pipeline.atlas.build import HARVEST_DIR, AtlasConfig, AtlasReport, atlas_id_for, build_atlas
from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.engine import InProcess, plan_corpus, run_pass1_shard, split
from pipeline.harvest.batches import sort_window
from pipeline.steps import no_progress
from tests.helpers.build_inputs import docstring_corpus, save_sae
from vista_tui.mapdata import MapReader, Store, read_atlas

pytestmark = pytest.mark.slow

DEAD = 5
LATENTS = "0-5"


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sae(tmp_path_factory.mktemp("sae"), 384, dead_latent=DEAD)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return docstring_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl", 120)


def atlas_cfg(corpus: Path, sae_dir: Path, **overrides: Any) -> AtlasConfig:
    """A tiny atlas: 6 latents, 30 contexts each, batches of 4 (so the corpus has many shard boundaries)."""
    harvest = AtlasHarvestConfig(
        model="minilm",
        hook="3",
        corpus=(str(corpus),),
        latents=LATENTS,
        sae_path=str(sae_dir),
        top_n=30,
        max_length=64,
        batch_size=4,
        device="cpu",
    )
    return AtlasConfig(harvest=replace(harvest, **overrides))


def report(step: str, description: str) -> Any:
    """A StageReporter that reports nothing."""
    return no_progress


def maps_of(atlas_dir: Path) -> dict[int, tuple[list[str], list[tuple[str, tuple[int, ...]]]]]:
    """Per built latent: its contexts' ids in order, and its tree as (node id, members)."""
    out = {}
    for row in read_atlas(atlas_dir).rows():
        if row.built:
            reader = MapReader(atlas_dir / "maps" / row.map_id)
            contexts = reader.contexts_table(["context_id"]).column("context_id").to_pylist()
            tree = [(node.node_id, tuple(node.members.tolist())) for node in reader.tree]
            out[row.latent] = (contexts, tree)
    return out


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory, corpus: Path, sae_dir: Path) -> AtlasReport:
    """The reference atlas, built in this process."""
    store = Store(tmp_path_factory.mktemp("in-process"))
    return build_atlas(atlas_cfg(corpus, sae_dir), store, InProcess(), report)


def test_the_in_process_atlas(in_process: AtlasReport) -> None:
    atlas = read_atlas(in_process.atlas_dir)
    rows = {row.latent: row for row in atlas.rows()}
    assert atlas.manifest.latents == tuple(range(6))
    assert not rows[DEAD].built and rows[DEAD].error.startswith("never fired")
    built = [row for row in rows.values() if row.built]
    assert len(built) == 5 and in_process.built_now == 5 and in_process.unbuildable.keys() == {DEAD}
    for row in built:
        assert row.n_contexts == 30 and row.top_tokens and row.fidelity_k > 0 and 0 < row.density < 1
        assert (in_process.atlas_dir / "maps" / row.map_id / "manifest.json").is_file()


def test_ray_builds_the_same_maps(
    ray_local: None, in_process: AtlasReport, tmp_path: Path, corpus: Path, sae_dir: Path
) -> None:
    from pipeline.atlas.engine import RayEngine

    engine = RayEngine(workers=2)
    try:
        on_ray = build_atlas(atlas_cfg(corpus, sae_dir), Store(tmp_path), engine, report)
    finally:
        engine.close()
    assert on_ray.atlas_dir.name == in_process.atlas_dir.name  # same atlas id whatever the engine
    assert maps_of(on_ray.atlas_dir) == maps_of(in_process.atlas_dir)  # same contexts, same trees
    ours, theirs = read_atlas(on_ray.atlas_dir).rows(), read_atlas(in_process.atlas_dir).rows()
    assert [(r.latent, r.n_fired, r.top_tokens, r.built) for r in ours] == [
        (r.latent, r.n_fired, r.top_tokens, r.built) for r in theirs
    ]


def test_a_lost_worker_still_gives_a_whole_atlas(
    ray_local: None, in_process: AtlasReport, tmp_path: Path, corpus: Path, sae_dir: Path
) -> None:
    """The FAIL_ONCE hook kills the process of every pass shard and map build once (`os._exit`): Ray restarts
    the actors, retries the tasks, and the atlas comes out whole and the same."""
    from pipeline.atlas.engine import RayEngine

    killed = tmp_path / "killed"
    engine = RayEngine(workers=2, fail_once_dir=str(killed))
    try:
        result = build_atlas(atlas_cfg(corpus, sae_dir), Store(tmp_path / "store"), engine, report)
    finally:
        engine.close()
    markers = sorted(path.name for path in killed.iterdir())
    assert "pass1-0.failed" in markers and "pass2-0.failed" in markers
    assert [f"map-{latent}.failed" for latent in range(6)] == sorted(m for m in markers if m.startswith("map-"))
    assert not result.failed and result.built_now == 5
    assert maps_of(result.atlas_dir) == maps_of(in_process.atlas_dir)


def test_a_rerun_skips_what_is_built_and_finishes_the_rest(
    in_process: AtlasReport, tmp_path: Path, corpus: Path, sae_dir: Path, umap_warm: None
) -> None:
    store = Store(tmp_path)
    shutil.copytree(in_process.atlas_dir, store.atlas_path(in_process.atlas_dir.name))
    atlas_dir = store.atlas_path(in_process.atlas_dir.name)
    before = maps_of(atlas_dir)
    removed = read_atlas(atlas_dir).rows()[2].map_id
    shutil.rmtree(atlas_dir / "maps" / removed)  # as if the run had stopped before latent 2's map

    class NoHarvest(InProcess):
        """Fails if asked to harvest: a rerun must reuse the cached one."""

        def harvest(self, cfg: AtlasHarvestConfig, report: Any) -> Any:
            raise AssertionError("the rerun harvested again")

    again = build_atlas(atlas_cfg(corpus, sae_dir), store, NoHarvest(), report)
    assert (again.built_now, again.up_to_date) == (1, 4)
    assert maps_of(atlas_dir) == before
    third = build_atlas(atlas_cfg(corpus, sae_dir), store, NoHarvest(), report)
    assert (third.built_now, third.up_to_date) == (0, 5)
    assert json.loads((atlas_dir / HARVEST_DIR / "done.json").read_text())["latents"] == 6


def test_the_requested_order_is_written_and_kept_by_a_rerun(
    in_process: AtlasReport, tmp_path: Path, corpus: Path, sae_dir: Path
) -> None:
    store = Store(tmp_path)
    shutil.copytree(in_process.atlas_dir, store.atlas_path(in_process.atlas_dir.name))
    atlas_dir = store.atlas_path(in_process.atlas_dir.name)
    assert [row.order for row in read_atlas(atlas_dir).rows()] == [-1] * 6  # built with no order

    class NoHarvest(InProcess):
        """Fails if asked to harvest or build: every map is built already."""

        def harvest(self, cfg: AtlasHarvestConfig, report: Any) -> Any:
            raise AssertionError("the rerun harvested again")

    ordered = replace(atlas_cfg(corpus, sae_dir), first=(4, DEAD, 1))  # as the demo asks: most varied first
    again = build_atlas(ordered, store, NoHarvest(), report)
    assert again.atlas_dir == atlas_dir and again.built_now == 0  # the same atlas: its id holds no order
    assert [row.order for row in read_atlas(atlas_dir).rows()] == [-1, 2, -1, -1, 0, 1]
    build_atlas(atlas_cfg(corpus, sae_dir), store, NoHarvest(), report)  # a rerun not asking for an order
    assert [row.order for row in read_atlas(atlas_dir).rows()] == [-1, 2, -1, -1, 0, 1]
    assert maps_of(atlas_dir) == maps_of(in_process.atlas_dir)


def test_the_atlas_id_is_stable_and_names_what_it_is_of(corpus: Path, sae_dir: Path) -> None:
    first, same = atlas_id_for(atlas_cfg(corpus, sae_dir)), atlas_id_for(atlas_cfg(corpus, sae_dir))
    assert first == same and first.startswith("minilm_h3_")
    assert atlas_id_for(atlas_cfg(corpus, sae_dir, top_n=31)) != first
    assert atlas_id_for(atlas_cfg(corpus, sae_dir, device="auto")) == first  # the device is not what it is of


# -- sharding: bitwise the unsharded pass 1 -----------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [None, 3000])
@pytest.mark.parametrize("n_shards", [2, 3])
def test_aligned_shards_give_bitwise_the_unsharded_pass1(
    corpus: Path, sae_dir: Path, max_tokens: int | None, n_shards: int
) -> None:
    from pipeline.atlas.harvest import prepare
    from pipeline.atlas.pass1 import merge_results, scan
    from pipeline.corpus import iter_documents

    cfg = atlas_cfg(corpus, sae_dir, max_tokens=max_tokens, batch_size=2).harvest  # windows of 32 chunks
    model, sae = prepare(cfg)
    whole = scan(cfg, enumerate(iter_documents(cfg.corpus)), model, sae)
    plan = plan_corpus(cfg, model.tokenizer)
    assert (plan.n_tokens, plan.n_documents) == (whole.n_tokens, whole.n_documents)
    assert plan.cut == (max_tokens is not None)
    shards = split(plan, n_shards, cap_last=plan.cut)
    assert len(shards) == n_shards
    assert [shard.start for shard in shards[1:]] == [shard.stop for shard in shards[:-1]] and shards[0].start == 0
    assert sum(shard.n_tokens for shard in shards) == whole.n_tokens
    results = [run_pass1_shard(cfg, shard, model, sae, no_progress) for shard in shards]
    assert [result.n_tokens for result in results] == [shard.n_tokens for shard in shards]
    for order in (results, results[::-1]):  # any order: the merge is associative and commutative
        merged = order[0]
        for part in order[1:]:
            merged = merge_results(merged, part)
        assert merged.n_tokens == whole.n_tokens and merged.end_key == whole.end_key
        np.testing.assert_array_equal(merged.top.keys, whole.top.keys)
        np.testing.assert_array_equal(merged.top.acts, whole.top.acts)
        np.testing.assert_array_equal(merged.counts.n_fired, whole.counts.n_fired)
    running = results[0]
    for part in results[1:]:
        running = merge_results(running, part, in_place=True)  # the engine's running merge
    np.testing.assert_array_equal(running.top.keys, whole.top.keys)


def chunks_per_document(cfg: AtlasHarvestConfig, tokenizer: Any, keep: set[int] | None = None) -> dict[int, int]:
    """Each document's chunks, counted by the harvest's chunker."""
    from pipeline.corpus import iter_documents
    from pipeline.harvest.batches import iter_chunks
    from pipeline.harvest.ordinals import indexed

    documents = [(i, d) for i, d in enumerate(iter_documents(cfg.corpus)) if keep is None or i in keep]
    out: dict[int, int] = {}
    for chunk in iter_chunks(indexed(documents), tokenizer, cfg.max_length, None, {}):
        out[chunk.document.index] = out.get(chunk.document.index, 0) + 1
    return out


@pytest.mark.parametrize("most", [1024, 6])
def test_a_shard_ends_only_where_a_sorting_window_does(
    corpus: Path, sae_dir: Path, most: int, monkeypatch: Any
) -> None:
    from pipeline.atlas import engine
    from pipeline.atlas.harvest import prepare

    monkeypatch.setattr(engine, "MAX_CANDIDATES", most)  # 6: the places are thinned as the corpus streams
    cfg = atlas_cfg(corpus, sae_dir, batch_size=1).harvest  # windows of 16 chunks: many places to end
    model, _ = prepare(cfg)
    window = sort_window(cfg.batch_size)
    for keep in (None, set(range(0, 120, 3))):
        plan = plan_corpus(cfg, model.tokenizer, keep=keep)
        assert 3 <= len(plan.ends) <= most
        chunks = chunks_per_document(cfg, model.tokenizer, keep)
        assert plan.n_documents == len(chunks) and plan.stop == max(chunks) + 1
        shards = split(plan, 3, cap_last=False)
        assert len(shards) == 3
        ends = np.cumsum([sum(n for i, n in chunks.items() if shard.start <= i < shard.stop) for shard in shards])
        assert all(end % window == 0 for end in ends[:-1])
        assert [shard.n_documents for shard in shards] == [
            sum(1 for i in chunks if shard.start <= i < shard.stop) for shard in shards
        ]
        read = [index for shard in shards for index, _ in shard.documents(cfg)]
        assert read == list(range(plan.stop))  # contiguous, every document once
