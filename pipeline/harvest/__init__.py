"""Harvest: run a model over a corpus, encode a hook point with an SAE, keep each latent's top-N contexts.

The step, along its seams (models and SAEs are loaded by `pipeline.models`):

- `config`: STEP, VERSION, DISTRIBUTIONS, `HarvestConfig` (= `Config`) and `HarvestError`;
- `batches`: documents → tokenized chunks → length-sorted, padded batches, prefetched;
- `topn`: the streaming best N per latent, each shown window once (dedupe);
- `ordinals`: token keys (document index, token index) in corpus order: how ties are broken, here and in the atlas;
- `stats`: `FiringStats`, per latent its density, the histogram of all firings and their input positions
  (streamed, bounded memory), and `node_stats` for a map's nodes;
- `quantiles`: `QuantileSampler`, per latent K random examples from each of Q equal-width activation intervals
  (one pass, bounded memory), kept apart from the top-N;
- `negatives`: `NegativeSampler`, per latent a bounded random sample of windows where it is 0 on every token
  (one pass, independent of batching), the scorers' non-activating examples;
- `windows`: the display window around a kept token and the context built from it;
- `logits`: the decoder direction's top and bottom logits through the model's unembedding (or why none);
- `preflight`: `check` — the corpus, the model's config.json and the SAE's config, before anything loads;
- `step`: `run` — one pass of model and SAE over the corpus;
- `result`: `HarvestResult`, one `LatentHarvest` per latent (with `--also-sae`, its `LatentChildren` in SAE B);
- `cache`: `save` / `load` of a harvest folder (`DONE_FILE` written last);
- `throughput`: the harvest timed against the bare model forward.

Callers use the names below: `from pipeline import harvest; harvest.run(harvest.HarvestConfig(...))`.
"""

from __future__ import annotations

from pipeline.harvest.cache import DONE_FILE, HARVEST_FILE, load, save
from pipeline.harvest.config import (
    DISTRIBUTIONS,
    STEP,
    VERSION,
    ChildrenConfig,
    Config,
    HarvestConfig,
    HarvestError,
)
from pipeline.harvest.result import ChildrenRun, HarvestResult, LatentChildren, LatentHarvest
from pipeline.harvest.step import harvest_documents, load_also_sae, prepare, run
from pipeline.harvest.throughput import Throughput, measure_throughput

__all__ = [
    "DISTRIBUTIONS",
    "DONE_FILE",
    "HARVEST_FILE",
    "STEP",
    "VERSION",
    "ChildrenConfig",
    "ChildrenRun",
    "Config",
    "HarvestConfig",
    "HarvestError",
    "HarvestResult",
    "LatentChildren",
    "LatentHarvest",
    "Throughput",
    "harvest_documents",
    "load",
    "load_also_sae",
    "measure_throughput",
    "prepare",
    "run",
    "save",
]
