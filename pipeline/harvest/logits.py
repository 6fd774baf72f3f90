"""The decoder direction's logits: which tokens a latent pushes up and which it pushes down.

SAEDashboard's definition: `W_dec[latent] @ W_U`, the SAE's decoder row times the model's
unembedding alone, with no final layer norm and no bias. It shows how the latent's direction
reads through the LM head. It is not what the model would predict. Per latent the `K` highest
and `K` lowest tokens are kept, ties broken by token id, so a rerun gives the same lists.

A model loaded without an LM head gets none (the demo's MiniLM is a BertModel checkpoint), and
so does an SAE whose width is not the unembedding's (e.g. one on an MLP's inner layer). Each
latent then gets a one-line note instead, and the explorer shows it.

torch is imported inside the functions: it takes seconds and a config check must not pay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.harvest.result import LatentHarvest
from pipeline.models import LoadedModel
from vista_tui.mapdata import DecoderLogits, TokenLogit

K = 20
"""Tokens kept at each end: the top K positive and the bottom K negative logits."""
_VOCAB_BLOCK = 1 << 16
"""Columns of the unembedding cast to float32 at a time (a 256k vocabulary would double its memory)."""

LatentLogits = tuple[DecoderLogits | None, str]
"""A latent's logits (None when there are none) and the note saying why not ("" when there are)."""


def decoder_logits(sae: Any, latents: Sequence[int], loaded: LoadedModel, k: int = K) -> dict[int, LatentLogits]:
    """Per latent, the top `k` and bottom `k` entries of `sae.W_dec[latent] @ loaded.unembedding`, or a note."""
    if loaded.unembedding is None:
        note = loaded.unembedding_note or f"no unembedding: {loaded.name} is loaded without an LM head"
        return {latent: (None, note) for latent in latents}
    import torch  # heavy; the caller has a model loaded already

    unembedding = loaded.unembedding
    d_model = int(unembedding.shape[0])
    d_in = int(sae.W_dec.shape[1])
    if d_in != d_model:
        note = f"no unembedding for this hook: the SAE's width {d_in} is not the model's {d_model}"
        return {latent: (None, note) for latent in latents}
    # Columns past the tokenizer's vocabulary pad the matrix to a round size: no text holds those ids.
    n_vocab = min(int(unembedding.shape[1]), len(loaded.tokenizer))
    with torch.inference_mode():
        index = torch.as_tensor(list(latents), dtype=torch.long, device=sae.W_dec.device)
        rows = sae.W_dec.index_select(0, index).to(device=unembedding.device, dtype=torch.float32)
        blocks = [
            rows @ unembedding[:, start : min(start + _VOCAB_BLOCK, n_vocab)].float()
            for start in range(0, n_vocab, _VOCAB_BLOCK)
        ]
        values = torch.cat(blocks, dim=1).cpu().numpy()
    out: dict[int, LatentLogits] = {}
    for row, latent in enumerate(latents):
        positive = [_token_logit(loaded.tokenizer, values[row], i) for i in _extreme(values[row], k, highest=True)]
        negative = [_token_logit(loaded.tokenizer, values[row], i) for i in _extreme(values[row], k, highest=False)]
        out[latent] = (DecoderLogits(positive=tuple(positive), negative=tuple(negative)), "")
    return out


def _extreme(values: np.ndarray, k: int, *, highest: bool) -> np.ndarray:
    """Token ids of the `k` highest (or lowest) values, most extreme first; ties: lower id first."""
    scores = values if highest else -values
    k = min(k, scores.size)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    threshold = np.partition(scores, scores.size - k)[scores.size - k]
    # Every id tied with the k-th value is a candidate, so the cut does not depend on partition order.
    candidates = np.flatnonzero(scores >= threshold)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order[:k]]


def _token_logit(tokenizer: Any, values: np.ndarray, token_id: int) -> TokenLogit:
    """One token as the tokenizer decodes it alone (a leading space kept) and its logit."""
    token = tokenizer.decode([int(token_id)], clean_up_tokenization_spaces=False)
    return TokenLogit(token=token, token_id=int(token_id), value=float(values[token_id]))


def with_logits(harvests: dict[int, LatentHarvest], logits: dict[int, LatentLogits]) -> dict[int, LatentHarvest]:
    """The harvests with each latent's logits and note set on its statistics (latents without statistics as they are)."""
    out = dict(harvests)
    for latent, (decoded, note) in logits.items():
        harvest = out.get(latent)
        if harvest is not None and harvest.stats is not None:
            out[latent] = replace(harvest, stats=replace(harvest.stats, logits=decoded, logits_note=note))
    return out
