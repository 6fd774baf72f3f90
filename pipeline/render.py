"""Render step: region-based MultiDiffusion of a map, and single renders of one node.

MultiDiffusion (Bar-Tal et al. 2023, "MultiDiffusion: Fusing Diffusion Paths for Controlled
Image Generation") written directly on a Stable-Diffusion checkpoint's components, not on
diffusers' deprecated single-prompt `StableDiffusionPanoramaPipeline`:

* One latent canvas of `height × width` pixels / the VAE factor.
* Windows of the UNet's native size slide over it with `stride` (the last row and column of
  windows is aligned to the canvas edge, so every cell is covered). A canvas smaller than a
  window in one dimension gets windows of the canvas' size in that dimension.
* Every region owns a mask on the canvas; the background prompt owns what is left
  (`1 - clip(Σ masks, 0, 1)`). At every denoising step, each (window, prompt) pair whose mask
  is non-zero inside the window is denoised with classifier-free guidance, all pairs batched
  into as few UNet calls as `RenderConfig.batch` allows, and the scheduler steps every pair's
  window view at once. The new canvas is the exact weighted average
  `x(p) = Σ_(w,r) m_r(p) · step_(w,r)(p) / Σ_(w,r) m_r(p)` over the pairs whose window covers
  cell p, with `m_r = weight_r × mask_r` (Eq. 5/7 of the paper).
* The unconditional (negative-prompt) prediction depends only on a pair's input, so pairs that
  share a window share one: a step costs `pairs + windows` UNet samples with CFG (the
  panorama pipeline: `2 × windows`), minus nothing for a single prompt, and bootstrapped pairs
  get their own unconditional sample.
* Bootstrapping (Sec. 4.2 of the paper): during the first `bootstrap_steps` steps each region's
  window view is composited over a random constant-colour latent (a plain colour through the
  VAE, noised to the current level), `m·x + (1 − m)·bg`, so that the region's subject forms
  inside its mask instead of bleeding into the background.

`render_node` is the same loop with one window and one full-canvas prompt: plain
single-view denoising with CFG, numerically the same as diffusers' `StableDiffusionPipeline`
(tested), and exactly the same as `multidiffusion` on a one-window canvas with one full region.

Geometry of `regions_for_map`: the node's layout box is fitted into the canvas (keeping its
aspect, with margins; y points up as in the TUI's minimap). Each child cluster (or each of the
`max_regions` most active member contexts) is a disc at its layout position with radius
`r_max · sqrt(activation / max activation)`. **Overlaps:** a cell belongs to the most active
disc that covers it (ties: the earlier region), so region masks are disjoint and hard; a region
left with no cell is dropped. Masks given to `multidiffusion` by hand may be soft and
overlapping: the fusion then blends them in proportion to `weight × mask`.

Seeded: the initial noise comes from a CPU generator seeded with `seed` (the same noise on any
device), the bootstrap colours from one seeded with `seed + 1`; the same seed, config and
components give the same image.

Jobs: `render_job` renders a `vista_tui.core.renders.RenderJob` (what the render worker behind the
TUI and `vista render` runs); `run` renders through it too, and both file images in
`<map>/renders/` under `vista_tui.core.renders.render_key`, the one cache key, so `run` finds what the
TUI rendered and the other way round. Where `run`'s config differs from the worker's in what
shapes the picture (`key_options`), the key says so.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.models import resolve_device
from vista_tui.core.renders import DIFFUSION_VERSION, RENDERS_DIR, RenderJob, cached_render, render_key
from vista_tui.mapdata import MapReader, atomic_write, atomic_write_json, utc_now

if TYPE_CHECKING:
    import torch
    from PIL import Image

VERSION = DIFFUSION_VERSION
"""Bump `vista_tui.core.renders.DIFFUSION_VERSION` whenever the same inputs would give a different image (it is part of every render key)."""
DISTRIBUTIONS = ("torch", "diffusers", "transformers")
"""Packages whose versions shape a render (for sidecars and step records)."""

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
Per = Literal["context", "cluster"]
_KEY_RE = re.compile(r"^(?:[a-z]+-)?[0-9a-f]{8,64}$")
MAX_REGIONS = 32
"""Regions of a panorama at most (its most active children or contexts)."""
SHAPING_FIELDS = ("window", "stride", "bootstrap_steps", "background_prompt", "negative_prompt", "scheduler")
"""RenderConfig fields beyond a RenderJob's that change the picture (device, dtype, time limit and batch do not)."""
_PROMPT_CHARS = 300
"""Without a tokenizer, context prompts are cut to this many characters (CLIP reads ~77 tokens)."""


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


@dataclass
class Components:
    """A loaded Stable Diffusion checkpoint: what a render needs, kept between renders by the worker."""

    unet: Any
    """Called as `unet(sample, t, encoder_hidden_states=..., return_dict=False)[0]` (a UNet2DConditionModel)."""
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    """The checkpoint's scheduler; every render configures a fresh one from its config."""
    vae_factor: int
    """Pixels per latent cell (8 for SD)."""
    latent_channels: int
    unet_factor: int
    """Latent sizes must be multiples of this (the UNet's total downsampling; 8 for SD)."""
    device: torch.device
    dtype: torch.dtype
    """The UNet's and text encoder's dtype; the canvas and the fusion stay in float32."""
    vae_dtype: torch.dtype
    model: str
    """The model as the caller named it (part of render keys)."""

    @property
    def scheduler_name(self) -> str:
        return type(self.scheduler).__name__


@dataclass(frozen=True)
class Region:
    """One prompt and where on the latent canvas it applies."""

    prompt: str
    mask: np.ndarray
    """(latent height, latent width) float in [0, 1]."""
    weight: float = 1.0
    """Multiplies the mask in the fusion (> 0)."""
    source: str = ""
    """What the region stands for: a node id or a context id (for sidecars and tests)."""

    def __post_init__(self) -> None:
        if self.mask.ndim != 2:
            raise ValueError(f"mask must be 2-D (latent height × width), got shape {self.mask.shape}")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ValueError(f"weight must be a finite number > 0, got {self.weight!r}")


@dataclass(frozen=True)
class RenderResult:
    """A saved render: where, under which key, how long it took (0 when it came from the cache)."""

    png: Path
    key: str
    seconds: float
    cached: bool
    sidecar: dict[str, Any] = field(default_factory=dict)


# -- loading -------------------------------------------------------------------------------


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """The torch dtype `dtype` names ("auto": float16 on cuda, float32 elsewhere)."""
    # torch is heavy: imported only where a render actually happens.
    import torch

    if not isinstance(dtype, str):
        return dtype
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    return getattr(torch, dtype)


def _checkpoint_dir(model: str) -> Path:
    """The local directory of `model`: itself if it is a directory, else its snapshot in the HF cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    looks_like_path = model.startswith(("/", ".", "~")) or model.count("/") > 1 or local.suffix != ""
    # huggingface_hub comes with diffusers; it only reads the local cache here (local_files_only).
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if looks_like_path:
        raise RenderError(
            f"model directory {str(local)!r} does not exist (downloads are off: give a local diffusers directory)"
        )
    try:
        return Path(snapshot_download(model, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError):
        pass
    raise RenderError(
        f"model {model!r} not found: no such directory, and not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}); downloads are off — pass a local diffusers directory, "
        f"or fetch it first where there is network (`hf download {model}`)"
    )


def _check_checkpoint(root: Path, model: str) -> None:
    index_path = root / "model_index.json"
    if not index_path.is_file():
        raise RenderError(f"{model!r} is not a diffusers Stable Diffusion checkpoint: no model_index.json in {root}")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RenderError(f"{model!r}: model_index.json in {root} is unreadable ({error})") from None
    if "text_encoder_2" in index or "transformer" in index:
        raise RenderError(
            f"{model!r} is a {index.get('_class_name', 'non-SD')} checkpoint; only Stable Diffusion 1.x/2.x-class "
            "checkpoints (one CLIP text encoder and a UNet, e.g. SD 1.5, SD 2.1, SD-Turbo) are supported"
        )
    missing = [part for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if part not in index]
    if missing:
        raise RenderError(
            f"{model!r} is not a diffusers Stable Diffusion checkpoint: model_index.json in {root} lacks {', '.join(missing)}"
        )


def _vae_force_upcast(root: Path) -> bool:
    """Whether the checkpoint's VAE asks to run in float32 (AutoencoderKL's default when unset)."""
    try:
        return bool(json.loads((root / "vae" / "config.json").read_text(encoding="utf-8")).get("force_upcast", True))
    except (OSError, ValueError, AttributeError):
        return True


def _dtype_kwarg() -> str:
    """`from_pretrained`'s name for the dtype: `dtype` in recent diffusers, `torch_dtype` (deprecated there) before."""
    # diffusers is heavy: only called from load_components.
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def load_components(model: str, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> Components:
    """Load a Stable Diffusion 1.x/2.x-class checkpoint (local directory or cached HF id), offline."""
    root = _checkpoint_dir(model)
    _check_checkpoint(root, model)
    # torch / diffusers are heavy (seconds, GBs): only the render step and its worker load them.
    import torch
    from diffusers import StableDiffusionPipeline

    torch_device = torch.device(resolve_device(device)) if isinstance(device, str) else device
    torch_dtype = resolve_dtype(dtype, torch_device)
    vae_dtype = torch_dtype
    if torch_dtype != torch.float32 and _vae_force_upcast(root):
        # SD VAEs overflow in float16 on some images (black or NaN renders); diffusers marks them force_upcast.
        vae_dtype = torch.float32
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            root,
            **{_dtype_kwarg(): {"default": torch_dtype, "vae": vae_dtype}},
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
            local_files_only=True,
        )
    except (OSError, ValueError, TypeError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RenderError(f"{model!r} could not be loaded as a Stable Diffusion checkpoint: {first_line}") from None
    return components_from_pipeline(pipe, model, torch_device, torch_dtype)


def components_from_pipeline(pipe: Any, model: str, device: torch.device, dtype: torch.dtype) -> Components:
    """The Components of an already built StableDiffusionPipeline (moved to `device`; its modules keep their dtypes)."""
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    for module in (unet, vae, text_encoder):
        module.to(device)
        module.eval()
        module.requires_grad_(False)
    return Components(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=pipe.scheduler,
        vae_factor=2 ** (len(vae.config.block_out_channels) - 1),
        latent_channels=int(unet.config.in_channels),
        unet_factor=2 ** (len(unet.config.block_out_channels) - 1),
        device=device,
        dtype=dtype,
        vae_dtype=vae.dtype,
        model=model,
    )


def make_scheduler(components: Components, name: str | None) -> Any:
    """A fresh scheduler for one render: the checkpoint's own class, or `name`, from the checkpoint's config."""
    # diffusers is heavy: imported only where a render actually happens.
    import diffusers

    cls = type(components.scheduler) if name is None else getattr(diffusers, name)
    return cls.from_config(components.scheduler.config)


# -- regions -------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def clean_prompt(text: str) -> str:
    """Text as a prompt: no control or bidi characters, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    return " ".join(text.split())


def cut_prompt(text: str, tokenizer: Any | None = None) -> str:
    """`text` cleaned and cut to what the tokenizer reads (its model_max_length minus BOS/EOS)."""
    text = clean_prompt(text)
    if tokenizer is None:
        return text[:_PROMPT_CHARS].strip()
    limit = int(getattr(tokenizer, "model_max_length", 77)) - 2
    ids = tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
    if len(ids) <= limit:
        return text
    return clean_prompt(tokenizer.decode(ids[:limit], skip_special_tokens=True))


def _cluster_prompt(node: Any) -> str:
    labels = node.labels
    return clean_prompt(labels.visual_prompt or ", ".join(labels.keywords[:6]) or labels.llm_label)


def place_discs(
    centres: np.ndarray,
    activations: np.ndarray,
    box: tuple[float, float, float, float],
    canvas: tuple[int, int],
    margin: float = 0.08,
    coverage: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Discs on the canvas for layout points: (row, col) centres, radii in cells, and the owner of every cell.

    `box` (x_min, y_min, x_max, y_max) is fitted into the canvas minus `margin` on each side,
    keeping its aspect (y up). Radii are `r_max · sqrt(a / max a)` (at least one cell), with
    `r_max` such that equal discs would cover `coverage` of the canvas. A cell is owned by the
    most active disc that covers it (ties: lower index), -1 where no disc is.
    """
    h, w = canvas
    n = len(centres)
    x_min, y_min, x_max, y_max = box
    inner_h, inner_w = h * (1 - 2 * margin), w * (1 - 2 * margin)
    span_x, span_y = max(x_max - x_min, 0.0), max(y_max - y_min, 0.0)
    scale = min(inner_w / span_x if span_x > 0 else math.inf, inner_h / span_y if span_y > 0 else math.inf)
    scale = 0.0 if math.isinf(scale) else scale  # all points at one spot: they sit at the centre
    # Centre the scaled box on the canvas; positions are cell centres, hence the -0.5.
    cols = (w - span_x * scale) / 2 + (centres[:, 0] - x_min) * scale - 0.5
    rows = (h - span_y * scale) / 2 + (y_max - centres[:, 1]) * scale - 0.5
    a = np.clip(np.nan_to_num(np.asarray(activations, dtype=np.float64), nan=0.0), 0.0, None)
    top = float(a.max()) if n else 0.0
    r_max = min(math.sqrt(coverage * h * w / (max(n, 1) * math.pi)), 0.5 * min(h, w))
    radii = np.maximum(r_max * np.sqrt(a / top) if top > 0 else np.full(n, r_max), 1.0)
    owner = np.full((h, w), -1, dtype=np.int64)
    grid_r, grid_c = np.mgrid[0:h, 0:w]
    for i in np.argsort(-a, kind="stable"):
        inside = (grid_r - rows[i]) ** 2 + (grid_c - cols[i]) ** 2 <= radii[i] ** 2
        owner[inside & (owner < 0)] = i
    return np.column_stack([rows, cols]), radii, owner


def regions_for_map(
    reader: MapReader,
    node_id: str | None,
    canvas: tuple[int, int],
    per: Per = "cluster",
    max_regions: int = MAX_REGIONS,
    tokenizer: Any | None = None,
    margin: float = 0.08,
    coverage: float = 0.5,
) -> list[Region]:
    """The regions of a map node on a latent canvas (h, w): one per child cluster, or per most active context.

    `node_id` None is the root. per="cluster": the node's children (noise children and children
    without any prompt are left to the background) at their centroids, sized by their mean
    activation, prompted by their visual prompt (else keywords). per="context": the node's
    `max_regions` most active members at their layout positions, sized by their activation,
    prompted by their text cut to the tokenizer's limit. A cluster with no children falls back
    to per="context". See the module doc for the geometry and how overlaps are resolved.
    """
    if per not in ("context", "cluster"):
        raise ValueError(f"per must be 'context' or 'cluster', got {per!r}")
    if len(canvas) != 2 or min(canvas) < 1:
        raise ValueError(f"canvas must be (height, width) in latent cells >= 1, got {canvas!r}")
    if max_regions < 1:
        raise ValueError(f"max_regions must be >= 1, got {max_regions!r}")
    node = reader.root if node_id is None else reader.node(node_id)
    sources: list[str] = []
    prompts: list[str] = []
    centres: list[tuple[float, float]] = []
    activations: list[float] = []
    children = [c for c in reader.children(node.node_id) if c.kind != "noise"] if per == "cluster" else []
    if children:
        for child in children:
            prompt = _cluster_prompt(child)
            if prompt and all(math.isfinite(v) for v in child.centroid):
                sources.append(child.node_id)
                prompts.append(cut_prompt(prompt, tokenizer))
                centres.append(child.centroid)
                activations.append(child.mean_activation)
        order = np.argsort(-np.asarray(activations), kind="stable")[:max_regions]
    else:
        members = np.asarray(node.members, dtype=np.int64)
        member_activation = reader.activations[members]
        finite = np.isfinite(reader.layout[members]).all(axis=1)
        members, member_activation = members[finite], member_activation[finite]
        top = members[np.argsort(-member_activation, kind="stable")[:max_regions]]
        for context in reader.contexts(top):
            sources.append(context.context_id)
            prompts.append(cut_prompt(context.text, tokenizer))
        centres = [tuple(p) for p in reader.layout[top].tolist()]
        activations = reader.activations[top].tolist()
        order = np.arange(len(top))
    if not len(order):
        return []
    centres_arr = np.asarray(centres, dtype=np.float64)[order]
    activations_arr = np.asarray(activations, dtype=np.float64)[order]
    box = node.bbox if all(math.isfinite(v) for v in node.bbox) else _bbox(centres_arr)
    _, _, owner = place_discs(centres_arr, activations_arr, box, canvas, margin=margin, coverage=coverage)
    regions = []
    for k, i in enumerate(order):
        mask = (owner == k).astype(np.float32)
        if mask.any():
            regions.append(Region(prompt=prompts[i], mask=mask, source=sources[i]))
    return regions


def _bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    low, high = points.min(axis=0), points.max(axis=0)
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def background_mask(regions: Sequence[Region], canvas: tuple[int, int]) -> np.ndarray:
    """What the background prompt owns: `1 - clip(Σ region masks, 0, 1)`, (h, w) float32."""
    total = np.zeros(canvas, dtype=np.float32)
    for region in regions:
        if region.mask.shape != tuple(canvas):
            raise ValueError(f"region mask has shape {region.mask.shape}, the canvas is {tuple(canvas)}")
        total += np.clip(region.mask.astype(np.float32), 0.0, 1.0)
    return 1.0 - np.clip(total, 0.0, 1.0)


# -- denoising -----------------------------------------------------------------------------


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of `window` cells every `stride` cells, the last one flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@dataclass
class _Plan:
    """Which (window, prompt) pairs a render denoises, and their fusion weights (latent cells)."""

    height: int
    width: int
    view_h: int
    view_w: int
    views: list[tuple[int, int]]
    """(top, left) of every window."""
    prompts: list[str]
    """Index 0 is the background prompt (when it owns any cell)."""
    item_view: list[int]
    item_prompt: list[int]
    item_mask: np.ndarray
    """(n_items, view_h, view_w): each pair's mask inside its window (for bootstrapping)."""
    item_weight: np.ndarray
    """(n_items, view_h, view_w): weight × mask inside its window (for the fusion)."""
    item_foreground: np.ndarray
    """(n_items,) bool: pairs of a region (bootstrapped), not of the background."""


def _latent_size(components: Components, pixels: int, name: str) -> int:
    unit = components.vae_factor * components.unet_factor
    if pixels % unit:
        raise RenderError(
            f"{name} must be a multiple of {unit} pixels for {components.model} "
            f"(VAE factor {components.vae_factor} × UNet factor {components.unet_factor}), got {pixels}"
        )
    return pixels // components.vae_factor


def canvas_cells(components: Components, cfg: RenderConfig) -> tuple[int, int]:
    """The latent canvas (height, width) of `cfg` for these components."""
    return _latent_size(components, cfg.height, "height"), _latent_size(components, cfg.width, "width")


def _plan(components: Components, cfg: RenderConfig, regions: Sequence[Region], canvas: tuple[int, int]) -> _Plan:
    height, width = canvas
    window = _latent_size(components, cfg.window, "window")
    if cfg.stride % components.vae_factor:
        raise RenderError(f"stride must be a multiple of {components.vae_factor} pixels, got {cfg.stride}")
    stride = cfg.stride // components.vae_factor
    view_h, view_w = min(window, height), min(window, width)
    views = [
        (top, left) for top in window_starts(height, view_h, stride) for left in window_starts(width, view_w, stride)
    ]
    background = background_mask(regions, canvas)
    layers: list[tuple[str, np.ndarray, float, bool]] = []
    if background.any():
        layers.append((clean_prompt(cfg.background_prompt), background, 1.0, False))
    layers += [(r.prompt, np.clip(r.mask.astype(np.float32), 0.0, 1.0), r.weight, True) for r in regions]
    item_view: list[int] = []
    item_prompt: list[int] = []
    masks: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    foreground: list[bool] = []
    for v, (top, left) in enumerate(views):
        for p, (_, mask, weight, is_region) in enumerate(layers):
            crop = mask[top : top + view_h, left : left + view_w]
            if not crop.any():
                continue
            item_view.append(v)
            item_prompt.append(p)
            masks.append(crop)
            weights.append(crop * np.float32(weight))
            # Bootstrapping composites over the plain colour where the mask is < 1: a full mask is a no-op.
            foreground.append(is_region and not bool((crop >= 1).all()))
    prompts = [layer[0] for layer in layers]
    return _Plan(
        height=height,
        width=width,
        view_h=view_h,
        view_w=view_w,
        views=views,
        prompts=prompts,
        item_view=item_view,
        item_prompt=item_prompt,
        item_mask=np.stack(masks).astype(np.float32),
        item_weight=np.stack(weights).astype(np.float32),
        item_foreground=np.asarray(foreground, dtype=bool),
    )


def encode_prompts(components: Components, prompts: Sequence[str]) -> torch.Tensor:
    """CLIP embeddings of `prompts` (n, tokens, dim), as diffusers' StableDiffusionPipeline makes them."""
    # torch is heavy: imported only where a render actually happens.
    import torch

    tokens = components.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=components.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    attention_mask = None
    if getattr(components.text_encoder.config, "use_attention_mask", False):
        attention_mask = tokens.attention_mask.to(components.device)
    with torch.inference_mode():
        embeds = components.text_encoder(tokens.input_ids.to(components.device), attention_mask=attention_mask)[0]
    return embeds.to(dtype=components.dtype)


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def _bootstrap_latents(components: Components, n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` random plain colours through the VAE encoder: (n, C, 1, 1) latents."""
    # torch is heavy: imported only where a render actually happens.
    import torch

    side = 16 * components.vae_factor
    colours = torch.rand((n, 3, 1, 1), generator=generator) * 2 - 1
    images = colours.expand(n, 3, side, side).to(components.device, dtype=components.vae_dtype)
    with torch.inference_mode():
        latents = components.vae.encode(images).latent_dist.mean * components.vae.config.scaling_factor
    # The centre of the encoded plain image: its border carries the encoder's padding.
    return latents[:, :, 4:12, 4:12].float().mean(dim=(2, 3), keepdim=True)


def _denoise(
    components: Components,
    plan: _Plan,
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None,
    cancelled: Callable[[], bool] | None,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """The MultiDiffusion loop over `plan`; returns the final canvas latents (1, C, H, W) float32."""
    # torch / diffusers are heavy: imported only where a render actually happens.
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    started = time.perf_counter()
    device = components.device
    scheduler = make_scheduler(components, cfg.scheduler)
    generator = torch.Generator("cpu").manual_seed(cfg.seed)
    shape = (1, components.latent_channels, plan.height, plan.width)
    if latents is None:
        # The SD pipeline's noise, from a CPU generator: the same seed gives the same image on any device.
        latents = randn_tensor(shape, generator=generator, device=device, dtype=components.dtype)
    elif tuple(latents.shape) != shape:
        raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
    scheduler.set_timesteps(cfg.steps, device=device)
    timesteps = scheduler.timesteps
    total = len(timesteps)
    canvas = latents.to(device, dtype=torch.float32) * scheduler.init_noise_sigma

    use_cfg = cfg.guidance > 1.0
    embeds = encode_prompts(components, plan.prompts)
    uncond = encode_prompts(components, [clean_prompt(cfg.negative_prompt)]) if use_cfg else None
    n_items = len(plan.item_view)
    item_prompt = torch.as_tensor(plan.item_prompt, device=device)
    item_view = torch.as_tensor(plan.item_view, device=device)
    item_embeds = embeds[item_prompt]
    weights = torch.from_numpy(plan.item_weight).to(device)[:, None]
    masks = torch.from_numpy(plan.item_mask).to(device)[:, None]
    count = torch.zeros((1, 1, plan.height, plan.width), device=device)
    for k, v in enumerate(plan.item_view):
        top, left = plan.views[v]
        count[:, :, top : top + plan.view_h, left : left + plan.view_w] += weights[k]
    covered = count > 0

    bootstrap = cfg.bootstrap_steps > 0 and bool(plan.item_foreground.any())
    if bootstrap:
        boot_generator = torch.Generator("cpu").manual_seed(cfg.seed + 1)
        colours = _bootstrap_latents(components, max(cfg.bootstrap_steps, 1), boot_generator)
        boot_noise = torch.randn(shape, generator=boot_generator).to(device)
        foreground = torch.from_numpy(plan.item_foreground).to(device)[:, None, None, None]
    step_kwargs = _step_kwargs(scheduler, generator)
    # The unconditional prediction depends only on the input: pairs that share a window share it,
    # except for bootstrapped pairs (composited inputs), which get their own.
    plain_uncond = _UncondPlan.build(plan.item_view, np.zeros(n_items, dtype=bool), device)
    boot_uncond = _UncondPlan.build(plan.item_view, plan.item_foreground, device)

    def crop_views(tensor: torch.Tensor) -> torch.Tensor:
        """Every window of a canvas-shaped tensor, (n_views, C, view_h, view_w)."""
        return torch.cat([tensor[:, :, top : top + plan.view_h, left : left + plan.view_w] for top, left in plan.views])

    for i, t in enumerate(timesteps):
        if cancelled is not None and cancelled():
            raise RenderCancelled(f"render cancelled at step {i} of {total}")
        if cfg.time_limit_s is not None and time.perf_counter() - started > cfg.time_limit_s:
            raise RenderTimeout(f"render ran past its time limit of {cfg.time_limit_s:g} s (at step {i} of {total})")
        with torch.inference_mode():
            window_views = crop_views(canvas)
            views = window_views[item_view]
            boot_step = bootstrap and i < cfg.bootstrap_steps
            if boot_step:
                pick = torch.randint(0, len(colours), (n_items,), generator=boot_generator).to(device)
                plain = colours[pick].expand(-1, -1, plan.view_h, plan.view_w)
                plain = scheduler.add_noise(plain, crop_views(boot_noise)[item_view], t.reshape(1))
                views = torch.where(foreground, masks * views + (1 - masks) * plain, views)
            model_in = scheduler.scale_model_input(views, t)
            if use_cfg:
                assert uncond is not None
                share = boot_uncond if boot_step else plain_uncond
                uncond_in = torch.cat(
                    [scheduler.scale_model_input(window_views, t)[share.views], model_in[share.items]]
                )
                model_in = torch.cat([uncond_in, model_in])
                context = torch.cat([uncond.expand(len(uncond_in), -1, -1), item_embeds])
            else:
                context = item_embeds
            pred = _predict(components, model_in, t, context, 2 * cfg.batch if use_cfg else cfg.batch)
            if use_cfg:
                pred_uncond, pred_cond = pred[: len(uncond_in)][share.index], pred[len(uncond_in) :]
                noise = pred_uncond + cfg.guidance * (pred_cond - pred_uncond)
            else:
                noise = pred
            stepped = scheduler.step(noise, t, views, **step_kwargs, return_dict=False)[0].float()
            # MultiDiffusion's fusion: the weighted average of every pair's result over the cells it covers.
            per_view = torch.zeros_like(window_views).index_add_(0, item_view, stepped * weights)
            value = torch.zeros_like(canvas)
            for v, (top, left) in enumerate(plan.views):
                value[:, :, top : top + plan.view_h, left : left + plan.view_w] += per_view[v]
            canvas = torch.where(covered, value / count, canvas)
        if progress is not None:
            progress(i + 1, total)
    return canvas


@dataclass(frozen=True)
class _UncondPlan:
    """Which inputs the unconditional UNet pass sees, and where each pair finds its prediction."""

    views: torch.Tensor
    """Windows whose plain view serves as the unconditional input of their non-composited pairs."""
    items: torch.Tensor
    """Composited pairs, each its own unconditional input (after the windows)."""
    index: torch.Tensor
    """For every pair, the row of its unconditional prediction."""

    @staticmethod
    def build(item_view: list[int], composited: np.ndarray, device: torch.device) -> _UncondPlan:
        # torch is heavy: imported only where a render actually happens.
        import torch

        shared = sorted({v for v, c in zip(item_view, composited, strict=True) if not c})
        own = [k for k, c in enumerate(composited) if c]
        row_of_view = {v: r for r, v in enumerate(shared)}
        row_of_item = {k: len(shared) + r for r, k in enumerate(own)}
        index = [
            row_of_item[k] if c else row_of_view[v] for k, (v, c) in enumerate(zip(item_view, composited, strict=True))
        ]
        as_tensor = lambda values: torch.as_tensor(values, dtype=torch.long, device=device)  # noqa: E731
        return _UncondPlan(views=as_tensor(shared), items=as_tensor(own), index=as_tensor(index))


def _predict(
    components: Components, model_in: torch.Tensor, t: torch.Tensor, context: torch.Tensor, batch: int
) -> torch.Tensor:
    """The UNet's prediction for every input, in calls of at most `batch` samples, as float32."""
    # torch is heavy: imported only where a render actually happens.
    import torch

    model_in = model_in.to(components.dtype)
    outputs = [
        components.unet(
            model_in[start : start + batch], t, encoder_hidden_states=context[start : start + batch], return_dict=False
        )[0]
        for start in range(0, len(model_in), batch)
    ]
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)).float()


def decode(components: Components, latents: torch.Tensor, tiled: bool | None = None) -> Image.Image:
    """The image of canvas latents, through the VAE (tiled when the canvas is over 4 windows of the VAE's size)."""
    # torch / PIL: imported only where a render actually happens.
    import torch
    from PIL import Image

    vae = components.vae
    z = latents.to(components.device, dtype=components.vae_dtype) / vae.config.scaling_factor
    shift = vae.config.get("shift_factor", None)
    if shift is not None:
        z = z + shift
    tile = int(vae.config.sample_size) // components.vae_factor if vae.config.get("sample_size") else 64
    if tiled is None:
        tiled = z.shape[-1] * z.shape[-2] > 4 * tile * tile
    previous = getattr(vae, "use_tiling", False)
    vae.use_tiling = bool(tiled)
    try:
        with torch.inference_mode():
            image = vae.decode(z, return_dict=False)[0]
    finally:
        vae.use_tiling = previous
    array = (image / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 0).float().cpu().numpy()
    return Image.fromarray((array * 255).round().astype("uint8"))


def multidiffusion(
    components: Components,
    regions: Sequence[Region],
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> Image.Image:
    """Region-based MultiDiffusion of a `cfg.width × cfg.height` canvas; see the module doc."""
    latents = denoise_latents(components, regions, cfg, progress=progress, cancelled=cancelled)
    if cancelled is not None and cancelled():
        raise RenderCancelled("render cancelled before decoding")
    return decode(components, latents)


def denoise_latents(
    components: Components,
    regions: Sequence[Region],
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """`multidiffusion` up to the final canvas latents (1, C, H, W) float32, not decoded.

    `latents` replaces the seeded initial noise (before scaling by the scheduler's init sigma).
    """
    canvas = canvas_cells(components, cfg)
    plan = _plan(components, cfg, regions, canvas)
    return _denoise(components, plan, cfg, progress, cancelled, latents)


def render_node(
    components: Components,
    prompt: str,
    cfg: RenderConfig,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    latents: torch.Tensor | None = None,
) -> Image.Image:
    """One `cfg.window`-square image of `prompt`: plain single-view denoising with CFG, on the MultiDiffusion loop."""
    side = _latent_size(components, cfg.window, "window")
    plan = _plan(
        components, cfg, [Region(prompt=clean_prompt(prompt), mask=np.ones((side, side), np.float32))], (side, side)
    )
    final = _denoise(components, plan, cfg, progress, cancelled, latents)
    if cancelled is not None and cancelled():
        raise RenderCancelled("render cancelled before decoding")
    return decode(components, final)


# -- jobs and the cache ----------------------------------------------------------------------


def job_config(components: Components, job: RenderJob) -> RenderConfig:
    """The config the render worker renders `job` with: windows of the UNet's native size, half-overlapping."""
    assert job.model is not None and job.width is not None and job.height is not None
    native = int(components.unet.config.sample_size) * components.vae_factor
    factor = components.vae_factor
    return RenderConfig(
        model=job.model,
        steps=job.steps,
        guidance=job.guidance,
        seed=job.seed,
        width=job.width,
        height=job.height,
        window=native,
        stride=max(factor, native // 2 // factor * factor),
    )


def key_options(
    cfg: RenderConfig, components: Components, job: RenderJob, per: Per = "cluster", max_regions: int = MAX_REGIONS
) -> dict[str, Any]:
    """What sets a render of `job` by `cfg` apart from the worker's: the `options` of its render key.

    Empty when `cfg` shapes the picture as the worker would, so both file it under one key.
    """
    usual = job_config(components, job)
    options = {name: getattr(cfg, name) for name in SHAPING_FIELDS if getattr(cfg, name) != getattr(usual, name)}
    if job.kind == "panorama":
        if per != "cluster":
            options["per"] = per
        if max_regions != MAX_REGIONS:
            options["max_regions"] = max_regions
    return options


def _node(reader: MapReader, node_id: str | None) -> Any:
    if node_id is None:
        return reader.root
    try:
        return reader.node(node_id)
    except KeyError:
        raise ValueError(f"map {reader.path.name} has no node {node_id!r}") from None


def render_job(
    components: Components,
    job: RenderJob,
    cfg: RenderConfig | None = None,
    per: Per = "cluster",
    max_regions: int = MAX_REGIONS,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[Image.Image, dict[str, Any]]:
    """One render job on MultiDiffusion: the image and its sidecar.

    kind "node": the node's visual prompt over the whole canvas (one window when the canvas is
    the window's size: a plain single render; a MultiDiffusion panorama of that one prompt when
    larger). kind "panorama": the node's (default: the root's) child clusters, or with
    per="context" its most active contexts, as regions at their layout positions. `cfg` is
    `job_config(components, job)` when None (the worker's); one given must have the job's
    sampling and size. What is fixed here shapes the image: change it, bump
    `vista_tui.core.renders.DIFFUSION_VERSION`.
    """
    cfg = job_config(components, job) if cfg is None else cfg
    reader = MapReader(job.map_dir)
    node = _node(reader, job.node_id)
    canvas = canvas_cells(components, cfg)
    if job.kind == "node":
        prompt = cut_prompt(_cluster_prompt(node) or cfg.background_prompt, components.tokenizer)
        regions = [Region(prompt=prompt, mask=np.ones(canvas, np.float32), source=node.node_id)]
    else:
        regions = regions_for_map(
            reader, node.node_id, canvas, per, max_regions=max_regions, tokenizer=components.tokenizer
        )
    started = time.perf_counter()
    image = multidiffusion(components, regions, cfg, progress=progress, cancelled=cancelled)
    sidecar = sidecar_for(
        cfg,
        [region.prompt for region in regions],
        time.perf_counter() - started,
        components.scheduler_name if cfg.scheduler is None else cfg.scheduler,
        render=job.kind,
        map_id=reader.manifest.map_id,
        node=job.node_id,
        regions=[region.source for region in regions],
        width=cfg.width,
        height=cfg.height,
        device=str(components.device),
        dtype=str(components.dtype).removeprefix("torch."),
    )
    return image, sidecar


def sidecar_for(
    cfg: RenderConfig,
    prompts: Sequence[str],
    seconds: float,
    scheduler: str,
    kind: str = "diffusion",
    size: tuple[int, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The sidecar of a render: what made it (JSON-able)."""
    width, height = size if size is not None else (cfg.width, cfg.height)
    return {
        "kind": kind,
        "prompts": list(prompts),
        "prompt": prompts[0] if len(prompts) == 1 else None,
        "negative_prompt": cfg.negative_prompt,
        "background_prompt": cfg.background_prompt,
        "model": cfg.model,
        "seed": cfg.seed,
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "size": [width, height],
        "window": cfg.window,
        "stride": cfg.stride,
        "bootstrap_steps": cfg.bootstrap_steps,
        "scheduler": scheduler,
        "seconds": round(seconds, 3),
        "version": VERSION,
        **extra,
    }


def save_render(image: Image.Image, renders_dir: Path, key: str, sidecar: dict[str, Any]) -> Path:
    """Write `<key>.png`, then `<key>.json` (atomically each); the sidecar's presence marks a complete render."""
    if not _KEY_RE.match(key):
        raise ValueError(f"key must be 8-64 lowercase hex characters after an optional `name-`, got {key!r}")
    renders_dir = Path(renders_dir)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    png = renders_dir / f"{key}.png"
    atomic_write(png, lambda handle: handle.write(data))
    atomic_write_json(renders_dir / f"{key}.json", {"key": key, "created": utc_now(), **sidecar})
    return png


def run(
    cfg: RenderConfig,
    map_dir: Path,
    node_id: str | None = None,
    per: Per | Literal["node"] = "cluster",
    components: Components | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_regions: int = MAX_REGIONS,
) -> RenderResult:
    """Render one node of a map into `<map_dir>/renders/` (or find it there) and return where it is.

    per="cluster"/"context": a MultiDiffusion panorama of the node's children or contexts;
    per="node": a single `window`-square render of the node's visual prompt. It is the render
    job the TUI would queue for the same node, size, model and sampling, under the same key
    (plus `key_options`): an image either rendered is found by the other.
    `components` (kept loaded by a worker) is loaded from `cfg.model` when None.
    """
    if per not in ("cluster", "context", "node"):
        raise ValueError(f"per must be 'cluster', 'context' or 'node', got {per!r}")
    width, height = (cfg.window, cfg.window) if per == "node" else (cfg.width, cfg.height)
    job = RenderJob(
        Path(map_dir),
        node_id,
        kind="node" if per == "node" else "panorama",
        model=cfg.model,
        seed=cfg.seed,
        steps=cfg.steps,
        width=width,
        height=height,
        guidance=cfg.guidance,
    )
    cfg = replace(cfg, width=width, height=height)
    regions_per: Per = "context" if per == "context" else "cluster"
    if components is None:
        components = load_components(cfg.model, cfg.device, cfg.dtype)
    key = render_key(job, key_options(cfg, components, job, regions_per, max_regions))
    existing = cached_render(job, key)
    if existing is not None:
        return RenderResult(png=existing, key=key, seconds=0.0, cached=True)
    started = time.perf_counter()
    image, sidecar = render_job(components, job, cfg, regions_per, max_regions, progress=progress, cancelled=cancelled)
    seconds = time.perf_counter() - started
    sidecar["per"] = per
    png = save_render(image, job.map_dir / RENDERS_DIR, key, sidecar)
    return RenderResult(png=png, key=key, seconds=seconds, cached=False, sidecar=sidecar)
