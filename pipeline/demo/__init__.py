"""The offline demo: a TopK SAE trained (once) on MiniLM over stdlib docstrings, and maps of its richest latents.

- `run`: `vista demo` itself — `DemoConfig`, its options, `run_demo` (train or load the SAE,
  pick latents, build their maps through `pipeline.build`);
- `sae`: the demo SAE step (STEP "demo_sae"): train, save, load, cache key;
- `sae_config`: its config, `DemoSAEConfig`;
- `activations`: its training data, MiniLM's activations at the hook;
- `latents`: which latents get a map (`pick_latents`) and the statistics it ranks by.

Nothing is imported here: `latents` is numpy only and must stay cheap to import, while
`run` pulls in the whole build.
"""
