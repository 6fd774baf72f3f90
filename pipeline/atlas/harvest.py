"""The atlas harvest in one process: pass 1 over the whole corpus, pass 2 over the documents it selected.

The engines (`pipeline.atlas.engine`) shard the same two passes; this is the reference they are
compared with and the default without Ray.

`harvest_in_process` returns one `HarvestResult` for every requested latent: right for tens or
hundreds of latents. Materialised contexts cost host memory in proportion to latents x top_n x
window (16k latents x 4,000 contexts would be tens of GB), so a whole SAE goes through
`harvest_groups`: one pass 1, then pass 2 and the result group by group, each built into maps
and dropped before the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.pass1 import Pass1Result, scan
from pipeline.atlas.pass2 import assemble, materialise
from pipeline.corpus import iter_documents
from pipeline.harvest.config import HarvestError
from pipeline.harvest.result import HarvestResult
from pipeline.models import LoadedModel, load_model, load_sae
from pipeline.steps import Progress, no_progress


def prepare(
    cfg: AtlasHarvestConfig, model: LoadedModel | None = None, sae: Any | None = None
) -> tuple[LoadedModel, Any]:
    """The model and SAE of `cfg`: loaded, or the ones given (the SAE moved to the model's device)."""
    loaded = model if model is not None else load_model(cfg.model, cfg.device)
    if sae is None:
        return loaded, load_sae(
            sae_release=cfg.sae_release, sae_id=cfg.sae_id, sae_path=cfg.sae_path, device=loaded.device
        )
    return loaded, sae.to(loaded.device)


def no_tokens(cfg: AtlasHarvestConfig) -> HarvestError:
    """The error of a corpus that gave no tokens."""
    return HarvestError(f"corpus {', '.join(cfg.corpus)} gave no tokens to harvest; check it holds text")


def harvest_in_process(
    cfg: AtlasHarvestConfig,
    progress: Progress = no_progress,
    model: LoadedModel | None = None,
    sae: Any | None = None,
    *,
    pass2_progress: Callable[[], Progress] | None = None,
) -> HarvestResult:
    """Both passes over `cfg`'s corpus in this process; raises HarvestError / CorpusError (one line).

    `progress` hears both passes unless `pass2_progress` gives pass 2 its own (made when pass 2 starts).
    """
    started = time.perf_counter()
    loaded, sae = prepare(cfg, model, sae)
    first = scan(cfg, enumerate(iter_documents(cfg.corpus, cfg.text_field)), loaded, sae, progress=progress)
    if first.n_tokens == 0:
        raise no_tokens(cfg)
    if pass2_progress is not None:
        progress = pass2_progress()
    found = materialise(
        cfg,
        enumerate(iter_documents(cfg.corpus, cfg.text_field)),
        first.top,
        loaded,
        sae,
        end_key=first.end_key,
        progress=progress,
    )
    return assemble(cfg, first, found, loaded, sae, started=started)


def harvest_groups(
    cfg: AtlasHarvestConfig,
    first: Pass1Result,
    groups: Sequence[Sequence[int]],
    model: LoadedModel,
    sae: Any,
    progress: Progress = no_progress,
) -> Iterator[HarvestResult]:
    """Pass 2 and the result for each group of latents in turn (host memory: one group's contexts)."""
    for group in groups:
        top = first.top.select(group)
        found = materialise(
            cfg,
            enumerate(iter_documents(cfg.corpus, cfg.text_field)),
            top,
            model,
            sae,
            end_key=first.end_key,
            progress=progress,
        )
        yield assemble(
            cfg, Pass1Result(top, first.counts, first.n_tokens, first.n_documents, first.end_key), found, model, sae
        )
