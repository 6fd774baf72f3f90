"""The render step's configuration and the errors a render ends with.

`RenderConfig` validates in `__post_init__` without I/O: whether the model exists and whether
the sizes fit it is known only once it is loaded (`RenderError` then).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULERS = (
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "LMSDiscreteScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "UniPCMultistepScheduler",
)
"""Scheduler classes `RenderConfig.scheduler` may name (None keeps the checkpoint's own)."""
DTYPES = ("auto", "float32", "float16", "bfloat16")
SHAPING_FIELDS = ("window", "stride", "bootstrap_steps", "background_prompt", "negative_prompt", "scheduler")
"""RenderConfig fields beyond a RenderJob's that change the picture (device, dtype, time limit and batch do not)."""


class RenderError(ValueError):
    """A render cannot start: the model is missing or not a Stable Diffusion checkpoint, or the size does not fit it."""


class RenderCancelled(Exception):
    """The caller's `cancelled()` returned True: the render stopped between two steps."""


class RenderTimeout(Exception):
    """The render ran past `RenderConfig.time_limit_s` and stopped between two steps."""


@dataclass(frozen=True)
class RenderConfig:
    """Parameters of a render. Sizes are in pixels; they become latent cells through the VAE factor."""

    model: str
    """A local diffusers directory, or a Hugging Face id already in the local cache."""
    steps: int = 20
    guidance: float = 7.5
    """Classifier-free guidance scale; <= 1 turns CFG off (one UNet pass per view, as for SD-Turbo)."""
    seed: int = 0
    width: int = 1024
    height: int = 512
    """Canvas size in pixels: multiples of 8 here, of VAE factor × UNet factor (64 for SD) at render time."""
    window: int = 512
    """Side of a MultiDiffusion window in pixels: the UNet's native size; also the size of node renders."""
    stride: int = 256
    """Step between windows in pixels (<= window; smaller = more overlap, more UNet calls)."""
    bootstrap_steps: int = 4
    """Steps during which region views are composited over a random constant-colour background."""
    background_prompt: str = "a plain, softly lit background"
    negative_prompt: str = ""
    scheduler: str | None = None
    """A class from SCHEDULERS, configured from the checkpoint's scheduler config; None: the checkpoint's."""
    device: str = "auto"
    """"auto" (cuda, then mps, then cpu), or a torch device string."""
    dtype: str = "auto"
    """"auto" (float16 on cuda, float32 elsewhere), "float32", "float16" or "bfloat16"."""
    time_limit_s: float | None = None
    """Stop with RenderTimeout when a render takes longer (checked between steps)."""
    batch: int = 16
    """Most (window, prompt) pairs per UNet call (twice as many samples with CFG); bounds GPU memory."""

    def __post_init__(self) -> None:
        if not self.model or not self.model.strip():
            raise ValueError(f"model must name a checkpoint, got {self.model!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps!r}")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        for name in ("width", "height", "window", "stride"):
            value = getattr(self, name)
            if value < 8 or value % 8:
                raise ValueError(f"{name} must be a positive multiple of 8 pixels, got {value!r}")
        if self.stride > self.window:
            raise ValueError(f"stride must be <= window ({self.window}), got {self.stride!r}")
        if self.bootstrap_steps < 0:
            raise ValueError(f"bootstrap_steps must be >= 0, got {self.bootstrap_steps!r}")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be None or one of {', '.join(SCHEDULERS)}; got {self.scheduler!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {self.dtype!r}")
        if not self.device:
            raise ValueError(f"device must be 'auto' or a torch device, got {self.device!r}")
        if self.time_limit_s is not None and not (math.isfinite(self.time_limit_s) and self.time_limit_s > 0):
            raise ValueError(f"time_limit_s must be None or a number > 0, got {self.time_limit_s!r}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch!r}")


Config = RenderConfig
"""The step's config under the name every step exports."""
