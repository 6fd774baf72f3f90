"""Pass 1 of the atlas: every requested latent's best candidates and its statistics, in one sweep of the corpus.

The model runs to the hook and the SAE encodes every real token, in the same batches and encoding
blocks as the single-latent harvest (`pipeline.harvest.step`), so both see bitwise the same
activations. What is kept is fixed-size, whatever the corpus:

- `TopBuffer`: per latent the best `candidates` (activation, token key) pairs, in one
  (latents x candidates) buffer on the model's device. Each encoding block is merged into it by
  `torch.topk` along the token axis for all latents at once (`best_of`), only for latents with an
  entry that can get in; exact ties at the cut go to the smaller key (`pipeline.harvest.ordinals`), as in
  `pipeline.harvest.topn`. Only positive activations are candidates; an empty slot holds -inf
  and `EMPTY_KEY`.
- `LatentCounts`: per latent its firings, maximum, the streaming histogram (`BINS` bins over
  [0, hi), hi a power of two doubled as the maximum grows, neighbouring bins summed: the rule of
  `pipeline.harvest.stats.FiringStats`, applied per batch as it does) and the input positions it
  fires at, all on the device.

Merging is associative and commutative (`merge_results`): the best k of a union is the best k of
the parts' best k, under one total order (activation descending, key ascending; keys are unique),
and counts add. So a corpus cut into contiguous runs of documents, scanned apart and merged in any
order, gives the unsharded buffer and counts. (One exception, as in `FiringStats`: a firing
exactly equal to a power-of-two maximum binned before a later doubling sits one bin lower than
binned after it; shards can move such a firing by one bin.)

Not in the atlas pass: the quantile examples (`pipeline.harvest.quantiles`) and the scoring
issue's non-activating sample; an atlas map's statistics carry no quantiles. The dedupe of shown
windows needs the windows, which pass 1 does not build: it keeps `top_n + slack` candidates per
latent and pass 2 (`pass2`) dedupes and cuts to top_n.

torch is imported inside the functions: a config check imports this module and must not pay.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.corpus import Document
from pipeline.harvest.batches import Chunk, iter_batches, iter_chunks, pad, pad_token_id, prefetch
from pipeline.harvest.config import HarvestError
from pipeline.harvest.ordinals import EMPTY_KEY, batch_keys, indexed, pack
from pipeline.harvest.stats import BINS
from pipeline.models import HookedForward, LoadedModel, resolve_hook
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import Histogram, LatentStats

ENCODE_BUDGET = 1 << 25
"""Most SAE activations (tokens x d_sae) held densely at once: the single-latent harvest's block size
(`pipeline.harvest.step._ENCODE_BUDGET`), so that both encode the same blocks."""
MERGE_BUDGET = 1 << 24
"""Most (activation, key) entries one merge takes at once: 16M, some 0.6 GB of temporaries."""
STAGE_TOKENS = 1024
"""Tokens a scan offers its top buffer at once when the candidates are few (more when they are many:
a quarter of them); each latent has that many staging slots, so memory follows (latents x (candidates + stage))."""
PREFETCH_ON_CPU = False
"""Tokenize ahead in a thread on the CPU too (on a GPU always), as the single-latent harvest does."""


# -- the top candidates -----------------------------------------------------------------------


@dataclass
class TopBuffer:
    """Per latent its best candidates, row i for `latents[i]`, in order (activation desc, key asc)."""

    latents: np.ndarray
    """(L,) int64: the latent of each row."""
    acts: np.ndarray
    """(L, N) float32: activations, -inf in empty slots (empty slots last)."""
    keys: np.ndarray
    """(L, N) int64: token keys (`ordinals`), EMPTY_KEY in empty slots."""

    @classmethod
    def empty(cls, latents: Iterable[int], width: int) -> TopBuffer:
        """A buffer of `width` empty slots per latent."""
        latents = np.asarray(list(latents), dtype=np.int64)
        return cls(
            latents=latents,
            acts=np.full((latents.size, width), -np.inf, dtype=np.float32),
            keys=np.full((latents.size, width), EMPTY_KEY, dtype=np.int64),
        )

    @property
    def width(self) -> int:
        """Slots per latent."""
        return int(self.acts.shape[1])

    def filled(self) -> np.ndarray:
        """(L,) slots holding a token, per latent."""
        return (self.keys != EMPTY_KEY).sum(axis=1)

    def row_of(self, latent: int) -> int:
        """The row of `latent`; KeyError when it is not in the buffer."""
        found = np.flatnonzero(self.latents == latent)
        if found.size == 0:
            raise KeyError(f"latent {latent} is not in this buffer")
        return int(found[0])

    def select(self, latents: Iterable[int]) -> TopBuffer:
        """The rows of some latents (in the order given): a group for pass 2."""
        rows = [self.row_of(latent) for latent in latents]
        return TopBuffer(latents=self.latents[rows], acts=self.acts[rows], keys=self.keys[rows])

    @staticmethod
    def merge(a: TopBuffer, b: TopBuffer, *, in_place: bool = False) -> TopBuffer:
        """Per latent the best `width` of both (activation desc, key asc): associative and commutative.

        `in_place`: written into `a`'s arrays (returned), so that a running merge holds no third buffer.
        """
        import torch  # heavy; a merge follows a scan, which loaded it

        if not np.array_equal(a.latents, b.latents) or a.width != b.width:
            raise ValueError(
                f"top buffers of different latents or widths cannot merge ({a.latents.size}x{a.width}"
                f" and {b.latents.size}x{b.width})"
            )
        acts, keys = (a.acts, a.keys) if in_place else (np.empty_like(a.acts), np.empty_like(a.keys))
        step = max(1, MERGE_BUDGET // (2 * max(1, a.width)))  # in slices of rows: temporaries stay bounded
        for start in range(0, a.latents.size, step):
            rows = slice(start, start + step)
            best_acts, best_keys = best_of(
                torch.from_numpy(np.concatenate([a.acts[rows], b.acts[rows]], axis=1)),
                torch.from_numpy(np.concatenate([a.keys[rows], b.keys[rows]], axis=1)),
                a.width,
            )
            best_acts, best_keys = canonical(best_acts, best_keys)
            acts[rows], keys[rows] = best_acts.numpy(), best_keys.numpy()
        return a if in_place else TopBuffer(latents=a.latents.copy(), acts=acts, keys=keys)


def best_of(acts: Any, keys: Any, width: int) -> tuple[Any, Any]:
    """Per row the `width` best (activation desc, key asc) of (R, W) tensors; a row's empty slots come last.

    `torch.topk` picks the best `width` values but is not stable: where the width-th value is tied
    with entries left out, the rows concerned (rare) are redone, the tied entries taken by smallest
    key. Empty slots (-inf) fill the rest and get EMPTY_KEY.
    """
    import torch  # heavy; the caller's tensors are torch's

    rows, total = acts.shape
    if total <= width:
        empty = width - total
        return (
            torch.cat([acts, acts.new_full((rows, empty), -torch.inf)], dim=1),
            torch.cat([keys, keys.new_full((rows, empty), EMPTY_KEY)], dim=1),
        )
    # Sorted: a row with fewer than `width` entries then has its empty slots last (the staging in `_DeviceTop` needs it).
    values, index = torch.topk(acts, width, dim=1, sorted=True)
    threshold = values[:, -1:]
    crowded = ((acts >= threshold).sum(dim=1) > width) & (threshold.squeeze(1) > -torch.inf)
    tied_rows = crowded.nonzero().squeeze(1)
    if tied_rows.numel():
        tied_acts, tied_keys, cut = acts[tied_rows], keys[tied_rows], threshold[tied_rows]
        above, at = tied_acts > cut, tied_acts == cut
        room = width - above.sum(dim=1, keepdim=True)  # >= 1: fewer than width are strictly above
        ranked = torch.where(at, tied_keys, torch.full_like(tied_keys, EMPTY_KEY)).sort(dim=1).values
        last_key = ranked.gather(1, room - 1)
        keep = above | (at & (tied_keys <= last_key))  # exactly width per row: keys are unique
        index[tied_rows] = keep.nonzero()[:, 1].view(-1, width)
    acts, keys = acts.gather(1, index), keys.gather(1, index)
    keys = torch.where(acts == -torch.inf, torch.full_like(keys, EMPTY_KEY), keys)
    return acts, keys


def canonical(acts: Any, keys: Any) -> tuple[Any, Any]:
    """Each row sorted by activation descending, then key ascending (empty slots last).

    One sort by activation; only the rows where it leaves equal activations side by side (rare)
    are sorted again, by key and then stably by activation. Empty slots all hold (-inf, EMPTY_KEY).
    """
    import torch  # heavy; the caller's tensors are torch's

    order = torch.sort(acts, dim=1, descending=True).indices
    acts, keys = acts.gather(1, order), keys.gather(1, order)
    tied = ((acts[:, 1:] == acts[:, :-1]) & (acts[:, 1:] > -torch.inf)).any(dim=1).nonzero().squeeze(1)
    if tied.numel():
        tied_acts, tied_keys = acts[tied], keys[tied]
        order = torch.sort(tied_keys, dim=1, stable=True).indices
        tied_acts, tied_keys = tied_acts.gather(1, order), tied_keys.gather(1, order)
        order = torch.sort(tied_acts, dim=1, descending=True, stable=True).indices
        acts[tied], keys[tied] = tied_acts.gather(1, order), tied_keys.gather(1, order)
    return acts, keys


# -- the counts -------------------------------------------------------------------------------


def powers_of_two_at_least(values: np.ndarray) -> np.ndarray:
    """Elementwise `stats.power_of_two_at_least` (values > 0), exactly: from the binary exponent."""
    mantissa, exponent = np.frexp(np.asarray(values, dtype=np.float64))
    return np.ldexp(1.0, np.where(mantissa == 0.5, exponent - 1, exponent))


def doublings(old_hi: np.ndarray, new_hi: np.ndarray) -> np.ndarray:
    """How many times each range doubles from `old_hi` to `new_hi` (0 where old_hi is 0: nothing binned yet)."""
    shift = np.zeros(old_hi.shape, dtype=np.int64)
    grown = (old_hi > 0) & (new_hi > old_hi)
    shift[grown] = np.round(np.log2(new_hi[grown] / old_hi[grown])).astype(np.int64)
    return shift


def regrid(counts: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per row, the counts on a range 2**shift times wider: bin i goes to bin i >> shift (pairwise sums, repeated)."""
    target = np.arange(counts.shape[1])[None, :] >> np.minimum(shift, 62)[:, None]
    out = np.zeros_like(counts)
    np.add.at(out, (np.arange(counts.shape[0])[:, None], target), counts)
    return out


@dataclass
class LatentCounts:
    """Per latent, over every real token: firings, maximum, histogram of all firings, positions fired at."""

    latents: np.ndarray
    """(L,) int64."""
    n_fired: np.ndarray
    """(L,) int64: tokens with activation > 0."""
    max_act: np.ndarray
    """(L,) float32: the highest activation (0 when never fired)."""
    hist: np.ndarray
    """(L, BINS) int64: firings binned over [0, hi) per latent."""
    hi: np.ndarray
    """(L,) float64: each histogram's range, a power of two (0 when never fired)."""
    positions: np.ndarray
    """(L, max_length) int64: firings by input position."""
    n_tokens_seen: int = 0

    @classmethod
    def empty(cls, latents: Iterable[int], max_length: int) -> LatentCounts:
        """No token seen yet."""
        latents = np.asarray(list(latents), dtype=np.int64)
        n = latents.size
        return cls(
            latents=latents,
            n_fired=np.zeros(n, np.int64),
            max_act=np.zeros(n, np.float32),
            hist=np.zeros((n, BINS), np.int64),
            hi=np.zeros(n, np.float64),
            positions=np.zeros((n, max_length), np.int64),
        )

    @staticmethod
    def merge(a: LatentCounts, b: LatentCounts) -> LatentCounts:
        """Both counted together: ranges regridded up to the wider one (exact), everything summed."""
        if not np.array_equal(a.latents, b.latents):
            raise ValueError("latent counts of different latents cannot merge")
        hi = np.maximum(a.hi, b.hi)
        width = max(a.positions.shape[1], b.positions.shape[1])
        positions = np.zeros((a.latents.size, width), np.int64)
        positions[:, : a.positions.shape[1]] += a.positions
        positions[:, : b.positions.shape[1]] += b.positions
        return LatentCounts(
            latents=a.latents.copy(),
            n_fired=a.n_fired + b.n_fired,
            max_act=np.maximum(a.max_act, b.max_act),
            hist=regrid(a.hist, doublings(a.hi, hi)) + regrid(b.hist, doublings(b.hi, hi)),
            hi=hi,
            positions=positions,
            n_tokens_seen=a.n_tokens_seen + b.n_tokens_seen,
        )

    def to_latent_stats(self, i: int) -> LatentStats:
        """Row i's figures as a map stores them (no nodes, quantiles or logits yet)."""
        return LatentStats(
            latent=int(self.latents[i]),
            n_tokens_seen=self.n_tokens_seen,
            n_fired=int(self.n_fired[i]),
            max_activation=float(self.max_act[i]),
            activations=Histogram(lo=0.0, hi=float(self.hi[i]), counts=tuple(int(c) for c in self.hist[i])),
            positions=tuple(int(c) for c in self.positions[i]),
        )


@dataclass
class Pass1Result:
    """What pass 1 found over some documents: the candidates, the counts and how much it read."""

    top: TopBuffer
    counts: LatentCounts
    n_tokens: int
    n_documents: int
    end_key: int = EMPTY_KEY
    """The key of the first token not harvested when max_tokens cut the corpus short (EMPTY_KEY: none)."""


def merge_results(a: Pass1Result, b: Pass1Result, *, in_place: bool = False) -> Pass1Result:
    """Two shards' results as one: associative and commutative (shards of disjoint documents).

    `in_place`: `a`'s top buffer receives the merge (`a` is not to be used after).
    """
    return Pass1Result(
        top=TopBuffer.merge(a.top, b.top, in_place=in_place),
        counts=LatentCounts.merge(a.counts, b.counts),
        n_tokens=a.n_tokens + b.n_tokens,
        n_documents=a.n_documents + b.n_documents,
        end_key=min(a.end_key, b.end_key),
    )


# -- the scan ---------------------------------------------------------------------------------


def open_hook(loaded: LoadedModel, sae: Any, hook: str, max_length: int) -> tuple[HookedForward, int, int]:
    """The forward pass to `hook`, its width and the SAE's d_sae; HarvestError (one line) on a mismatch."""
    import torch  # heavy; the caller has a model loaded

    limit = getattr(loaded.model.config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise HarvestError(
            f"max_length {max_length} is longer than the model's {limit} positions; pass --max-length {limit} or less"
        )
    module, hook_path = resolve_hook(loaded.model, hook)
    forward = HookedForward(loaded.model, module, hook_path)
    encoded = loaded.tokenizer(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    with torch.inference_mode():
        d_model = int(
            forward(encoded["input_ids"].to(loaded.device), encoded["attention_mask"].to(loaded.device)).shape[-1]
        )
    d_in, d_sae = int(sae.cfg.d_in), int(sae.cfg.d_sae)
    if d_in != d_model:
        trained_on = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None)
        hint = f" (the SAE was trained on {trained_on})" if trained_on else ""
        raise HarvestError(
            f"SAE d_in {d_in} does not match hook {hook_path} width {d_model}; pick the hook the SAE was"
            f" trained on{hint} or an SAE for this layer"
        )
    return forward, d_model, d_sae


def model_batches(
    cfg: AtlasHarvestConfig,
    documents: Iterable[tuple[int, Document]],
    loaded: LoadedModel,
    counts: dict[str, int],
    end_key: int | None = None,
) -> Generator[tuple[list[Chunk], tuple[np.ndarray, np.ndarray, np.ndarray]], None, None]:
    """The documents as the single-latent harvest batches them: chunks, length-sorted batches, padded.

    With `end_key` (pass 2), tokens from that key on are not real, as pass 1's max_tokens cut left
    them, instead of counting tokens (pass 2 reads only some documents).
    """
    if end_key is None:
        chunks = iter_chunks(indexed(documents), loaded.tokenizer, cfg.max_length, cfg.max_tokens, counts)
    else:
        chunks = cut_at(iter_chunks(indexed(documents), loaded.tokenizer, cfg.max_length, None, counts), end_key)
    pad_id = pad_token_id(loaded.tokenizer)
    batches = ((batch, pad(batch, pad_id)) for batch in iter_batches(chunks, cfg.batch_size))
    return prefetch(batches) if loaded.device != "cpu" or PREFETCH_ON_CPU else batches


def cut_at(chunks: Iterable[Chunk], end_key: int) -> Iterator[Chunk]:
    """The chunks with their tokens from `end_key` on made not real (chunks left with none dropped)."""
    for chunk in chunks:
        if end_key != EMPTY_KEY:
            where = np.flatnonzero(chunk.real)
            keys = pack(chunk.document.index, chunk.first_position + np.arange(where.size))
            if keys.size and keys[-1] >= end_key:
                chunk.real = chunk.real.copy()
                chunk.real[where[keys >= end_key]] = False
                if not chunk.real.any():
                    continue
        yield chunk


def scan(
    cfg: AtlasHarvestConfig,
    documents: Iterable[tuple[int, Document]],
    model: LoadedModel,
    sae: Any,
    *,
    latents: tuple[int, ...] | None = None,
    progress: Progress = no_progress,
) -> Pass1Result:
    """Pass 1 over (document index, document) pairs — the whole corpus or a contiguous run of it.

    `latents` defaults to `cfg`'s, resolved against the SAE. `cfg.max_tokens` cuts these
    documents, so an engine that shards the corpus cuts it before sharding. Raises HarvestError.
    """
    import torch  # heavy; a harvest needs it anyway

    sae = sae.to(model.device)
    forward, _, d_sae = open_hook(model, sae, cfg.hook, cfg.max_length)
    latents = cfg.resolve_latents(d_sae) if latents is None else latents
    device, width, n_latents = model.device, cfg.candidates, len(latents)
    every_latent = list(latents) == list(range(d_sae))
    latent_index = torch.as_tensor(latents, dtype=torch.long, device=device)
    encode_rows = max(1, ENCODE_BUDGET // d_sae)
    top = _DeviceTop(n_latents, width, max(width // 4, min(encode_rows, STAGE_TOKENS)), device)
    counts = _DeviceCounts(n_latents, cfg.max_length, device)
    sae_dtype = getattr(sae, "dtype", None) or next(sae.parameters()).dtype
    read: dict[str, int] = {}
    n_seen, last_key = 0, -1

    batches = model_batches(cfg, documents, model, read)
    # closing(): an error below must also stop the prefetching thread, not leave it to the GC.
    with torch.inference_mode(), closing(batches):
        for batch, (input_ids, attention, real) in batches:
            hidden = forward(torch.from_numpy(input_ids).to(device), torch.from_numpy(attention).to(device))
            tokens = hidden[torch.from_numpy(real).to(device)].to(sae_dtype)
            n_tokens = int(tokens.shape[0])
            keys_np = batch_keys(batch)
            last_key = max(last_key, int(keys_np.max()))
            keys = torch.from_numpy(keys_np).to(device)
            columns = torch.from_numpy(np.nonzero(real)[1]).to(device)
            for start in range(0, n_tokens, encode_rows):
                dense = sae.encode(tokens[start : start + encode_rows])
                block = dense if every_latent else dense.index_select(1, latent_index)  # (b, L)
                # The firings, once, sparse: (token, latent row) pairs in row-major order, tokens ascending.
                fired = block > 0
                token_rows, latent_rows = fired.nonzero().unbind(1)
                values = block[fired].float()  # the same row-major order
                counts.collect(latent_rows, values, columns[start + token_rows])
                top.offer(latent_rows, values, keys[start + token_rows], token_rows)
            counts.end_batch()
            n_seen += n_tokens
            progress(n_seen, cfg.max_tokens, f"{read.get('documents', 0)} documents")
        top_acts, top_keys = top.result()
    cut_short = cfg.max_tokens is not None and read.get("tokens", 0) >= cfg.max_tokens
    return Pass1Result(
        top=TopBuffer(latents=np.asarray(latents, dtype=np.int64), acts=top_acts, keys=top_keys),
        counts=counts.result(latents, n_seen),
        n_tokens=n_seen,
        n_documents=read.get("documents", 0),
        end_key=last_key + 1 if cut_short else EMPTY_KEY,
    )


class _DeviceTop:
    """The (latents x candidates) buffer on the device, with up to `stage` more slots per latent where
    entering firings are appended; a latent's slots are merged down (`best_of`) only when they run out.

    Appending costs little, and a merge then pays for `stage` entries, not for one block's: the
    merges are what a top-N costs. A firing enters only at or above its latent's cut (the worst of
    the last merge's full `width`, -inf until then); the cut only rises, so nothing that belongs in
    the final best is ever left out. The slots are set up as they are first needed (doubling, up to
    `width + stage`) in a buffer allocated whole but untouched: a corpus too short to fill the
    candidates neither touches the full buffer's memory nor merges and sorts empty slots.
    """

    def __init__(self, n_latents: int, width: int, stage: int, device: str) -> None:
        """Room for `width` kept plus `stage` staging slots per latent; none in use yet."""
        import torch  # heavy; the scan loaded it

        self.n_latents, self.width, self.stage, self.capacity = n_latents, width, stage, width + stage
        self.all_acts = torch.empty((n_latents, self.capacity), dtype=torch.float32, device=device)
        self.all_keys = torch.empty((n_latents, self.capacity), dtype=torch.int64, device=device)
        self.columns = 0
        """Slots per latent in use (set up empty): the first `columns` of every row."""
        self.fill = torch.zeros(n_latents, dtype=torch.int64, device=device)
        """Occupied slots per latent: always the first `fill` of its row."""
        self.cut = torch.full((n_latents,), -torch.inf, dtype=torch.float32, device=device)

    def offer(self, rows: Any, values: Any, keys: Any, tokens: Any) -> None:
        """Append the firings (latent row, activation, key) that can enter, `tokens` (their block rows, ascending)
        taken at most `stage` tokens at a time, so that no latent gets more than `stage` entries at once."""
        import torch  # heavy; the scan loaded it

        if rows.numel() == 0:
            return
        n_tokens = int(tokens[-1]) + 1
        if n_tokens <= self.stage:
            self._append(rows, values, keys)
            return
        bounds = torch.searchsorted(tokens, torch.arange(0, n_tokens + self.stage, self.stage, device=tokens.device))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if b > a:
                self._append(rows[a:b], values[a:b], keys[a:b])

    def _append(self, rows: Any, values: Any, keys: Any) -> None:
        """Append entries of at most `stage` per latent; merge first the latents whose slots would overflow."""
        import torch  # heavy; the scan loaded it

        entering = values >= self.cut[rows]
        rows, values, keys = rows[entering], values[entering], keys[entering]
        counts = torch.bincount(rows, minlength=self.n_latents)
        full = (self.fill + counts > self.capacity).nonzero().squeeze(1)
        if full.numel():
            self.merge(full)
            entering = values >= self.cut[rows]
            rows, values, keys = rows[entering], values[entering], keys[entering]
            counts = torch.bincount(rows, minlength=self.n_latents)
        if rows.numel() == 0:
            return
        needed = int((self.fill + counts).max())
        if needed > self.columns:
            self.grow(min(self.capacity, max(needed, 2 * self.columns)))
        order = torch.argsort(rows, stable=True)  # grouped by latent
        rows, values, keys = rows[order], values[order], keys[order]
        first = torch.cumsum(counts, dim=0) - counts
        slots = self.fill[rows] + torch.arange(rows.numel(), device=rows.device) - first[rows]
        self.all_acts[rows, slots] = values
        self.all_keys[rows, slots] = keys
        self.fill += counts

    def grow(self, columns: int) -> None:
        """Set up slots up to `columns` per latent, empty."""
        self.all_acts[:, self.columns : columns] = -np.inf
        self.all_keys[:, self.columns : columns] = EMPTY_KEY
        self.columns = columns

    def merge(self, rows: Any) -> None:
        """Merge some latents' slots down to their best `width`, in slices of about MERGE_BUDGET entries."""
        import torch  # heavy; the scan loaded it

        columns = self.columns
        for part in rows.split(max(1, MERGE_BUDGET // max(1, columns))):
            acts, keys = best_of(self.all_acts[part, :columns], self.all_keys[part, :columns], self.width)
            kept = min(self.width, columns)
            self.all_acts[part, :columns] = torch.cat(
                [acts[:, :kept], acts.new_full((len(part), columns - kept), -torch.inf)], 1
            )
            self.all_keys[part, :columns] = torch.cat(
                [keys[:, :kept], keys.new_full((len(part), columns - kept), EMPTY_KEY)], 1
            )
            self.fill[part] = (acts > -torch.inf).sum(dim=1)
            self.cut[part] = torch.where(self.fill[part] == self.width, acts.min(dim=1).values, -torch.inf)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Every latent's best `width`, in canonical order, on the host ((L, width), empty slots last).

        Latents are sorted in groups of about equal fill (the next power of two), each over its own
        slots only: a few latents that fire on many tokens do not make every row's sort as long as theirs.
        """
        import torch  # heavy; the scan loaded it

        self.merge((self.fill > self.width).nonzero().squeeze(1))  # the others hold their best already
        fill = self.fill.cpu().numpy()
        sizes = np.where(fill > 0, 1 << np.ceil(np.log2(np.maximum(fill, 1))).astype(np.int64), 0)
        sizes = np.minimum(sizes, int(fill.max()) if fill.size else 0)  # within the slots set up
        acts = np.empty((self.n_latents, self.width), dtype=np.float32)
        keys = np.empty((self.n_latents, self.width), dtype=np.int64)
        for size in np.unique(sizes).tolist():
            rows = np.flatnonzero(sizes == size)
            acts[rows, size:], keys[rows, size:] = -np.inf, EMPTY_KEY
            step = max(1, MERGE_BUDGET // max(1, size))
            for start in range(0, rows.size if size else 0, step):
                part = rows[start : start + step]
                index = torch.from_numpy(part).to(self.fill.device)
                best_acts, best_keys = canonical(self.all_acts[index, :size], self.all_keys[index, :size])
                acts[part, :size], keys[part, :size] = best_acts.cpu().numpy(), best_keys.cpu().numpy()
        return acts, keys


class _DeviceCounts:
    """LatentCounts kept on the device during a scan; the firings of a batch are binned at its end, like FiringStats."""

    def __init__(self, n_latents: int, max_length: int, device: str) -> None:
        """Zero counts for `n_latents` latents and inputs of `max_length` tokens."""
        import torch  # heavy; the scan loaded it

        self.n_latents, self.max_length, self.device = n_latents, max_length, device
        self.n_fired = torch.zeros(n_latents, dtype=torch.int64, device=device)
        self.max_act = torch.zeros(n_latents, dtype=torch.float32, device=device)
        self.hist = torch.zeros((n_latents, BINS), dtype=torch.int64, device=device)
        self.positions = torch.zeros((n_latents, max_length), dtype=torch.int64, device=device)
        self.hi = np.zeros(n_latents, np.float64)
        self.scale = torch.zeros(n_latents, dtype=torch.float32, device=device)
        self.pending: list[tuple[Any, Any, Any]] = []

    def collect(self, rows: Any, values: Any, columns: Any) -> None:
        """Keep a block's firings (latent row, activation, input position) until the batch ends."""
        self.pending.append((rows, values, columns))

    def end_batch(self) -> None:
        """Grow each latent's range to its batch maximum (doubling, bins summed), then bin the batch's firings."""
        import torch  # heavy; the scan loaded it

        rows = torch.cat([row for row, _, _ in self.pending])
        values = torch.cat([value for _, value, _ in self.pending])
        columns = torch.cat([column for _, _, column in self.pending])
        self.pending = []
        if rows.numel() == 0:
            return
        batch_max = torch.zeros(self.n_latents, dtype=torch.float32, device=self.device)
        batch_max.scatter_reduce_(0, rows, values, reduce="amax")
        self.n_fired += torch.bincount(rows, minlength=self.n_latents)
        self.max_act = torch.maximum(self.max_act, batch_max)
        top = batch_max.cpu().numpy().astype(np.float64)
        grow = top > self.hi
        if grow.any():
            new_hi = self.hi.copy()
            new_hi[grow] = powers_of_two_at_least(top[grow])
            shift = doublings(self.hi, new_hi)
            regridded = np.flatnonzero(shift)
            if regridded.size:
                index = torch.from_numpy(regridded).to(self.device)
                target = (
                    torch.arange(BINS, device=self.device)[None, :]
                    >> torch.from_numpy(np.minimum(shift[regridded], 62)).to(self.device)[:, None]
                )
                self.hist[index] = torch.zeros_like(self.hist[index]).scatter_add_(1, target, self.hist[index])
            self.hi = new_hi
            # BINS / hi is a power of two: value * scale is exact in float32, the bin as stats.bin_index finds it.
            self.scale = torch.from_numpy(
                np.where(new_hi > 0, BINS / np.where(new_hi > 0, new_hi, 1.0), 0.0).astype(np.float32)
            ).to(self.device)
        bins = (values * self.scale[rows]).floor().long().clamp_(max=BINS - 1)
        self.hist.view(-1).index_add_(0, rows * BINS + bins, torch.ones_like(bins))
        self.positions.view(-1).index_add_(0, rows * self.max_length + columns, torch.ones_like(columns))

    def result(self, latents: tuple[int, ...], n_tokens_seen: int) -> LatentCounts:
        """The counts on the host."""
        return LatentCounts(
            latents=np.asarray(latents, dtype=np.int64),
            n_fired=self.n_fired.cpu().numpy(),
            max_act=self.max_act.cpu().numpy(),
            hist=self.hist.cpu().numpy(),
            hi=self.hi.copy(),
            positions=self.positions.cpu().numpy(),
            n_tokens_seen=n_tokens_seen,
        )
