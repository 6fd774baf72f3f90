"""What an atlas harvest is asked to do: model, hook, SAE, corpus, which latents, how many contexts each.

`AtlasHarvestConfig` validates itself in `__post_init__` without touching the disk: the latents
are parsed from "all", a range "A-B" (both ends included) or a list "a,b,c", and checked against
the SAE's width only once the SAE is loaded (`resolve_latents`). Every error is one line that
names the bad value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.harvest.config import HarvestConfig, HarvestError
from pipeline.models import MINILM

ALL = "all"
"""The latents spec that asks for every latent of the SAE."""
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_LIST = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*,?\s*$")


def _listed(text: str) -> list[int] | None:
    """The latents of a list "a,b,c" in its order; None when `text` is no such list."""
    return [int(part) for part in text.split(",") if part.strip()] if _LIST.match(text) else None


def parse_latents(spec: Any) -> tuple[int, ...] | str:
    """`ALL`, or the latents of a range "A-B" (inclusive) / a list "a,b,c" / ints, ascending; ValueError (one line)."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() == ALL:
            return ALL
        found = _RANGE.match(text)
        if found:
            first, last = int(found.group(1)), int(found.group(2))
            if last < first:
                raise ValueError(
                    f"latents range {spec!r} runs backwards; write the lower end first (e.g. {last}-{first})"
                )
            return tuple(range(first, last + 1))
        listed = _listed(text)
        if listed is None:
            raise ValueError(f"latents must be 'all', a range A-B or a list a,b,c of latent indices, got {spec!r}")
        spec = listed
    if isinstance(spec, int | np.integer) and not isinstance(spec, bool):
        spec = (spec,)
    if not isinstance(spec, list | tuple):
        raise ValueError(f"latents must be 'all', a range A-B or a list a,b,c of latent indices, got {spec!r}")
    if not spec:
        raise ValueError("latents must name at least one latent index, got ()")
    for latent in spec:
        if not isinstance(latent, int | np.integer) or isinstance(latent, bool) or latent < 0:
            raise ValueError(f"latents must be non-negative integers, got {latent!r}")
    latents = [int(latent) for latent in spec]
    if len(set(latents)) < len(latents):
        repeated = min(latent for latent in set(latents) if latents.count(latent) > 1)
        raise ValueError(f"latents must not repeat, got {repeated} more than once")
    return tuple(sorted(latents))


def listed_order(spec: Any) -> tuple[int, ...]:
    """The order a list "a,b,c" names its latents in (the atlas's order when it is not ascending); () for
    "all", a range, or a list already ascending. Call after `parse_latents` accepted the spec."""
    if isinstance(spec, str):
        spec = _listed(spec.strip())
    if not isinstance(spec, list | tuple):
        return ()
    latents = tuple(int(latent) for latent in spec)
    return latents if list(latents) != sorted(latents) else ()


@dataclass(frozen=True)
class AtlasHarvestConfig:
    """The all-latent harvest: `HarvestConfig`'s fields, with latents as "all" / a range / a list, and the slack."""

    model: str
    """A Hugging Face model id (downloaded unless the hub is off), a local directory, or `minilm` (bundled)."""
    hook: str
    """A block index, `blocks.N.hook_resid_post`, or a module path inside the model."""
    corpus: tuple[str, ...]
    latents: tuple[int, ...] | str = ALL
    """`ALL`, or the requested latents ascending (a range "A-B" or list "a,b,c" is parsed to them)."""
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    top_n: int = 4000
    window: int = 12
    max_length: int = 128
    batch_size: int = 32
    text_field: str = "text"
    device: str = "auto"
    max_tokens: int | None = None
    """Stop after this many corpus tokens (in corpus order); applies to an unsharded pass 1 only."""
    dedupe: bool = True
    slack: int | None = None
    """Candidates pass 1 keeps beyond top_n per latent, for pass 2's dedupe to choose from
    (None: top_n, i.e. 2N candidates; ignored without dedupe)."""

    def __post_init__(self) -> None:
        """Parse the latents and the forgiving spellings, then raise ValueError naming the first bad field."""
        if isinstance(self.corpus, str):
            object.__setattr__(self, "corpus", (self.corpus,))
        object.__setattr__(self, "latents", parse_latents(self.latents))
        if self.slack is not None and (
            not isinstance(self.slack, int) or isinstance(self.slack, bool) or self.slack < 0
        ):
            raise ValueError(f"slack must be a non-negative integer, got {self.slack!r}")
        # Everything else is checked as the single-latent harvest checks it (one rule, one message).
        checked = self.harvest_config((0,) if self.latents == ALL else self.latents)
        object.__setattr__(self, "hook", checked.hook)
        object.__setattr__(self, "corpus", checked.corpus)

    def harvest_config(self, latents: tuple[int, ...]) -> HarvestConfig:
        """The single-latent harvest's config for the same run and `latents` (no quantile examples)."""
        return HarvestConfig(
            model=self.model,
            hook=self.hook,
            latents=latents,
            corpus=self.corpus,
            sae_release=self.sae_release,
            sae_id=self.sae_id,
            sae_path=self.sae_path,
            top_n=self.top_n,
            window=self.window,
            max_length=self.max_length,
            batch_size=self.batch_size,
            text_field=self.text_field,
            device=self.device,
            max_tokens=self.max_tokens,
            dedupe=self.dedupe,
            quantiles=0,
            per_quantile=0,
        )

    @property
    def candidates(self) -> int:
        """Entries pass 1 keeps per latent: top_n plus the slack with dedupe, top_n without."""
        if not self.dedupe:
            return self.top_n
        return self.top_n + (self.top_n if self.slack is None else self.slack)

    @property
    def sae_description(self) -> str:
        """How the SAE is named in provenance: "release/sae_id" or the directory."""
        return self.sae_path if self.sae_path is not None else f"{self.sae_release}/{self.sae_id}"

    @property
    def is_minilm(self) -> bool:
        """Whether the model is the bundled MiniLM (its package's version goes in the record)."""
        return self.model == MINILM

    def resolve_latents(self, d_sae: int) -> tuple[int, ...]:
        """The requested latents for an SAE of `d_sae` latents; HarvestError (one line) when one is out of range."""
        if self.latents == ALL:
            return tuple(range(d_sae))
        latents = tuple(self.latents)
        too_big = [latent for latent in latents if latent >= d_sae]
        if too_big:
            more = f" ({len(too_big) - 1} more requested latents are too)" if len(too_big) > 1 else ""
            raise HarvestError(
                f"latent {too_big[0]} is out of range: the SAE has {d_sae} latents (0..{d_sae - 1}){more}"
            )
        return latents
