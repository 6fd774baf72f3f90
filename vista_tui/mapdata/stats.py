"""`<map>/stats.json`: how the latent behaves beyond its top-N contexts.

Recorded by the harvest over every real token of the corpus (density, a histogram of all
firings, the positions it fires at) and completed by the build with per-node figures (the
activation histogram and position profile of each node's members). Written by `pipeline.build`
with the map, before its manifest; a map built before the file existed has none, and
`read_latent_stats` returns None for it. The standard library only.

Histogram rule: `bins` equal-width bins over [0, `hi`), the last one closed; `hi` is the
smallest power of two at or above the largest activation. The harvest streams it: when an
activation beyond `hi` arrives, `hi` doubles and neighbouring bins are summed pairwise,
which is exact because the edges of the coarser grid are edges of the finer one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vista_tui.mapdata.atomic import atomic_write_json
from vista_tui.mapdata.errors import MapCorruptError

STATS_FILE = "stats.json"
"""Written by `pipeline.build` with the map: the latent's statistics over the whole corpus."""
STATS_VERSION = 1


@dataclass(frozen=True)
class Histogram:
    """Counts in `len(counts)` equal-width bins over [lo, hi) (the last bin closed)."""

    lo: float = 0.0
    hi: float = 0.0
    counts: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        """Values counted."""
        return sum(self.counts)

    def edges(self) -> list[float]:
        """The `len(counts) + 1` bin edges."""
        n = len(self.counts)
        return [self.lo + (self.hi - self.lo) * i / n for i in range(n + 1)] if n else []

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {"lo": self.lo, "hi": self.hi, "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Histogram:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(lo=float(raw["lo"]), hi=float(raw["hi"]), counts=tuple(int(c) for c in raw["counts"]))


@dataclass(frozen=True)
class NodeStats:
    """A node's members: their activations on the latent's grid and their focus positions."""

    activations: Histogram = field(default_factory=Histogram)
    positions: tuple[int, ...] = ()
    """Members by the focus token's position in its model input (index = position)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {"activations": self.activations.to_dict(), "positions": list(self.positions)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NodeStats:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(
            activations=Histogram.from_dict(raw["activations"]),
            positions=tuple(int(c) for c in raw.get("positions", [])),
        )


@dataclass(frozen=True)
class LatentStats:
    """The latent over every real token of the corpus, and per node of the map."""

    latent: int
    n_tokens_seen: int
    """Real tokens (not special, not padding) the harvest encoded."""
    n_fired: int
    """Of those, the tokens on which the latent was above zero."""
    max_activation: float
    activations: Histogram
    """Every firing (activation > 0), not only the top-N."""
    positions: tuple[int, ...]
    """Firings by the token's position in its model input (0 = the first input token, special
    tokens included; inputs are at most the harvest's max_length long)."""
    nodes: Mapping[str, NodeStats] = field(default_factory=dict)
    """Node id -> its members' figures (empty until the build adds them)."""

    @property
    def density(self) -> float:
        """Firings over real tokens seen (0 when none were seen)."""
        return self.n_fired / self.n_tokens_seen if self.n_tokens_seen else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "schema_version": STATS_VERSION,
            "latent": self.latent,
            "n_tokens_seen": self.n_tokens_seen,
            "n_fired": self.n_fired,
            "density": self.density,
            "max_activation": self.max_activation,
            "activations": self.activations.to_dict(),
            "positions": list(self.positions),
            "nodes": {node_id: node.to_dict() for node_id, node in self.nodes.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LatentStats:
        """Read `to_dict`'s object (unknown keys ignored; `density` is recomputed)."""
        return cls(
            latent=int(raw["latent"]),
            n_tokens_seen=int(raw["n_tokens_seen"]),
            n_fired=int(raw["n_fired"]),
            max_activation=float(raw["max_activation"]),
            activations=Histogram.from_dict(raw["activations"]),
            positions=tuple(int(c) for c in raw.get("positions", [])),
            nodes={str(k): NodeStats.from_dict(v) for k, v in raw.get("nodes", {}).items()},
        )


def read_latent_stats(map_dir: Path) -> LatentStats | None:
    """The map's statistics; None when the map has none (built before they were recorded);
    MapCorruptError when the file is unreadable or of a newer version."""
    path = Path(map_dir) / STATS_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        version = raw.get("schema_version")
    except (OSError, ValueError, AttributeError) as error:
        raise MapCorruptError(f"{path} is unreadable ({error}): rebuild the map, or delete it") from None
    if version != STATS_VERSION:
        raise MapCorruptError(f"{path} is stats version {version!r}, this vista reads {STATS_VERSION}: rebuild the map")
    try:
        return LatentStats.from_dict(raw)
    except (KeyError, ValueError, AttributeError, TypeError) as error:
        raise MapCorruptError(f"{path} is unreadable ({type(error).__name__}: {error}): rebuild the map") from None


def write_latent_stats(map_dir: Path, stats: LatentStats) -> Path:
    """Write `<map>/stats.json` atomically; returns its path."""
    path = Path(map_dir) / STATS_FILE
    atomic_write_json(path, stats.to_dict())
    return path


def regrid(counts: Sequence[int], n: int) -> list[int]:
    """`counts` summed into `n` groups of neighbouring bins (for display; n >= len: unchanged)."""
    if n <= 0 or len(counts) <= n:
        return list(counts)
    out = [0] * n
    for i, count in enumerate(counts):
        out[i * n // len(counts)] += count
    return out
