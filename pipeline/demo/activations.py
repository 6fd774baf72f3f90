"""The demo SAE's training data: MiniLM's activations at the hook over shuffled stdlib docstrings.

The corpus's documents are shuffled with the seed; the first ones (`n_heldout_tokens` tokens)
are held out for evaluation and latent statistics, the next ones (`n_train_tokens`) are the
training set. The model runs only up to the hook (the same `HookedForward` the harvest uses,
so "hook 3" means the same thing in both), without gradients, in batches of similar length;
[CLS], [SEP] and padding are not collected.

torch is imported inside `collect_activations`: only a training run pays for it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.corpus import Document, iter_documents
from pipeline.demo.latents import token_masks
from pipeline.demo.sae_config import DemoSAEConfig
from pipeline.models import HookedForward, LoadedModel, load_model, resolve_hook
from pipeline.steps import Progress

_DOCS_PER_TOKENIZER_CALL = 128


@dataclass
class Activations:
    """The hook's activations of real tokens: held-out rows first, then training rows."""

    activations: Any
    """torch float32 (n, d_model)."""
    token_ids: np.ndarray
    """int32 (n,): the token at each row (for the latent statistics)."""
    n_heldout: int
    n_documents: int
    forward_seconds: float
    punctuation: np.ndarray
    """bool (vocab,): token ids whose text has no letter or digit."""
    continuation: np.ndarray
    """bool (vocab,): token ids of pieces inside a word ("##ing")."""
    model_name: str
    hook_path: str


@dataclass
class _Piece:
    """One model input: a document or a max_length piece of a long one."""

    input_ids: np.ndarray
    collect: np.ndarray
    """True where the token's activation is collected (real tokens within the budget)."""
    row: int
    """Row of the first collected token in the activation matrix."""


def collect_activations(
    cfg: DemoSAEConfig, progress: Progress, documents: Iterable[Document] | None, model: LoadedModel | None
) -> Activations:
    """Run the model to the hook over shuffled documents until both token budgets are filled."""
    # torch, and transformers through the model loading: heavy, only when training.
    import torch

    documents = list(iter_documents([cfg.corpus]) if documents is None else documents)
    random.Random(cfg.seed).shuffle(documents)
    loaded = model if model is not None else load_model(cfg.model, device="cpu")
    tokenizer = loaded.tokenizer
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    if positions is not None and cfg.max_length > positions:
        raise ValueError(f"max_length must be at most {positions} for model {cfg.model}, got {cfg.max_length}")
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)

    budgets = [cfg.n_heldout_tokens, cfg.n_train_tokens]
    pieces: list[_Piece] = []
    token_ids: list[np.ndarray] = []
    filled, split, n_documents, n_total = 0, 0, 0, 0
    for start in range(0, len(documents), _DOCS_PER_TOKENIZER_CALL):
        if split == len(budgets):
            break
        group = documents[start : start + _DOCS_PER_TOKENIZER_CALL]
        encoded = tokenizer(
            [document.text for document in group],
            truncation=True,
            max_length=cfg.max_length,
            return_overflowing_tokens=True,
            stride=0,
            return_special_tokens_mask=True,
        )
        previous_doc = -1
        for i, doc_index in enumerate(encoded["overflow_to_sample_mapping"]):
            if doc_index != previous_doc:
                # Documents, not tokens, are split between held-out and training: a document's
                # tokens are alike, and sharing them would flatter the held-out figures.
                if split < len(budgets) and filled >= budgets[split]:
                    split, filled = split + 1, 0
                if split == len(budgets):
                    break
                previous_doc = doc_index
                n_documents += 1
            ids = np.asarray(encoded["input_ids"][i], dtype=np.int64)
            collect = ~np.asarray(encoded["special_tokens_mask"][i], dtype=bool)
            left = budgets[split] - filled
            if left <= 0:
                continue  # the rest of a long document that already filled the budget
            real = np.flatnonzero(collect)
            if len(real) > left:
                collect[real[left:]] = False  # still context for the kept tokens, not collected
            n = int(collect.sum())
            if n == 0:
                continue
            pieces.append(_Piece(ids, collect, n_total))
            token_ids.append(ids[collect].astype(np.int32))
            filled += n
            n_total += n
    if n_total == 0:
        raise ValueError(f"corpus {cfg.corpus!r} gave no tokens to train the demo SAE on")
    if split == 0 or (split == 1 and filled == 0):
        raise ValueError(
            f"corpus {cfg.corpus!r} has too few tokens for n_heldout_tokens={cfg.n_heldout_tokens}"
            " plus training tokens; lower n_heldout_tokens"
        )
    n_heldout = cfg.n_heldout_tokens
    if n_total - n_heldout < cfg.batch_size:
        raise ValueError(
            f"corpus {cfg.corpus!r} leaves {n_total - n_heldout} training tokens after the held-out ones,"
            f" fewer than batch_size={cfg.batch_size}; lower n_heldout_tokens or batch_size"
        )

    # Longest first and stable: batches pad little, and the order is deterministic.
    order = sorted(range(len(pieces)), key=lambda p: -len(pieces[p].input_ids))
    activations: Any = None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    forward_started = time.perf_counter()
    done = 0
    with torch.inference_mode():
        for start in range(0, len(order), cfg.forward_batch_size):
            batch = [pieces[p] for p in order[start : start + cfg.forward_batch_size]]
            width = len(batch[0].input_ids)
            input_ids = np.full((len(batch), width), pad_id, dtype=np.int64)
            attention = np.zeros((len(batch), width), dtype=np.int64)
            collect = np.zeros((len(batch), width), dtype=bool)
            for row, piece in enumerate(batch):
                input_ids[row, : len(piece.input_ids)] = piece.input_ids
                attention[row, : len(piece.input_ids)] = 1
                collect[row, : len(piece.collect)] = piece.collect
            # Collected tokens come out row by row; each piece's go to its own rows of the matrix.
            destination = np.concatenate([piece.row + np.arange(int(piece.collect.sum())) for piece in batch])
            hidden = forward(torch.from_numpy(input_ids), torch.from_numpy(attention))
            if activations is None:
                activations = torch.empty((n_total, hidden.shape[-1]), dtype=torch.float32)
            activations[torch.from_numpy(destination)] = hidden[torch.from_numpy(collect)].float()
            done += len(destination)
            progress(done, n_total, "MiniLM forward to the hook")
    forward_seconds = time.perf_counter() - forward_started
    punctuation, continuation = token_masks(tokenizer)
    return Activations(
        activations=activations,
        token_ids=np.concatenate(token_ids),
        n_heldout=n_heldout,
        n_documents=n_documents,
        forward_seconds=forward_seconds,
        punctuation=punctuation,
        continuation=continuation,
        model_name=loaded.name,
        hook_path=hook_path,
    )
