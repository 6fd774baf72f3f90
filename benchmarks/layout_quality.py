"""Layout before and after version 2: seconds and the fidelity curve's maximum gain, side by side.

    python -m benchmarks.layout_quality [--store DIR] [--maps ID,...] [--sizes 4000] [--epochs 200]

Before: `benchmarks.baselines.layout_dense_reference` (UMAP on the dense N x N VISTA matrix,
UMAP's default 500 epochs below N = 10,000). After: `pipeline.layout.run` (exact kNN graph,
`n_epochs` from LayoutConfig, or each value of --epochs). Both from the same codes and
activations, scored by the same `pipeline.fidelity.run`. Maps: every map in the store (or
--maps), plus synthetic SAE-like codes of each --sizes. The issue's bar: the maximum gain drops
by at most 0.01 (absolute). Prints figures, asserts nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from benchmarks.baselines import layout_dense_reference
from benchmarks.bench_fidelity import synthetic_codes
from benchmarks.build import timed_runs
from pipeline import fidelity, layout
from pipeline.jit_cache import import_umap
from vista_tui.mapdata import MapReader, SparseCodes
from vista_tui.mapdata.store import resolve_store

MAX_GAIN_DROP = 0.01


def maps_in(store: str | None, wanted: list[str]) -> Iterator[tuple[str, SparseCodes, np.ndarray]]:
    """(name, codes, activations) of the store's maps (all, or those named in `wanted`)."""
    root = resolve_store(store) / "maps"
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if (wanted and path.name not in wanted) or not (path / "codes.npz").exists():
            continue
        reader = MapReader(path)
        yield path.name, reader.codes, reader.activations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=None, help="store holding the maps (default: the usual store)")
    parser.add_argument("--maps", default="", help="comma-separated map ids (default: every map with codes)")
    parser.add_argument("--sizes", default="4000", help="synthetic map sizes (default: 4000; '' for none)")
    parser.add_argument("--epochs", default="", help="comma-separated n_epochs to try (default: LayoutConfig's)")
    args = parser.parse_args()
    base = layout.LayoutConfig()
    epochs: list[int | None] = [int(e) for e in args.epochs.split(",") if e] or [base.n_epochs]
    import_umap()  # pay (or load) the JIT before timing anything

    inputs = list(maps_in(args.store, [m for m in args.maps.split(",") if m]))
    inputs += [(f"synthetic N={n}", *synthetic_codes(int(n))) for n in args.sizes.split(",") if n]
    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f}  bar: max gain drop <= {MAX_GAIN_DROP}")
    header = f"{'map':<28} {'N':>6} {'old s':>7} {'old gain':>9}"
    print(header + "".join(f" {'e=' + str(e or 'auto') + ' s':>9} {'gain':>7} {'Δ':>7}" for e in epochs))
    worst = 0.0
    for name, codes, activations in inputs:
        fid = fidelity.FidelityConfig(lam=base.lam)
        (old_s,), old_xy = timed_runs(1, lambda c=codes, a=activations: layout_dense_reference(c, a, lam=base.lam))
        old_gain = fidelity.run(fid, codes, activations, old_xy).best_gain
        line = f"{name:<28} {len(activations):>6} {old_s:>7.2f} {old_gain:>9.4f}"
        for n_epochs in epochs:
            cfg = replace(base, n_epochs=n_epochs)
            (new_s,), new_xy = timed_runs(1, lambda c=codes, a=activations, cfg=cfg: layout.run(cfg, c, a))
            new_gain = fidelity.run(fid, codes, activations, new_xy).best_gain
            worst = max(worst, old_gain - new_gain) if n_epochs == base.n_epochs else worst
            line += f" {new_s:>9.2f} {new_gain:>7.4f} {new_gain - old_gain:>+7.4f}"
        print(line, flush=True)
    print(f"largest drop at the default epochs: {worst:.4f} (bar {MAX_GAIN_DROP})")


if __name__ == "__main__":
    main()
