"""Every step module has one shape, and the build's one reuse-or-run helper keeps or recomputes a step's output."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pipeline import cluster, fidelity, keywords, layout
from pipeline.steps import make_record, no_progress, params_of, reuse_or_run, step_id_of
from tests.helpers.small_map import small_map
from vista_tui.mapdata import MapReader, MapWriter

STEP_MODULES = (layout, cluster, keywords, fidelity)


@pytest.mark.parametrize("step", STEP_MODULES, ids=lambda module: module.__name__)
def test_step_module_shape(step: ModuleType) -> None:
    module_name = step.__name__.removeprefix("pipeline.")
    assert module_name == step.STEP  # the manifest names the step as the module does
    assert isinstance(step.VERSION, int)
    assert isinstance(step.DISTRIBUTIONS, tuple) and all(isinstance(name, str) for name in step.DISTRIBUTIONS)
    assert dataclasses.is_dataclass(step.Config)
    assert step.Config.__dataclass_params__.frozen
    cfg = step.Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, None)
    parameters = list(inspect.signature(step.run).parameters.values())
    assert parameters[0].name == "cfg"
    progress = inspect.signature(step.run).parameters["progress"]
    assert progress.kind is inspect.Parameter.KEYWORD_ONLY
    assert progress.default is no_progress
    keyword_only = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keyword_only[0] == "progress"


@pytest.fixture
def previous(tmp_path: Path) -> MapReader:
    """A map whose manifest records a layout made with the default config on harvest 'h'."""
    small_map(tmp_path / "m")
    reader = MapReader(tmp_path / "m")
    record = make_record(layout.STEP, layout.VERSION, params_of(layout.Config()), "h", layout.DISTRIBUTIONS, 1.5)
    manifest = reader.manifest
    MapWriter(reader.path).commit(
        map_id=manifest.map_id, provenance=manifest.provenance, steps={"layout": record}, previous=manifest
    )
    return MapReader(reader.path)


def test_reuse_when_the_step_id_matches(previous: MapReader) -> None:
    def never() -> np.ndarray:
        raise AssertionError("a reusable step must not run")

    kept = reuse_or_run(layout, layout.Config(), "h", previous, run=never, reuse=lambda old: old.layout)
    assert kept.reused
    assert kept.record == previous.manifest.steps["layout"]
    np.testing.assert_array_equal(kept.output, previous.layout)


@pytest.mark.parametrize("change", ["config", "upstream", "no map", "nothing to reuse"])
def test_run_when_the_output_cannot_be_reused(previous: MapReader, change: str) -> None:
    cfg = layout.Config(seed=1) if change == "config" else layout.Config()
    upstream = "other" if change == "upstream" else "h"
    source = None if change == "no map" else previous
    xy = np.zeros((3, 2), np.float32)
    made = reuse_or_run(
        layout,
        cfg,
        upstream,
        source,
        run=lambda: xy,
        reuse=lambda old: None if change == "nothing to reuse" else old.layout,
    )
    assert not made.reused
    assert made.output is xy
    assert made.record.step_id == step_id_of(layout, cfg, upstream)
    assert made.record.upstream == upstream
    assert list(made.record.versions) == ["python", *layout.DISTRIBUTIONS]
