"""The precompute steps: harvest, layout, cluster, keywords, fidelity; label, agreement, render.

Each step is one module or package of the same shape (STEP, VERSION, DISTRIBUTIONS, a frozen
Config, `run(cfg, inputs, *, progress)`); `build` chains them, `models` loads models and SAEs,
`demo` builds the offline demo and `cli` is `python -m pipeline`. The only package that imports
torch, sae-lens, umap, hdbscan, transformers and diffusers; each step imports them inside its
functions so that `--help` and config checks stay fast. See ARCHITECTURE.md.
"""
