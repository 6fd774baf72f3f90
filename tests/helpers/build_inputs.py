"""What a real `vista build` in a test needs: a small sae-lens SAE on disk and a small real corpus.

Needs the pipeline extra (torch, sae-lens); import it in modules that run the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

D_SAE = 64
"""Latents of the test SAE."""


def save_sae(path: Path, d_in: int, dead_latent: int | None = None) -> Path:
    """A seeded TopK SAE of `d_in` inputs saved by sae-lens at `path`; `dead_latent` never fires."""
    import torch
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=D_SAE, k=8))
    if dead_latent is not None:
        with torch.no_grad():
            sae.b_enc[dead_latent] = -1e4  # never among the top k: the latent never fires
    sae.save_inference_model(path)
    return path


def docstring_corpus(path: Path, n_documents: int) -> Path:
    """The first `n_documents` stdlib docstrings as JSONL at `path` (`id`, `text`)."""
    from pipeline.corpus import iter_documents

    with path.open("w") as handle:
        for i, doc in enumerate(iter_documents(["python-stdlib-docstrings"])):
            if i == n_documents:
                break
            handle.write(json.dumps({"id": doc.doc_id, "text": doc.text}) + "\n")
    return path
