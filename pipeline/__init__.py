"""The precompute steps: harvest, layout, cluster, keywords, fidelity.

The only package that imports torch, sae-lens, umap, hdbscan and transformers; each step
module imports them inside its functions so that `--help` and config checks stay fast.
"""
