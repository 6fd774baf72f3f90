"""`<map>/agreement.json`: the published explanations scored against each top-level cluster.

Written by the agreement step (`pipeline.agreement`, after `vista label` unless
`--no-agreement`), each time it runs; read by the explorer, which shows at the root which
sense the published reading covers. Per-node agreement lives in the tree's `agreement`
column, not here. The standard library only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vista_tui.mapdata.atomic import atomic_write_json
from vista_tui.mapdata.errors import MapCorruptError

AGREEMENT_FILE = "agreement.json"
"""Written by `pipeline.agreement`: the published explanations scored against each top-level cluster."""


@dataclass(frozen=True)
class LatentAgreement:
    """How far the published explanations agree with each top-level cluster's label and keywords."""

    clusters: Mapping[str, float] = field(default_factory=dict)
    """Top-level cluster id -> mean cosine; NaN for a cluster with neither label nor keywords."""
    published: tuple[str, ...] = ()
    """The explanations that were scored."""
    step_id: str = ""
    """The agreement step that wrote the file."""
    encoder: str = ""
    """The sentence encoder that embedded the texts."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file (a NaN score is written as null)."""
        return {
            "step_id": self.step_id,
            "encoder": self.encoder,
            "published": list(self.published),
            "clusters": {node_id: score if math.isfinite(score) else None for node_id, score in self.clusters.items()},
        }


def read_agreement(map_dir: Path) -> LatentAgreement | None:
    """The map's latent-level agreement; None when absent; MapCorruptError when the file is unreadable."""
    path = Path(map_dir) / AGREEMENT_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        clusters = raw.get("clusters", {})
        return LatentAgreement(
            clusters={str(k): math.nan if v is None else float(v) for k, v in clusters.items()},
            published=tuple(str(p) for p in raw.get("published", [])),
            step_id=str(raw.get("step_id", "")),
            encoder=str(raw.get("encoder", "")),
        )
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise MapCorruptError(
            f"{path} is unreadable ({error}): run `vista label` again to rewrite it, or delete it"
        ) from None


def write_agreement(map_dir: Path, agreement: LatentAgreement) -> Path:
    """Write `<map>/agreement.json` atomically; returns its path."""
    path = Path(map_dir) / AGREEMENT_FILE
    atomic_write_json(path, agreement.to_dict())
    return path


def cluster_agreement(map_dir: Path) -> dict[str, float]:
    """Top-level cluster id -> agreement with the published explanations; {} when absent or unreadable.

    For the explorer: a broken side file must not stop a map from opening.
    """
    try:
        agreement = read_agreement(map_dir)
    except MapCorruptError:
        return {}
    return {} if agreement is None else dict(agreement.clusters)
