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
class QuantileExample:
    """One firing drawn at random from an activation interval, with the window around it."""

    interval: int
    """Index of the interval it was drawn from (0 = the lowest activations)."""
    activation: float
    """The latent's activation on the focus token."""
    doc_id: str
    tokens: tuple[str, ...]
    """The window's display tokens, as the map's contexts hold them."""
    focus: int
    """Index of the focus token in `tokens`."""
    token_activations: tuple[float, ...]
    """The latent's activation on every token of the window (for shading)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "interval": self.interval,
            "activation": self.activation,
            "doc_id": self.doc_id,
            "tokens": list(self.tokens),
            "focus": self.focus,
            "token_activations": list(self.token_activations),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> QuantileExample:
        """Read `to_dict`'s object (unknown keys ignored)."""
        tokens = tuple(str(t) for t in raw["tokens"])
        focus = int(raw["focus"])
        if not 0 <= focus < len(tokens):
            raise ValueError(f"focus {focus} is outside its {len(tokens)} tokens")
        return cls(
            interval=int(raw["interval"]),
            activation=float(raw["activation"]),
            doc_id=str(raw.get("doc_id", "")),
            tokens=tokens,
            focus=focus,
            token_activations=tuple(float(a) for a in raw.get("token_activations", [])),
        )


@dataclass(frozen=True)
class QuantileExamples:
    """Examples below the top-N: up to `per_quantile` random firings from each of the equal-width
    activation intervals `edges[i]`..`edges[i + 1]` over (0, max_activation] (SAEDashboard's and
    delphi's "quantiles"). Kept apart from the map's top-N contexts."""

    edges: tuple[float, ...]
    """The `Q + 1` interval edges, from 0 to the largest activation."""
    per_quantile: int
    """Most examples drawn per interval (fewer where the interval holds fewer firings)."""
    examples: tuple[QuantileExample, ...] = ()
    """Ordered by interval, then by activation (highest first)."""

    @property
    def n_intervals(self) -> int:
        """Q: how many intervals the firings were cut into."""
        return max(0, len(self.edges) - 1)

    def interval(self, index: int) -> list[QuantileExample]:
        """The examples drawn from interval `index`."""
        return [example for example in self.examples if example.interval == index]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "edges": list(self.edges),
            "per_quantile": self.per_quantile,
            "examples": [example.to_dict() for example in self.examples],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> QuantileExamples:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(
            edges=tuple(float(e) for e in raw["edges"]),
            per_quantile=int(raw["per_quantile"]),
            examples=tuple(QuantileExample.from_dict(e) for e in raw.get("examples", [])),
        )


@dataclass(frozen=True)
class TokenLogit:
    """One vocabulary token and the decoder direction's logit for it."""

    token: str
    """The token as the tokenizer decodes it alone (a leading space included)."""
    token_id: int
    value: float

    def to_list(self) -> list[Any]:
        """The JSON triple written to the file."""
        return [self.token, self.token_id, self.value]

    @classmethod
    def from_list(cls, raw: Sequence[Any]) -> TokenLogit:
        """Read `to_list`'s triple."""
        token, token_id, value = raw
        return cls(token=str(token), token_id=int(token_id), value=float(value))


@dataclass(frozen=True)
class DecoderLogits:
    """Which tokens the latent promotes and suppresses: the top and bottom entries of
    `W_dec[latent] @ W_U` (SAEDashboard's definition: the unembedding alone, no final norm)."""

    positive: tuple[TokenLogit, ...] = ()
    """Highest first."""
    negative: tuple[TokenLogit, ...] = ()
    """Lowest first."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {"positive": [t.to_list() for t in self.positive], "negative": [t.to_list() for t in self.negative]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DecoderLogits:
        """Read `to_dict`'s object (unknown keys ignored)."""
        return cls(
            positive=tuple(TokenLogit.from_list(t) for t in raw.get("positive", [])),
            negative=tuple(TokenLogit.from_list(t) for t in raw.get("negative", [])),
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
    quantiles: QuantileExamples | None = None
    """Random examples per activation interval; None when the harvest drew none (`--quantiles 0`,
    or a map built before they were recorded)."""
    logits: DecoderLogits | None = None
    """The decoder direction's top and bottom logits; None when there are none (see `logits_note`)."""
    logits_note: str = ""
    """Why there are no logits, in one line (e.g. "no unembedding: … has no LM head"); empty when
    there are, or when the map was built before logits were recorded."""

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
            "quantiles": self.quantiles.to_dict() if self.quantiles is not None else None,
            "logits": self.logits.to_dict() if self.logits is not None else None,
            "logits_note": self.logits_note,
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
            quantiles=QuantileExamples.from_dict(raw["quantiles"]) if raw.get("quantiles") else None,
            logits=DecoderLogits.from_dict(raw["logits"]) if raw.get("logits") else None,
            logits_note=str(raw.get("logits_note", "")),
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
