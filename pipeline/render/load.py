"""Loading a Stable Diffusion checkpoint's components for the render step, offline.

Only Stable Diffusion 1.x/2.x-class checkpoints (one CLIP text encoder and a UNet) in the
diffusers layout: a local directory, or a Hugging Face id already in the local cache (downloads
stay off). `Components` is what a render needs; the render worker keeps them between jobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.models import ModelError, resolve_device
from pipeline.render.config import DTYPES, RenderError

if TYPE_CHECKING:
    import torch


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
        """The checkpoint's scheduler class (what a render with `scheduler=None` uses)."""
        return type(self.scheduler).__name__


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
    """Raise RenderError unless `root` holds a diffusers SD 1.x/2.x-class checkpoint (read before loading any weights)."""
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

    if isinstance(device, str):
        try:
            torch_device = torch.device(resolve_device(device))
        except ModelError as error:
            raise RenderError(str(error)) from None
    else:
        torch_device = device
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
