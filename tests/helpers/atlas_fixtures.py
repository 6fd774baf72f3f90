"""The atlas tests' shared fixtures: a corpus of equal-length documents, an SAE with planted ties and dead
latents, and brute-force references computed from the full activation matrix.

Builds on tests/helpers/harvest_fixtures.py (the real MiniLM, its seeded TopK SAE and small corpus).
Import after `pytest.importorskip` of torch, sae_lens and the MiniLM package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline import models as M
from pipeline.atlas import AtlasHarvestConfig
from pipeline.atlas.pass1 import ENCODE_BUDGET, model_batches, open_hook
from pipeline.corpus import Document, iter_documents
from pipeline.harvest.ordinals import batch_keys
from pipeline.harvest.stats import FiringStats

TIED_D_SAE = 64
CONSTANT = (0, 1, 2, 3)
"""Latents whose encoder column is zero: exactly 0.5 (their bias) on every token — every token ties."""
TIED_DEAD = (4, 5)
"""Latents that never fire (zero column, negative bias)."""
WORDS = [
    "time",
    "people",
    "year",
    "way",
    "day",
    "man",
    "thing",
    "woman",
    "life",
    "child",
    "world",
    "school",
    "state",
    "family",
    "student",
    "group",
    "country",
    "problem",
    "hand",
    "part",
    "place",
    "case",
    "week",
    "company",
    "system",
    "program",
    "question",
    "work",
    "government",
    "number",
    "night",
    "point",
    "home",
    "water",
    "room",
    "mother",
    "area",
    "money",
    "story",
    "fact",
    "month",
    "lot",
    "right",
    "study",
    "book",
    "eye",
    "job",
    "word",
    "business",
    "issue",
    "side",
    "kind",
    "head",
    "house",
    "service",
    "friend",
    "father",
    "power",
    "hour",
    "game",
    "line",
    "end",
    "member",
    "law",
    "car",
    "city",
    "community",
    "name",
    "president",
    "team",
]


@pytest.fixture(scope="module")
def tied_sae() -> Any:
    """A seeded ReLU SAE on MiniLM's block 3 with constant latents (planted ties) and dead latents."""
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(1)
    sae = StandardSAE(StandardSAEConfig(d_in=384, d_sae=TIED_D_SAE))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.05)
        sae.b_enc.fill_(-0.6)  # sparse: most latents fire on a few tokens
        sae.W_enc[:, list(CONSTANT + TIED_DEAD)] = 0.0
        sae.b_enc[list(CONSTANT)] = 0.5
        sae.b_enc[list(TIED_DEAD)] = -1.0
    return sae.eval()


@pytest.fixture(scope="module")
def even_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 documents of 9 common words each (one wordpiece each): every model input has the same length, so the
    single-latent harvest's processing order is corpus order (ties between inputs of different lengths:
    `uneven_corpus` in test_atlas_pass2.py)."""
    rng = np.random.default_rng(3)
    rows = [{"id": f"d{i}", "text": " ".join(rng.choice(WORDS, 9))} for i in range(60)]
    path = tmp_path_factory.mktemp("even") / "even.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def atlas_cfg(corpus_file: Path, sae_folder: Path | None, **overrides: Any) -> AtlasHarvestConfig:
    """An atlas config over MiniLM's block 3 (sae_path only names the SAE: tests pass it loaded)."""
    params: dict[str, Any] = dict(
        model="minilm",
        hook="3",
        latents="all",
        corpus=(str(corpus_file),),
        sae_path=str(sae_folder or "sae"),
        top_n=25,
        window=5,
        max_length=64,
        batch_size=8,
        device="cpu",
    )
    params.update(overrides)
    return AtlasHarvestConfig(**params)


def indexed_documents(corpus_file: Path) -> list[tuple[int, Document]]:
    """The corpus as (document index, document) pairs."""
    return list(enumerate(iter_documents([str(corpus_file)])))


@dataclass(frozen=True)
class DenseTokens:
    """Every real token's activations on every latent, computed in pass 1's batches (so bitwise its values)."""

    acts: np.ndarray
    """(tokens, d_sae) float32, in processing order."""
    keys: np.ndarray
    """(tokens,) int64 token keys."""
    firing: dict[int, FiringStats]
    """Per latent, FiringStats fed batch by batch as the single-latent harvest feeds it."""


def dense_tokens(
    cfg: AtlasHarvestConfig, minilm: M.LoadedModel, sae: Any, documents: Iterator[tuple[int, Document]]
) -> DenseTokens:
    """The full activation matrix, batch by batch, and the single-latent harvest's FiringStats of every latent."""
    forward, _, d_sae = open_hook(minilm, sae, cfg.hook, cfg.max_length)
    firing = {latent: FiringStats(cfg.max_length) for latent in range(d_sae)}
    acts, keys = [], []
    rows = max(1, ENCODE_BUDGET // d_sae)
    with torch.inference_mode():
        for batch, (input_ids, attention, real) in model_batches(cfg, documents, minilm, {}):
            hidden = forward(torch.from_numpy(input_ids), torch.from_numpy(attention))
            tokens = hidden[torch.from_numpy(real)]
            block = torch.cat([sae.encode(tokens[s : s + rows]) for s in range(0, len(tokens), rows)]).float().numpy()
            columns = np.nonzero(real)[1]
            for latent in range(d_sae):
                firing[latent].add(block[:, latent], columns)
            acts.append(block)
            keys.append(batch_keys(batch))
    return DenseTokens(acts=np.concatenate(acts), keys=np.concatenate(keys), firing=firing)


def brute_top(acts: np.ndarray, keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The n best positive (activation, key) pairs by activation descending, key ascending: plain sorting."""
    fired = np.flatnonzero(acts > 0)
    order = sorted(fired.tolist(), key=lambda i: (-float(acts[i]), int(keys[i])))[:n]
    return acts[order], keys[order]
