"""Which latents of the demo SAE get a map: those "with rich structure".

A VISTA map is worth drilling into when the latent has sub-senses: it fires on many
different words that share something, so its contexts fall into several clusters. A latent
that fires on one word (" return") makes one blob; one that fires on commas makes a map of
punctuation; one that fires a dozen times makes no map at all. So, from statistics over
held-out tokens (gathered in one pass by `gather_latent_stats`), `pick_latents` keeps the
latents that

1. fire often enough to give hundreds of contexts over the corpus, but are not dense
   (firing rate within [min_fire_rate, max_fire_rate], and at least min_fires times);
2. are not dominated by one token (the most common focus token holds at most
   max_top_share of the latent's top activations), nor by punctuation (at most
   max_punct_share), nor by word-piece continuations such as "##ing" (at most
   max_continuation_share: those latents read spelling, not meaning), and fire on at least
   min_distinct different tokens;

ranks them by the entropy (bits) of the focus-token distribution among their top
activations — more distinct, evenly used tokens first; ties: more firings, then the lower
index — and walks down that ranking, skipping a latent whose most common tokens overlap
(Jaccard > max_overlap) with those of a latent already picked, so the maps differ. When fewer
than n pass, the rest is filled from the other latents that fired, in the same order.
Everything is deterministic: the same statistics give the same picks.

The demo's atlas takes more latents than the rule passes, so `most_varied` orders them in tiers:
the demo's maps, the rule's picks, then the rest of the density band (neither dead nor dense) by
focus-token entropy, then any latent that fired.

Only numpy at import; torch is used through the SAE object the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from vista_tui.mapdata import atomic_write


@dataclass(frozen=True)
class LatentStats:
    """Per-latent statistics over `n_tokens` held-out tokens (arrays of length d_sae)."""

    n_tokens: int
    top_k: int
    """How many of each latent's highest activations the token statistics look at."""
    fire_count: np.ndarray
    """int64: tokens on which the latent is above zero."""
    n_distinct: np.ndarray
    """int64: distinct focus token ids among the latent's top activations."""
    entropy: np.ndarray
    """float64: entropy in bits of the focus-token distribution among the top activations."""
    top_share: np.ndarray
    """float64: share of the most common focus token among the top activations (0 if never fired)."""
    punct_share: np.ndarray
    """float64: share of punctuation-only tokens among the top activations."""
    continuation_share: np.ndarray
    """float64: share of word-piece continuations ("##ing") among the top activations."""
    max_activation: np.ndarray
    """float32: the highest activation seen."""
    top_tokens: np.ndarray
    """int32 (d_sae, m): the m most common focus token ids among the top activations, -1 padded."""
    top_token_counts: np.ndarray
    """int32 (d_sae, m): how often each of `top_tokens` occurs there."""

    @property
    def d_sae(self) -> int:
        """Number of latents."""
        return len(self.fire_count)

    @property
    def fire_rate(self) -> np.ndarray:
        """Fraction of held-out tokens on which each latent fires."""
        return self.fire_count / max(self.n_tokens, 1)


def gather_latent_stats(
    sae: Any,
    activations: Any,
    token_ids: np.ndarray,
    punctuation: np.ndarray,
    continuation: np.ndarray | None = None,
    top_k: int = 256,
    n_top_tokens: int = 8,
    batch_size: int = 4096,
) -> LatentStats:
    """One pass of the SAE over held-out activations → the statistics `pick_latents` ranks by.

    `activations` is a torch (n, d_in) tensor, `token_ids` the (n,) token at each row;
    `punctuation` and `continuation` are bool masks over the vocabulary (see
    `token_masks`). Latents' top activations are ranked by value, ties by row, so the result
    is deterministic.
    """
    import torch  # the caller's SAE is a torch module; torch is loaded already

    token_ids = np.asarray(token_ids, dtype=np.int64)
    n = int(activations.shape[0])
    if len(token_ids) != n:
        raise ValueError(f"token_ids has {len(token_ids)} entries for {n} activation rows")
    if top_k < 1 or n_top_tokens < 1:
        raise ValueError(f"top_k and n_top_tokens must be positive, got {top_k} and {n_top_tokens}")
    d_sae = int(sae.cfg.d_sae)
    rows_parts, latent_parts, value_parts = [], [], []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            codes = sae.encode(activations[start : start + batch_size]).float()
            row, latent = torch.nonzero(codes > 0, as_tuple=True)
            rows_parts.append(row.numpy().astype(np.int64) + start)
            latent_parts.append(latent.numpy().astype(np.int64))
            value_parts.append(codes[row, latent].numpy())
    rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, np.int64)
    latents = np.concatenate(latent_parts) if latent_parts else np.zeros(0, np.int64)
    values = np.concatenate(value_parts) if value_parts else np.zeros(0, np.float32)
    return latent_stats_from_firings(
        rows,
        latents,
        values,
        token_ids,
        punctuation,
        d_sae,
        n,
        continuation=continuation,
        top_k=top_k,
        n_top_tokens=n_top_tokens,
    )


def latent_stats_from_firings(
    rows: np.ndarray,
    latents: np.ndarray,
    values: np.ndarray,
    token_ids: np.ndarray,
    punctuation: np.ndarray,
    d_sae: int,
    n_tokens: int,
    continuation: np.ndarray | None = None,
    top_k: int = 256,
    n_top_tokens: int = 8,
) -> LatentStats:
    """The statistics from a list of firings (row, latent, value > 0): vectorised, no loop over latents."""
    rows = np.asarray(rows, dtype=np.int64)
    latents = np.asarray(latents, dtype=np.int64)
    values = np.asarray(values, dtype=np.float32)
    token_ids = np.asarray(token_ids, dtype=np.int64)
    punctuation = np.asarray(punctuation, dtype=bool)
    continuation = np.zeros(0, dtype=bool) if continuation is None else np.asarray(continuation, dtype=bool)
    fire_count = np.bincount(latents, minlength=d_sae).astype(np.int64)
    max_activation = np.zeros(d_sae, dtype=np.float32)
    np.maximum.at(max_activation, latents, values)

    # Each latent's firings, highest first (ties: earlier row), then its first top_k of them.
    order = np.lexsort((rows, -values, latents))
    sorted_latents, sorted_rows = latents[order], rows[order]
    group_start = np.searchsorted(sorted_latents, np.arange(d_sae))
    rank = np.arange(len(sorted_latents)) - group_start[sorted_latents]
    keep = rank < top_k
    top_latents = sorted_latents[keep]
    top_token_ids = token_ids[sorted_rows[keep]]
    n_top = np.bincount(top_latents, minlength=d_sae)
    safe_n_top = np.maximum(n_top, 1)

    vocab = int(max(int(token_ids.max(initial=0)), len(punctuation) - 1, len(continuation) - 1)) + 1
    pair_keys, pair_counts = np.unique(top_latents * vocab + top_token_ids, return_counts=True)
    pair_latents, pair_tokens = pair_keys // vocab, pair_keys % vocab
    n_distinct = np.bincount(pair_latents, minlength=d_sae).astype(np.int64)
    share = pair_counts / safe_n_top[pair_latents]
    entropy = np.bincount(pair_latents, weights=-share * np.log2(share), minlength=d_sae)
    top_count = np.zeros(d_sae, dtype=np.int64)
    np.maximum.at(top_count, pair_latents, pair_counts)
    punct_share = np.bincount(top_latents, weights=_lookup(punctuation, top_token_ids), minlength=d_sae) / safe_n_top
    continuation_share = (
        np.bincount(top_latents, weights=_lookup(continuation, top_token_ids), minlength=d_sae) / safe_n_top
    )

    # The most common tokens of each latent (ties: lower id).
    by_count = np.lexsort((pair_tokens, -pair_counts, pair_latents))
    ranked_latents = pair_latents[by_count]
    pair_rank = np.arange(len(by_count)) - np.searchsorted(ranked_latents, np.arange(d_sae))[ranked_latents]
    shown = pair_rank < n_top_tokens
    top_tokens = np.full((d_sae, n_top_tokens), -1, dtype=np.int32)
    top_token_counts = np.zeros((d_sae, n_top_tokens), dtype=np.int32)
    top_tokens[ranked_latents[shown], pair_rank[shown]] = pair_tokens[by_count][shown]
    top_token_counts[ranked_latents[shown], pair_rank[shown]] = pair_counts[by_count][shown]

    return LatentStats(
        n_tokens=int(n_tokens),
        top_k=int(top_k),
        fire_count=fire_count,
        n_distinct=n_distinct,
        entropy=np.where(n_top > 0, entropy, 0.0),
        top_share=top_count / safe_n_top,
        punct_share=punct_share,
        continuation_share=continuation_share,
        max_activation=max_activation,
        top_tokens=top_tokens,
        top_token_counts=top_token_counts,
    )


def _lookup(mask: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """mask[token_ids] as floats, False for ids beyond the mask."""
    out = np.zeros(len(token_ids), dtype=np.float64)
    inside = token_ids < len(mask)
    out[inside] = mask[token_ids[inside]]
    return out


def token_masks(tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(punctuation, continuation): bool masks over a tokenizer's vocabulary.

    Punctuation: the token's text (markers stripped) has no letter or digit. Continuation: a
    piece inside a word — WordPiece's "##…", or, for BPE / SentencePiece vocabularies, a piece
    without the word-start marker ("Ġ", "▁").
    """
    vocab = tokenizer.get_vocab()
    size = max(len(tokenizer), max(vocab.values()) + 1)
    punctuation = np.zeros(size, dtype=bool)
    continuation = np.zeros(size, dtype=bool)
    marked = sum(text.startswith(("Ġ", "▁")) for text in vocab) > len(vocab) // 4
    special = set(getattr(tokenizer, "all_special_tokens", []))
    for text, index in vocab.items():
        if text in special:
            continue
        stripped = text.removeprefix("##").lstrip("Ġ▁")
        punctuation[index] = bool(stripped) and not any(ch.isalnum() for ch in stripped)
        inside_word = marked and not text.startswith(("Ġ", "▁")) and any(ch.isalnum() for ch in text)
        continuation[index] = text.startswith("##") or inside_word
    return punctuation, continuation


def pick_latents(
    stats: LatentStats,
    n: int = 4,
    *,
    min_fire_rate: float = 0.002,
    max_fire_rate: float = 0.03,
    min_fires: int = 30,
    min_distinct: int = 16,
    max_top_share: float = 0.4,
    max_punct_share: float = 0.2,
    max_continuation_share: float = 0.25,
    max_overlap: float = 0.25,
    strict: bool = False,
) -> list[int]:
    """Up to `n` latents with rich structure, best first (the rule is in the module docstring).

    Fewer than `n` only when fewer than `n` latents fired at all, or, with `strict`, when fewer than `n`
    pass the rule (no filling).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= min_fire_rate <= max_fire_rate <= 1:
        raise ValueError(f"need 0 <= min_fire_rate <= max_fire_rate <= 1, got {min_fire_rate} and {max_fire_rate}")
    rate = stats.fire_rate
    eligible = (
        (stats.fire_count >= min_fires)
        & (rate >= min_fire_rate)
        & (rate <= max_fire_rate)
        & (stats.n_distinct >= min_distinct)
        & (stats.top_share <= max_top_share)
        & (stats.punct_share <= max_punct_share)
        & (stats.continuation_share <= max_continuation_share)
    )
    index = np.arange(stats.d_sae)
    ranking = np.lexsort((index, -stats.fire_count, -stats.entropy))
    picked: list[int] = []
    for latent in ranking[eligible[ranking]].tolist():
        if len(picked) == n:
            break
        if all(_overlap(stats.top_tokens[latent], stats.top_tokens[other]) <= max_overlap for other in picked):
            picked.append(latent)
    if len(picked) < n and not strict:
        fired = ranking[(stats.fire_count[ranking] > 0) & ~np.isin(ranking, picked)]
        picked += fired[: n - len(picked)].tolist()
    return picked


def most_varied(
    stats: LatentStats,
    n: int,
    first: tuple[int, ...] = (),
    *,
    min_fire_rate: float = 0.002,
    max_fire_rate: float = 0.03,
    min_fires: int = 30,
) -> list[int]:
    """Up to `n` latents for the demo's atlas, most varied first: `first` (the demo's maps), then

    1. `pick_latents`' rich latents (its rule, lookalikes skipped),
    2. the other latents in the density band (not dead, not firing everywhere: as `pick_latents`' band),
       by the entropy of their focus tokens,
    3. any other latent that fired, in the same order.

    Fewer than `n` only when fewer than `n` latents fired (or are in `first`).
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rich = pick_latents(
        stats, n, min_fire_rate=min_fire_rate, max_fire_rate=max_fire_rate, min_fires=min_fires, strict=True
    )
    rate = stats.fire_rate
    in_band = (stats.fire_count >= min_fires) & (rate >= min_fire_rate) & (rate <= max_fire_rate)
    index = np.arange(stats.d_sae)
    ranking = np.lexsort((index, -stats.fire_count, -stats.entropy))
    banded = ranking[in_band[ranking]].tolist()
    fired = ranking[(stats.fire_count[ranking] > 0) & ~in_band[ranking]].tolist()
    chosen = dict.fromkeys([*first, *rich, *banded, *fired])
    return list(chosen)[: max(n, len(first))]


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard overlap of two padded token-id lists."""
    left, right = set(a[a >= 0].tolist()), set(b[b >= 0].tolist())
    union = left | right
    return len(left & right) / len(union) if union else 0.0


def save_latent_stats(stats: LatentStats, path: Path | str) -> None:
    """Write the statistics as an .npz (atomically)."""
    arrays = {f.name: np.asarray(getattr(stats, f.name)) for f in fields(stats)}

    def write(handle: Any) -> None:
        """Every field as one array of the archive."""
        np.savez(handle, **arrays)

    atomic_write(Path(path), write)


def load_latent_stats(path: Path | str) -> LatentStats:
    """Read statistics written by `save_latent_stats`."""
    with np.load(Path(path)) as data:
        values = {f.name: data[f.name] for f in fields(LatentStats)}
    values["n_tokens"] = int(values["n_tokens"])
    values["top_k"] = int(values["top_k"])
    return LatentStats(**values)
