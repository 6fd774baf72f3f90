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


def save_split_sae(path: Path, parent: Path, copies: int = 4, noise: float = 0.05, k: int = 8) -> Path:
    """A wider TopK SAE saved at `path` whose latent `copies * i + j` is latent i of the SAE at `parent`, its
    encoder and decoder directions perturbed (seeded): each parent latent's likely children, as a wider SAE
    trained on the same activations splits it."""
    import torch
    from sae_lens import SAE, TopKTrainingSAE, TopKTrainingSAEConfig

    source = SAE.load_from_disk(parent, device="cpu")
    d_in, d_sae = int(source.cfg.d_in), int(source.cfg.d_sae)
    torch.manual_seed(1)
    wide = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae * copies, k=k))
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc"):
            parent_weights = getattr(source, name).detach()
            dim = 1 if name == "W_enc" else 0
            repeated = parent_weights.repeat_interleave(copies, dim=dim)
            spread = parent_weights.abs().mean() * noise
            getattr(wide, name).copy_(repeated + spread * torch.randn_like(repeated))
        wide.b_dec.copy_(source.b_dec.detach())
    wide.save_inference_model(path)
    return path
