"""The harvest tests' shared fixtures: the real MiniLM once per module, a seeded sae-lens SAE, a small real corpus,
and a brute-force pass over it.

Used by tests/pipeline/test_harvest.py, test_harvest_stats.py and test_harvest_quantiles.py (import the fixtures
by name). Needs the pipeline extra: import this module after `pytest.importorskip` of torch, sae_lens and the
MiniLM package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline import harvest as H
from pipeline import models as M
from pipeline.corpus import STDLIB_DOCSTRINGS, iter_documents

D_SAE = 256
DEAD = 255
"""A latent whose encoder bias is hugely negative: it never fires."""
TOP_N = 25
WINDOW = 5
LATENTS = (3, 18, 42, 158, 229, DEAD)


# -- fixtures: the model once per module, a seeded SAE, a small real corpus ----------------


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    # The test machine's cores are shared: two OpenMP threads contending with another process
    # run these small matmuls ~7x slower than one thread. Values are compared with tolerances.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm() -> M.LoadedModel:
    return M.load_model("minilm", "cpu")


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=384, d_sae=D_SAE, k=8))
    with torch.no_grad():
        sae.b_enc[DEAD] = -1e4
    path = tmp_path_factory.mktemp("sae")
    sae.save_inference_model(path)
    return path


@pytest.fixture(scope="module")
def sae(sae_dir: Path) -> Any:
    return M.load_sae(sae_path=str(sae_dir))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 short stdlib docstrings plus one long document (several model inputs long), as JSONL."""
    short = [d for d in islice(iter_documents([STDLIB_DOCSTRINGS]), 400) if 40 < len(d.text) < 400][:40]
    long_text = " ".join(d.text for d in short[:12])
    rows = [{"id": d.doc_id, "text": d.text} for d in short] + [{"id": "long", "text": long_text}]
    path = tmp_path_factory.mktemp("corpus") / "docstrings.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def make_cfg(corpus_file: Path, sae_folder: Path, **overrides: Any) -> H.HarvestConfig:
    params: dict[str, Any] = dict(
        model="minilm",
        hook="3",
        latents=LATENTS,
        corpus=(str(corpus_file),),
        sae_path=str(sae_folder),
        top_n=TOP_N,
        window=WINDOW,
        max_length=64,  # the long document spans several inputs
        batch_size=8,
        device="cpu",
    )
    params.update(overrides)
    return H.HarvestConfig(**params)


@dataclass(frozen=True)
class BruteTokens:
    """Every real token of a corpus computed the plain way, in corpus order (chunks of a document in order)."""

    acts: np.ndarray
    """(tokens, latents): the requested latents' activations."""
    doc_ids: list[str]
    windows: list[tuple[tuple[str, ...], int]]
    """Each token's window as a context shows it: display tokens (WINDOW each side, inside its
    model input) and the focus position in them. Its tokens are rows t - focus .. of `acts`."""
    token_texts: list[str]
    """Each token's own text in its document."""
    positions: np.ndarray
    """Each token's position in its model input (0 = the first input token, special tokens included)."""


def brute_force_tokens(
    minilm: M.LoadedModel, sae: Any, corpus_file: Path, latents: tuple[int, ...], max_length: int = 64
) -> BruteTokens:
    """One input at a time through the full model (output_hidden_states), block 3's output encoded by the SAE."""
    from pipeline.harvest.windows import display_pieces

    tokenizer, model = minilm.tokenizer, minilm.model
    acts, positions, doc_ids, windows, texts = [], [], [], [], []
    with torch.inference_mode():
        for document in iter_documents([str(corpus_file)]):
            encoded = tokenizer(
                document.text,
                truncation=True,
                max_length=max_length,
                return_overflowing_tokens=True,
                return_special_tokens_mask=True,
                return_offsets_mapping=True,
            )
            for ids, special, offsets in zip(
                encoded["input_ids"], encoded["special_tokens_mask"], encoded["offset_mapping"], strict=True
            ):
                real = ~np.asarray(special, dtype=bool)
                hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[4][0]
                acts.append(sae.encode(hidden[torch.from_numpy(real)]).numpy()[:, list(latents)])
                positions.append(np.flatnonzero(real))
                spans = np.asarray(offsets)[real]
                for k, (start, end) in enumerate(spans):
                    lo = max(0, k - WINDOW)
                    windows.append((tuple(display_pieces(document.text, spans[lo : k + WINDOW + 1])), k - lo))
                    doc_ids.append(document.doc_id)
                    texts.append(document.text[start:end])
    return BruteTokens(
        acts=np.concatenate(acts),
        doc_ids=doc_ids,
        windows=windows,
        token_texts=texts,
        positions=np.concatenate(positions),
    )
