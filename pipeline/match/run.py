"""`vista match SAE_A SAE_B`: a match table of two SAEs in the store (`<store>/matches/<id>/`).

Per latent of A: its top-k latents of B by decoder cosine (what they write) and by encoder
cosine (what they read), blocked so that no m x n matrix is held (`topk_cosines`); and its
partner in the one-to-one matching that maximises the total decoder cosine (`assign`: dense
and exact up to 2^24 pairs, else among top candidates, with the distance to exact bounded).
The manifest says which, and the mean matched cosine and the share of A's latents whose
partner reaches `threshold`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.match.assign import CANDIDATES, DENSE_LIMIT, Assignment, blocked_topk, one_to_one
from pipeline.match.load import (
    Directions,
    SaeSource,
    check_same_input,
    load_directions,
    refuse_different_inputs,
    sae_source,
)
from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import MatchManifest, Store, match_id_for, matches_schema, write_match_table
from vista_tui.mapdata.atomic import utc_now

StepReporter = Callable[[str, str], Progress]
"""Given (step name, description) returns the Progress callback for that step (as `vista build`'s)."""


def no_report(step: str, description: str) -> Progress:
    """A StepReporter that reports nothing."""
    return no_progress


@dataclass(frozen=True)
class MatchConfig:
    """How two SAEs are matched."""

    k: int = 8
    """Neighbours kept per latent of A, by decoder and by encoder cosine."""
    threshold: float = 0.7
    """A matched pair counts as shared at or above this decoder cosine."""
    candidates: int = CANDIDATES
    """Candidate partners per latent (each direction) when the pair is too big for the dense matching."""
    dense_limit: int = DENSE_LIMIT
    """Largest m x n matched on the full cosine matrix."""
    device: str = "cpu"
    """Where the cosines are computed ("auto": a GPU when there is one)."""

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be a positive integer (neighbours per latent), got {self.k!r}")
        if not isinstance(self.threshold, (int, float)) or not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine from -1 to 1, got {self.threshold!r}")
        if not isinstance(self.candidates, int) or isinstance(self.candidates, bool) or self.candidates < 1:
            raise ValueError(f"candidates must be a positive integer, got {self.candidates!r}")
        if not isinstance(self.dense_limit, int) or self.dense_limit < 0:
            raise ValueError(f"dense_limit must be a non-negative integer, got {self.dense_limit!r}")


@dataclass(frozen=True)
class MatchReport:
    """What `run` wrote."""

    path: Path
    """The match table's directory."""
    manifest: MatchManifest

    def summary(self) -> list[str]:
        """A few lines for a person: the SAEs, the matching's figures, how it was solved."""
        m = self.manifest
        mean = "–" if math.isnan(m.mean_matched_cosine) else f"{m.mean_matched_cosine:.3f}"
        return [
            f"matched {m.n_matched:,} of {m.sae_a.d_sae:,} latents of A (B has {m.sae_b.d_sae:,}) in {m.seconds:.1f} s",
            f"A: {m.sae_a.sae}",
            f"B: {m.sae_b.sae}",
            f"mean matched decoder cosine {mean}; {m.share_above:.1%} of A's latents at or above {m.threshold:g}",
            f"method: {m.method}; {m.note}",
        ]


@dataclass(frozen=True)
class Matched:
    """The core's result: matches.parquet's table and the one-to-one matching."""

    table: Any
    """pyarrow Table in `matches_schema()`."""
    assignment: Assignment


def match_directions(a: Directions, b: Directions, cfg: MatchConfig, report: StepReporter = no_report) -> Matched:
    """The neighbours and the one-to-one matching of A's latents in B: `vista match` without loading or writing."""
    refuse_different_inputs(a.ref.sae, a.ref.d_in, b.ref.sae, b.ref.d_in)
    m, n = a.ref.d_sae, b.ref.d_sae
    dense = m * n <= cfg.dense_limit
    # The sparse matching takes its forward candidates from the same pass as the table's neighbours.
    width = cfg.k if dense else max(cfg.k, cfg.candidates)
    progress = report("decoder", f"decoder cosines: {m:,} x {n:,} latents, top {width}")
    decoder = blocked_topk(a.decoder, b.decoder, width, progress=progress)
    progress = report("encoder", f"encoder cosines: top {cfg.k}")
    encoder = blocked_topk(a.encoder, b.encoder, cfg.k, progress=progress)
    how = "dense" if dense else f"top-{cfg.candidates} candidates, both directions"
    progress = report("assign", f"one-to-one matching ({how})")
    assignment = one_to_one(
        a.decoder,
        b.decoder,
        forward=None if dense else decoder,
        candidates=cfg.candidates,
        dense_limit=cfg.dense_limit,
        progress=progress,
    )
    progress(1, 1, "solved")
    return Matched(_table(decoder, encoder, cfg.k, assignment), assignment)


def _table(
    decoder: tuple[np.ndarray, np.ndarray], encoder: tuple[np.ndarray, np.ndarray], k: int, a: Assignment
) -> Any:
    """matches.parquet's rows: one per latent of A."""
    import pyarrow as pa

    def lists(values: np.ndarray, kind: Any) -> Any:
        values = np.ascontiguousarray(values[:, :k])
        offsets = np.arange(0, values.size + 1, max(1, values.shape[1]), dtype=np.int32)[: len(values) + 1]
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.ravel(), type=kind))

    m = len(a.partner)
    return pa.table(
        [
            pa.array(np.arange(m, dtype=np.int32)),
            lists(decoder[0], pa.int32()),
            lists(decoder[1], pa.float32()),
            lists(encoder[0], pa.int32()),
            lists(encoder[1], pa.float32()),
            pa.array(a.partner.astype(np.int32)),
            pa.array(a.cosine, type=pa.float32(), from_pandas=True),  # NaN: no partner (null)
        ],
        schema=matches_schema(),
    )


def check(sae_a: str, sae_b: str) -> tuple[SaeSource, SaeSource]:
    """Both names parsed and both configs read (no weights): a missing folder, an unknown release or id and
    different input widths are one-line ModelErrors here, before any progress is drawn."""
    source_a, source_b = sae_source(sae_a), sae_source(sae_b)
    check_same_input(source_a, source_b)
    return source_a, source_b


def run(cfg: MatchConfig, sae_a: str, sae_b: str, store: Store, report: StepReporter = no_report) -> MatchReport:
    """Load both SAEs (same d_in, checked from their configs first), match them and write the table into
    `store`; raises a one-line ModelError/ValueError for what a person can fix."""
    from pipeline.models import resolve_device

    started = time.perf_counter()
    source_a, source_b = check(sae_a, sae_b)
    device = resolve_device(cfg.device)
    loading = report("load", "loading both SAEs' weights")
    a = load_directions(source_a, device)
    loading(1, 2, "A")
    b = load_directions(source_b, device)
    loading(2, 2, "B")
    matched = match_directions(a, b, cfg, report)
    assignment = matched.assignment
    match_id = match_id_for(a.ref.sae, b.ref.sae)
    cosines = assignment.cosine[assignment.partner >= 0].astype(np.float64)
    manifest = MatchManifest(
        match_id=match_id,
        created=utc_now(),
        sae_a=a.ref,
        sae_b=b.ref,
        k=cfg.k,
        threshold=float(cfg.threshold),
        method=assignment.method,
        exact=assignment.exact,
        mean_matched_cosine=float(cosines.mean()) if len(cosines) else float("nan"),
        share_above=float((cosines >= cfg.threshold).sum() / a.ref.d_sae),
        n_matched=assignment.n_matched,
        note=assignment.note,
        seconds=round(time.perf_counter() - started, 3),
        extra={
            "upper_bound_mean_cosine": assignment.upper_bound / max(1, min(a.ref.d_sae, b.ref.d_sae)),
            "max_gap_mean_cosine": assignment.gap,
            "candidates": cfg.candidates,
            "device": device,
        },
    )
    writing = report("write", "writing the match table")
    path = write_match_table(store.match_path(match_id), manifest, matched.table)
    writing(1, 1)
    return MatchReport(path=path, manifest=manifest)


@contextmanager
def _hub_off(offline: bool) -> Iterator[None]:
    """While inside, HF_HUB_OFFLINE=1 when `offline` (as `--offline`); as it was afterwards."""
    if not offline:
        yield
        return
    before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before


def match_saes(
    sae_a: str,
    sae_b: str,
    *,
    store: Store,
    k: int = 8,
    threshold: float = 0.7,
    offline: bool = False,
    device: str = "cpu",
    report: StepReporter = no_report,
) -> Path:
    """Match SAE B's latents to SAE A's (names: a folder sae-lens saved, or RELEASE/SAE_ID) and write the
    table to `store.match_path(match_id_for(A, B))`; returns that directory. `offline`: SAEs only from the
    local Hugging Face cache (otherwise the hub is as HF_HUB_OFFLINE says)."""
    with _hub_off(offline):
        return run(MatchConfig(k=k, threshold=threshold, device=device), sae_a, sae_b, store, report).path
