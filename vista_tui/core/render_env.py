"""Which diffusion model renders: the one setting the TUI and `vista render` read before anything
renders, apart from the render queue so that reading it imports nothing (the queue, its protocol
and the render keys load with the first render)."""

ENV_MODEL = "VISTA_DIFFUSION_MODEL"
"""The diffusion model to render with (a diffusers directory or a Hugging Face id); unset → sketches."""
