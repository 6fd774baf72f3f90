"""The atlas harvest in one process: pass 1 over the whole corpus, pass 2 over the documents it selected.

The engines (`pipeline.atlas.engine`) shard the same two passes; this is the reference they are
compared with and the default without Ray.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.atlas.config import AtlasHarvestConfig
from pipeline.atlas.pass1 import scan
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


def harvest_in_process(
    cfg: AtlasHarvestConfig,
    progress: Progress = no_progress,
    model: LoadedModel | None = None,
    sae: Any | None = None,
) -> HarvestResult:
    """Both passes over `cfg`'s corpus in this process; raises HarvestError / CorpusError (one line)."""
    started = time.perf_counter()
    loaded, sae = prepare(cfg, model, sae)
    first = scan(cfg, enumerate(iter_documents(cfg.corpus, cfg.text_field)), loaded, sae, progress=progress)
    if first.n_tokens == 0:
        raise HarvestError(f"corpus {', '.join(cfg.corpus)} gave no tokens to harvest; check it holds text")
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
