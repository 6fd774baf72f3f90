"""What a harvest is asked to do: its step identity, its config, and the error it raises.

`HarvestConfig` validates itself in `__post_init__` (types, ranges, one way of naming the SAE)
without touching the disk or the environment: whether the model, SAE and corpus exist is
found out when the harvest runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.harvest.stats import BINS
from pipeline.models import MINILM, ModelError

STEP = "harvest"
VERSION = 5

DISTRIBUTIONS = ("torch", "transformers", "sae-lens", "numpy", "pyarrow")
"""Distributions whose versions the harvest's record names (plus the MiniLM package when it is the model)."""

MAX_QUANTILES = BINS // 2
"""Most quantile intervals: each one is then wider than a bin of the harvest's activation grid."""

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

HarvestError = ModelError
"""A harvest that cannot run; the message is one line saying what is wrong and what to do.

The same class as `pipeline.models.ModelError`: a missing model, a bad hook and a torn harvest
cache are caught alike by whoever runs the harvest."""


CHILDREN_K = 8
"""Decoder neighbours in SAE B of a map's latent whose firings `--also-sae` records (`--children-k`)."""


@dataclass(frozen=True)
class ChildrenConfig:
    """`--also-sae`: a second SAE (B) of the same hook, whose latents among each harvested latent's `k` nearest
    decoder directions are recorded where they fire on a kept context's focus token (children.json)."""

    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    k: int = CHILDREN_K

    def __post_init__(self) -> None:
        """Raise ValueError naming the first bad field."""
        check_sae_source(self.sae_release, self.sae_id, self.sae_path, "also_")
        _positive("children k", self.k)

    @property
    def sae_description(self) -> str:
        """How SAE B is named in children.json: "release/sae_id" or the directory (as `HarvestConfig`'s)."""
        return self.sae_path if self.sae_path is not None else f"{self.sae_release}/{self.sae_id}"


def check_sae_source(release: Any, sae_id: Any, path: Any, prefix: str = "") -> None:
    """Raise ValueError unless the SAE is named one way: release + id, or a path (`prefix` names the fields)."""
    by_name = release is not None or sae_id is not None
    if by_name and (release is None or sae_id is None):
        raise ValueError(
            f"{prefix}sae_release and {prefix}sae_id go together, got {prefix}sae_release={release!r}"
            f" {prefix}sae_id={sae_id!r}"
        )
    if by_name == (path is not None):
        raise ValueError(
            f"give the SAE either as {prefix}sae_release + {prefix}sae_id or as {prefix}sae_path, not both and not"
            f" neither (got {prefix}sae_release={release!r}, {prefix}sae_id={sae_id!r}, {prefix}sae_path={path!r})"
        )
    for name, value in (("sae_release", release), ("sae_id", sae_id), ("sae_path", path)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"{prefix}{name} must be a non-empty string, got {value!r}")


@dataclass(frozen=True)
class HarvestConfig:
    """What to harvest: model and hook, SAE, latents, corpus, and how many contexts per latent."""

    model: str
    """A Hugging Face model id (downloaded unless the hub is off), a local directory, or `minilm` (bundled)."""
    hook: str
    """A block index ("3": the residual stream after block 3), `blocks.3.hook_resid_post`,
    or a module path inside the model ("encoder.layer.3", "model.layers.20")."""
    latents: tuple[int, ...]
    corpus: tuple[str, ...]
    sae_release: str | None = None
    sae_id: str | None = None
    sae_path: str | None = None
    top_n: int = 4000
    window: int = 12
    """Tokens kept on each side of the focus token."""
    max_length: int = 128
    """Tokens per model input, special tokens included; longer documents are cut into chunks."""
    batch_size: int = 32
    text_field: str = "text"
    device: str = "auto"
    max_tokens: int | None = None
    """Stop after this many corpus tokens (in corpus order); None reads the whole corpus."""
    dedupe: bool = True
    """Keep each shown window (display tokens and focus position) once per latent, the copy
    with the highest activation; False keeps every copy (verbatim repeats of the corpus)."""
    quantiles: int = 5
    """Intervals of equal width over (0, max activation] to draw random examples from (0: none)."""
    per_quantile: int = 4
    """Random examples drawn from each interval (fewer where it holds fewer firings)."""
    negatives: int = 200
    """Windows kept where the latent is 0 on every token, for the explanation scorers (0: none)."""
    children: ChildrenConfig | None = None
    """`--also-sae`: also encode the kept contexts' focus tokens with SAE B (None: no second SAE)."""

    OPTIONAL_PARAMS: ClassVar[tuple[str, ...]] = ("children",)
    """Left out of the step's parameters while None: a harvest without `--also-sae` keeps its id."""

    def __post_init__(self) -> None:
        """Coerce the forgiving spellings, then raise ValueError naming the first bad field."""
        # Coerce the forgiving spellings (lists, a single string, an int hook) before checking.
        if isinstance(self.hook, int) and not isinstance(self.hook, bool):
            object.__setattr__(self, "hook", str(self.hook))
        if isinstance(self.corpus, str):
            object.__setattr__(self, "corpus", (self.corpus,))
        object.__setattr__(self, "corpus", tuple(self.corpus))
        object.__setattr__(self, "latents", tuple(self.latents))

        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(
                f"model must name a model (a Hugging Face id, a directory or {MINILM!r}), got {self.model!r}"
            )
        if not isinstance(self.hook, str) or not self.hook.strip():
            raise ValueError(f"hook must be a layer number or a module path, got {self.hook!r}")
        if not self.latents:
            raise ValueError("latents must name at least one latent index, got ()")
        for latent in self.latents:
            if not isinstance(latent, int | np.integer) or isinstance(latent, bool) or latent < 0:
                raise ValueError(f"latents must be non-negative integers, got {latent!r}")
        object.__setattr__(self, "latents", tuple(int(latent) for latent in self.latents))
        duplicates = sorted({latent for latent in self.latents if self.latents.count(latent) > 1})
        if duplicates:
            raise ValueError(f"latents must not repeat, got {duplicates[0]} more than once")
        if not self.corpus or not all(isinstance(source, str) and source for source in self.corpus):
            raise ValueError(f"corpus must name at least one file or python-stdlib-docstrings, got {self.corpus!r}")
        check_sae_source(self.sae_release, self.sae_id, self.sae_path)
        _positive("top_n", self.top_n)
        if not isinstance(self.window, int) or isinstance(self.window, bool) or self.window < 0:
            raise ValueError(f"window must be a non-negative integer, got {self.window!r}")
        _positive("max_length", self.max_length)
        if self.max_length < 4:
            raise ValueError(f"max_length must be at least 4 (room for special tokens), got {self.max_length!r}")
        _positive("batch_size", self.batch_size)
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ValueError(f"text_field must be a non-empty string, got {self.text_field!r}")
        if not isinstance(self.device, str) or not _DEVICE.match(self.device):
            raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        if self.max_tokens is not None:
            _positive("max_tokens", self.max_tokens)
        if not isinstance(self.dedupe, bool):
            raise ValueError(f"dedupe must be true or false, got {self.dedupe!r}")
        check_quantiles(self.quantiles, self.per_quantile)
        if not isinstance(self.negatives, int) or isinstance(self.negatives, bool) or self.negatives < 0:
            raise ValueError(f"negatives must be a non-negative integer (0: none), got {self.negatives!r}")
        if self.children is not None and not isinstance(self.children, ChildrenConfig):
            raise ValueError(f"children must be a ChildrenConfig or None, got {self.children!r}")

    @property
    def sae_description(self) -> str:
        """How the SAE is named in provenance: "release/sae_id" or the directory."""
        if self.sae_path is not None:
            return self.sae_path
        return f"{self.sae_release}/{self.sae_id}"


def check_quantiles(quantiles: Any, per_quantile: Any) -> None:
    """Raise ValueError unless `quantiles` is 0 (no examples) to MAX_QUANTILES and `per_quantile` a
    non-negative integer, at least 1 when examples are drawn."""
    if not isinstance(quantiles, int) or isinstance(quantiles, bool) or not 0 <= quantiles <= MAX_QUANTILES:
        raise ValueError(f"quantiles must be an integer from 0 (none) to {MAX_QUANTILES}, got {quantiles!r}")
    if not isinstance(per_quantile, int) or isinstance(per_quantile, bool) or per_quantile < 0:
        raise ValueError(f"per_quantile must be a non-negative integer, got {per_quantile!r}")
    if quantiles > 0 and per_quantile < 1:
        raise ValueError(f"per_quantile must be at least 1 when quantiles is {quantiles}, got {per_quantile!r}")


def _positive(name: str, value: Any) -> None:
    """Raise ValueError unless `value` is an int of at least 1 (bool is not an int here)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


Config = HarvestConfig
"""The step's config under the name every step exports."""
