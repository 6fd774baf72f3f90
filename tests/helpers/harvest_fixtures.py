"""The harvest tests' shared fixtures: the real MiniLM once per module, a seeded sae-lens SAE, a small real corpus.

Used by tests/pipeline/test_harvest.py and test_harvest_stats.py (import the fixtures by name). Needs the
pipeline extra: import this module after `pytest.importorskip` of torch, sae_lens and the MiniLM package.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Any

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
