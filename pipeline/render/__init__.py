"""Render step: region-based MultiDiffusion of a map, single renders of one node, and sketches.

The step in the order a render runs:

- `config`: `RenderConfig` (= `Config`) and the errors a render ends with;
- `load`: a Stable Diffusion checkpoint's `Components`, loaded offline;
- `regions`: the map's clusters or contexts as prompt regions on the latent canvas;
- `denoise`: the denoising loop (`multidiffusion`, and plain single renders);
- `jobs`: render jobs, their sidecars, `save_render`, and `run`, the step's entry point;
- `sketch`: a picture of the map drawn with Pillow, what renders show without a model;
- `worker`: `python -m pipeline.render.worker`, the long-lived process behind the TUI's
  render queue (not imported here: `-m` would then find it imported twice).

Images are filed in `<map>/renders/` under `vista_tui.mapdata.renders.render_key`, the one
cache key, whoever renders them. torch and diffusers load inside the functions that need
them, so importing this package costs numpy and the map reader only.
"""

from __future__ import annotations

from pipeline.render.config import (
    DTYPES,
    SCHEDULERS,
    SHAPING_FIELDS,
    Config,
    RenderCancelled,
    RenderConfig,
    RenderError,
    RenderTimeout,
)
from pipeline.render.denoise import (
    canvas_cells,
    decode,
    denoise_latents,
    encode_prompts,
    multidiffusion,
    render_node,
    window_starts,
)
from pipeline.render.jobs import (
    DISTRIBUTIONS,
    STEP,
    VERSION,
    RenderResult,
    job_config,
    key_options,
    render_job,
    run,
    save_render,
    sidecar_for,
)
from pipeline.render.load import (
    Components,
    components_from_pipeline,
    load_components,
    make_scheduler,
    resolve_dtype,
)
from pipeline.render.regions import (
    MAX_REGIONS,
    Per,
    Region,
    background_mask,
    clean_prompt,
    cluster_prompt,
    cut_prompt,
    place_discs,
    regions_for_map,
)

__all__ = [
    "DISTRIBUTIONS",
    "DTYPES",
    "MAX_REGIONS",
    "SCHEDULERS",
    "SHAPING_FIELDS",
    "STEP",
    "VERSION",
    "Components",
    "Config",
    "Per",
    "Region",
    "RenderCancelled",
    "RenderConfig",
    "RenderError",
    "RenderResult",
    "RenderTimeout",
    "background_mask",
    "canvas_cells",
    "clean_prompt",
    "cluster_prompt",
    "components_from_pipeline",
    "cut_prompt",
    "decode",
    "denoise_latents",
    "encode_prompts",
    "job_config",
    "key_options",
    "load_components",
    "make_scheduler",
    "multidiffusion",
    "place_discs",
    "regions_for_map",
    "render_job",
    "render_node",
    "resolve_dtype",
    "run",
    "save_render",
    "sidecar_for",
    "window_starts",
]
