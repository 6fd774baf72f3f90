"""The atlas: every latent of an SAE (or a range, or a list) harvested in two passes, engine-agnostic.

- `config`: `AtlasHarvestConfig`, the latents spec ("all" | "A-B" | "a,b,c");
- `pass1`: `scan` — one sweep keeping per latent its best candidates (`TopBuffer`, on the device)
  and its statistics (`LatentCounts`); `merge_results`, associative and commutative, for shards;
- `pass2`: `materialise` — windows, activations and codes of the selected tokens only;
  `assemble` — the `HarvestResult` the per-map build reads;
- `harvest`: `harvest_in_process`, both passes in one process; `harvest_groups`, pass 2 group by group.

Token keys (document index, token index), whose order is corpus order and breaks ties, are
`pipeline.harvest.ordinals`, shared with the single-latent harvest.

torch is imported inside functions only, so importing this package stays cheap.
"""

from __future__ import annotations

from pipeline.atlas.config import ALL, AtlasHarvestConfig, parse_latents
from pipeline.atlas.harvest import harvest_groups, harvest_in_process
from pipeline.atlas.pass1 import LatentCounts, Pass1Result, TopBuffer, merge_results, scan
from pipeline.atlas.pass2 import Materialised, assemble, materialise, selection, short_of_candidates

__all__ = [
    "ALL",
    "AtlasHarvestConfig",
    "LatentCounts",
    "Materialised",
    "Pass1Result",
    "TopBuffer",
    "assemble",
    "harvest_groups",
    "harvest_in_process",
    "materialise",
    "merge_results",
    "parse_latents",
    "scan",
    "selection",
    "short_of_candidates",
]
