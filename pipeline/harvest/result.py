"""What a harvest found: per latent its top contexts and codes, and how the harvest was made."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from pipeline.harvest.config import STEP, VERSION, HarvestError
from pipeline.steps import step_id
from vista_tui.mapdata import LatentStats, Provenance, SparseCodes, StepRecord

CHILDREN_PARAM = "children"
"""The harvest parameter of `--also-sae` (`HarvestConfig.children`)."""


@dataclass(frozen=True)
class LatentChildren:
    """`--also-sae`: the latent's decoder neighbours in SAE B, and which of them fire on each kept context."""

    neighbours: np.ndarray
    """int64 (k,): latents of B with the highest decoder cosine to this latent, best first."""
    cosines: np.ndarray
    """float32 (k,): their decoder cosines."""
    firings: SparseCodes
    """Row i: the neighbours that fire (> 0) on row i's focus token, with B's activations (n_latents: B's d_sae)."""

    def contexts(self) -> list[list[tuple[int, float]]]:
        """Per context row, its firing neighbours as (latent of B, activation): `map_children`'s `contexts`."""
        indptr, indices, values = self.firings.indptr, self.firings.indices, self.firings.values
        return [
            list(zip(indices[lo:hi].tolist(), values[lo:hi].tolist(), strict=True))
            for lo, hi in zip(indptr[:-1].tolist(), indptr[1:].tolist(), strict=True)
        ]


@dataclass(frozen=True)
class ChildrenRun:
    """`--also-sae`: which SAE B the harvest also encoded with, and what that cost."""

    sae: str
    """SAE B as the build named it (`ChildrenConfig.sae_description`)."""
    d_sae: int
    k: int
    seconds: float
    """The neighbours' search and B's encoding of the kept focus tokens, within the harvest's time."""


@dataclass(frozen=True)
class LatentHarvest:
    """One latent's top contexts, highest activation first, and their focus tokens' SAE codes."""

    latent: int
    table: pa.Table
    """The contexts in the contexts_table() schema (x, y, leaf_node empty)."""
    codes: SparseCodes
    """Row i is the full SAE code of row i's focus token."""
    n_fired: int
    """Tokens of the corpus on which the latent was above zero."""
    stats: LatentStats | None = None
    """Density, the histogram of all firings and their positions (None: a harvest made without)."""
    focus_positions: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """Row i's focus token position in its model input (empty: not recorded)."""
    negatives: pa.Table | None = None
    """Windows where the latent is 0 on every token (`negatives.parquet`'s schema); None: none drawn."""
    children: LatentChildren | None = None
    """`--also-sae`: its neighbours in SAE B firing on each row's focus token; None: harvested without."""

    @property
    def n_contexts(self) -> int:
        """Contexts kept (at most top_n)."""
        return int(self.table.num_rows)


@dataclass(frozen=True)
class HarvestResult:
    """What a harvest found, per latent, and how it was made."""

    latents: dict[int, LatentHarvest]
    """Per requested latent, in the order requested (latents that never fired have no rows)."""
    never_fired: list[int]
    """Requested latents that were zero on every token; the caller decides whether that is an error."""
    n_tokens_seen: int
    n_documents: int
    d_model: int
    """Width of the hook's output (the SAE's d_in)."""
    d_sae: int
    model: str
    hook: str
    """The hook as a module path of the model (e.g. "encoder.layer.3")."""
    sae: str
    corpus: str
    record: StepRecord
    children: ChildrenRun | None = None
    """`--also-sae`: SAE B; None when harvested without it."""

    def provenance(self, latent: int) -> Provenance:
        """The map provenance of one latent's harvest."""
        harvest = self.latents[latent]
        return Provenance(
            model=self.model,
            hook=self.hook,
            sae=self.sae,
            latent=latent,
            corpus=self.corpus,
            n_contexts=harvest.n_contexts,
            n_tokens_seen=self.n_tokens_seen,
            d_sae=self.d_sae,
            d_model=self.d_model,
        )

    def record_for(self, latent: int) -> StepRecord:
        """The step record of one latent's harvest, as if it had been harvested alone.

        A latent's top contexts do not depend on which other latents shared the pass, so its
        map's step id must not either: a rebuild of latent 1 alone reuses what a harvest of
        latents 1 and 2 made. Nor on `--also-sae` (SAE B changes no context): its parameters
        are the map's "children" step (`children_record`). Same versions, time and other
        parameters as `record`.
        """
        if latent not in self.latents:
            raise KeyError(f"latent {latent} was not harvested (harvested: {sorted(self.latents)})")
        params = {**self.record.params, "latents": [latent]}
        params.pop(CHILDREN_PARAM, None)
        return replace(self.record, params=params, step_id=step_id(STEP, VERSION, params, self.record.upstream))

    def never_fired_error(self, latent: int | None = None) -> HarvestError:
        """The error a caller raises for a latent (default: the first) that never fired."""
        if latent is None:
            if not self.never_fired:
                raise ValueError("every requested latent fired")
            latent = self.never_fired[0]
        others = [other for other in self.never_fired if other != latent]
        also = f" (nor did {', '.join(map(str, others))})" if others else ""
        return HarvestError(
            f"latent {latent} never fired on corpus {self.corpus} ({self.n_tokens_seen} tokens seen){also};"
            " try a larger corpus (or no --max-tokens), another hook, or another latent"
        )

    def check_fired(self) -> None:
        """Raise HarvestError if any requested latent never fired."""
        if self.never_fired:
            raise self.never_fired_error()
