"""The demo's wide SAE (`vista demo --wide`): its training cost against the demo SAE's, on the same activations.

    .venv/bin/python -m benchmarks.demo_wide [--steps 20] [--repeats 3]

Both SAEs are trained (sae-lens `SAETrainer`, the demo's `_fit`) for --steps steps of the demo's
batch size on the same activations: seeded Gaussian stand-ins of MiniLM's width (a TopK SAE's
step costs the same whatever the values), so no model runs. Printed: the median seconds per step of
each over --repeats, the ratio, and the full training each would take at the demo's default steps
(`DemoSAEConfig().n_steps`), next to the first demo's five-minute budget. Wall time on a shared
machine, with its load average; nothing asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

from pipeline.demo.sae import _fit, wide_config
from pipeline.demo.sae_config import DemoSAEConfig
from pipeline.steps import no_progress

D_MODEL = 384
"""MiniLM's width: the demo SAE's d_in."""


def seconds_per_step(cfg: DemoSAEConfig, activations: object, repeats: int) -> float:
    """Median over `repeats` trainings of `cfg.n_steps` steps, per step."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _fit(cfg, activations, no_progress)
        times.append((time.perf_counter() - started) / cfg.n_steps)
    return statistics.median(times)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per run (default: 20)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per SAE, median taken (default: 3)")
    args = parser.parse_args()
    demo = DemoSAEConfig()
    # epochs=1: n_steps = n_train_tokens // batch_size = --steps.
    short = replace(demo, n_train_tokens=args.steps * demo.batch_size, epochs=1, warmup_steps=1)
    activations = torch.randn(short.n_train_tokens, D_MODEL, generator=torch.Generator().manual_seed(0))
    load = os.getloadavg()
    narrow = seconds_per_step(short, activations, args.repeats)
    wide = seconds_per_step(wide_config(short), activations, args.repeats)
    print(f"load average before: {load[0]:.2f} · torch threads: {torch.get_num_threads()} · cores: {os.cpu_count()}")
    print(f"steps of {demo.batch_size} tokens: {args.steps} × {args.repeats} runs per SAE")
    for name, cfg, per_step in (("demo", short, narrow), ("wide", wide_config(short), wide)):
        full = per_step * demo.n_steps
        print(
            f"{name:5} d_sae {cfg.d_sae:>6,}: {per_step:.3f} s/step (median) → {full:,.0f} s for the demo's {demo.n_steps} steps"
        )
    print(f"wide / demo: {wide / narrow:.2f}× per step; the first demo's budget is 300 s in all")


if __name__ == "__main__":
    main()
