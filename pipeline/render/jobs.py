"""Render jobs: what the render worker and `run` render, the sidecar, and the step's entry point.

`render_job` renders a `vista_tui.mapdata.renders.RenderJob` (what the render worker behind
the TUI and `vista render` runs); `run` renders through it too, and both file images in
`<map>/renders/` under `vista_tui.mapdata.renders.render_key`, the one cache key, so `run`
finds what the TUI rendered and the other way round. Where `run`'s config differs from the
worker's in what shapes the picture (`key_options`), the key says so.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from pipeline.render.config import SHAPING_FIELDS, RenderConfig
from pipeline.render.denoise import canvas_cells, multidiffusion
from pipeline.render.load import Components, load_components
from pipeline.render.regions import MAX_REGIONS, Per, Region, cluster_prompt, cut_prompt, regions_for_map
from vista_tui.mapdata import MapReader
from vista_tui.mapdata.renders import (
    DIFFUSION_VERSION,
    RenderJob,
    cached_render,
    render_key,
    renders_dir,
    write_render,
)

if TYPE_CHECKING:
    from PIL import Image

STEP = "render"
VERSION = DIFFUSION_VERSION
"""Bump `vista_tui.mapdata.renders.DIFFUSION_VERSION` whenever the same inputs would give a different image (it is part of every render key)."""
DISTRIBUTIONS = ("torch", "diffusers", "transformers")
"""Packages whose versions shape a render (for sidecars and step records)."""


@dataclass(frozen=True)
class RenderResult:
    """A saved render: where, under which key, how long it took (0 when it came from the cache)."""

    png: Path
    key: str
    seconds: float
    cached: bool
    sidecar: dict[str, Any] = field(default_factory=dict)


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
    `vista_tui.mapdata.renders.DIFFUSION_VERSION`.
    """
    cfg = job_config(components, job) if cfg is None else cfg
    reader = MapReader(job.map_dir)
    node = _node(reader, job.node_id)
    canvas = canvas_cells(components, cfg)
    if job.kind == "node":
        prompt = cut_prompt(cluster_prompt(node) or cfg.background_prompt, components.tokenizer)
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


def save_render(image: Image.Image, folder: Path, key: str, sidecar: dict[str, Any]) -> Path:
    """Save a render as PNG with its sidecar in a render folder (`vista_tui.mapdata.renders.write_render`)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_render(folder, key, buffer.getvalue(), sidecar)


def run(
    cfg: RenderConfig,
    map_dir: Path,
    *,
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
    png = save_render(image, renders_dir(job.map_dir), key, sidecar)
    return RenderResult(png=png, key=key, seconds=seconds, cached=False, sidecar=sidecar)
