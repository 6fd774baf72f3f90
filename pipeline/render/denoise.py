"""Region-based MultiDiffusion on a Stable Diffusion checkpoint, and single renders of one prompt.

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

Seeded: the initial noise comes from a CPU generator seeded with `seed` (the same noise on any
device), the bootstrap colours from one seeded with `seed + 1`; the same seed, config and
components give the same image.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.render.config import RenderCancelled, RenderConfig, RenderError, RenderTimeout
from pipeline.render.load import Components, make_scheduler
from pipeline.render.regions import Region, background_mask, clean_prompt

if TYPE_CHECKING:
    import torch
    from PIL import Image


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
