"""Harvest throughput against the bare model forward: the figure `benchmarks/build.py` prints.

torch is imported inside `measure_throughput`: only a benchmark pays for it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from pipeline.corpus import iter_documents
from pipeline.harvest.batches import iter_batches, iter_chunks, pad, pad_token_id
from pipeline.harvest.config import HarvestConfig
from pipeline.harvest.step import harvest_documents, prepare
from pipeline.models import HookedForward, LoadedModel, resolve_hook


@dataclass(frozen=True)
class Throughput:
    """Harvest speed against the bare model on the same batches (tokens = real, non-special tokens)."""

    device: str
    n_tokens: int
    n_sequences: int
    n_batches: int
    padded_tokens: int
    """Token slots the model computed, padding and special tokens included."""
    seconds_tokenize: float
    seconds_full_forward: float
    seconds_hook_forward: float
    seconds_harvest: float
    """The whole harvest of the same documents: tokenizing, forward to the hook, SAE, top-N, contexts."""

    def tokens_per_s(self, seconds: float) -> float:
        """Real tokens per second, had the run taken `seconds`."""
        return self.n_tokens / seconds if seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The figures as JSON-able values, with the derived rates and ratios."""
        out = asdict(self)
        out.update(
            tokens_per_s_full_forward=round(self.tokens_per_s(self.seconds_full_forward), 1),
            tokens_per_s_hook_forward=round(self.tokens_per_s(self.seconds_hook_forward), 1),
            tokens_per_s_harvest=round(self.tokens_per_s(self.seconds_harvest), 1),
            ratio_vs_full_forward=round(self.seconds_full_forward / self.seconds_harvest, 3),
            ratio_vs_hook_forward=round(self.seconds_hook_forward / self.seconds_harvest, 3),
            seconds_per_100k_tokens_harvest=round(1e5 * self.seconds_harvest / max(self.n_tokens, 1), 2),
        )
        return out


def measure_throughput(
    cfg: HarvestConfig, *, model: LoadedModel | None = None, sae: Any | None = None, repeats: int = 1
) -> Throughput:
    """Time the harvest of `cfg` against the bare model forward (whole model, and up to the hook).

    The corpus's documents are read into memory first (so corpus parsing is not timed: use a
    corpus that fits), cfg.max_tokens caps the tokens; the forward timings run the harvest's
    own batches, pre-tokenized and padded; the best of `repeats` runs counts for each. E.g.

        cfg = HarvestConfig(model="minilm", hook="3", latents=tuple(range(8)),
                            corpus=("python-stdlib-docstrings",), sae_path="unused")
        figures = measure_throughput(cfg, sae=models.random_topk_sae(384, 2048, k=32)).to_dict()
    """
    import torch  # heavy; a benchmark needs it anyway

    loaded, sae = prepare(cfg, model, sae)
    device = loaded.device
    module, hook_path = resolve_hook(loaded.model, cfg.hook)
    forward = HookedForward(loaded.model, module, hook_path)

    documents = list(iter_documents(cfg.corpus, cfg.text_field))
    counts: dict[str, int] = {}
    tokenize_started = time.perf_counter()
    batches = list(
        iter_batches(iter_chunks(documents, loaded.tokenizer, cfg.max_length, cfg.max_tokens, counts), cfg.batch_size)
    )
    seconds_tokenize = time.perf_counter() - tokenize_started
    pad_id = pad_token_id(loaded.tokenizer)
    padded = [pad(batch, pad_id) for batch in batches]
    inputs = [(torch.from_numpy(ids), torch.from_numpy(attention)) for ids, attention, _ in padded]

    def synchronise() -> None:
        """Wait for queued GPU work, so that a timing covers it."""
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def time_forward(call: Any) -> float:
        """Best of `repeats` seconds for `call` over every batch, after one warm-up call."""
        best = float("inf")
        with torch.inference_mode():
            call(inputs[0][0].to(device), inputs[0][1].to(device))  # warm-up: kernels, allocator
            for _ in range(repeats):
                synchronise()
                started = time.perf_counter()
                for ids, attention in inputs:
                    call(ids.to(device), attention.to(device))
                synchronise()
                best = min(best, time.perf_counter() - started)
        return best

    seconds_full = time_forward(lambda ids, attention: loaded.model(input_ids=ids, attention_mask=attention))
    seconds_hook = time_forward(forward)
    seconds_harvest = float("inf")
    for _ in range(repeats):
        synchronise()
        started = time.perf_counter()
        harvest_documents(cfg, documents, model=loaded, sae=sae)
        synchronise()
        seconds_harvest = min(seconds_harvest, time.perf_counter() - started)
    return Throughput(
        device=device,
        n_tokens=counts["tokens"],
        n_sequences=sum(len(batch) for batch in batches),
        n_batches=len(batches),
        padded_tokens=int(sum(ids.size for ids, _, _ in padded)),
        seconds_tokenize=round(seconds_tokenize, 3),
        seconds_full_forward=round(seconds_full, 3),
        seconds_hook_forward=round(seconds_hook, 3),
        seconds_harvest=round(seconds_harvest, 3),
    )
