"""Renders on disk: the render key, the job that defines it, where renders go, the sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import MapReader, NodeLabels, StepRecord, update_tree
from vista_tui.mapdata.renders import (
    RenderJob,
    cached_render,
    read_sidecar,
    render_files,
    render_key,
    render_paths,
    write_render,
)

PNG = b"\x89PNG\r\n\x1a\n not really an image"


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "maps" / "syn", n=120, seed=3)


def test_render_key_follows_content(map_dir: Path) -> None:
    sketch = RenderJob(map_dir)
    assert render_key(sketch) == render_key(RenderJob(map_dir))
    assert render_key(sketch) == render_key(RenderJob(map_dir, seed=5, steps=3))  # a sketch has no seed
    assert render_key(sketch) == render_key(RenderJob(map_dir, node_id=MapReader(map_dir).root.node_id))
    assert render_key(sketch) != render_key(RenderJob(map_dir, node_id=MapReader(map_dir).tree[1].node_id))
    assert render_key(sketch) != render_key(RenderJob(map_dir, width=512, height=512))
    assert render_key(sketch) != render_key(RenderJob(map_dir, kind="panorama"))
    diffusion = RenderJob(map_dir, model="some/model")
    assert render_key(diffusion).startswith("diffusion-")
    assert render_key(diffusion) != render_key(RenderJob(map_dir, model="some/model", seed=1))
    assert render_key(diffusion) != render_key(RenderJob(map_dir, model="other/model"))
    assert render_key(diffusion) == render_key(RenderJob(map_dir, model="some/model", debug_delay_s=0.5))
    assert render_key(diffusion, {}) == render_key(diffusion)  # no options: the worker's key
    assert render_key(diffusion, {"window": 256}) != render_key(diffusion)

    before = render_key(sketch)
    reader = MapReader(map_dir)
    nodes = reader.tree
    nodes[1].labels = NodeLabels(keywords=nodes[1].labels.keywords, visual_prompt="a different scene")
    update_tree(map_dir, reader.manifest, nodes, StepRecord("relabel", "x", {}, {}, None))
    assert render_key(RenderJob(map_dir)) != before


def test_render_job_validates() -> None:
    for bad in (
        {"kind": "poster"},
        {"steps": 0},
        {"width": 10},
        {"height": 100_000},
        {"seed": -1},
        {"guidance": float("nan")},
        {"model": " "},
        {"node_id": ""},
    ):
        with pytest.raises(ValueError):
            RenderJob(Path("m"), **bad)  # type: ignore[arg-type]
    assert RenderJob(Path("m")).size == (1024, 768)
    assert RenderJob(Path("m"), model="x").size == (512, 512)
    request = RenderJob(Path("m"), node_id="n", model="x", seed=3).to_request("r1")
    assert RenderJob.from_request(request) == RenderJob(Path("m"), node_id="n", model="x", seed=3)


def test_a_render_is_complete_once_its_sidecar_is_written(map_dir: Path) -> None:
    job = RenderJob(map_dir, width=320, height=240)
    key = render_key(job)
    image, sidecar = render_paths(job)
    assert (image, sidecar) == render_files(map_dir / "renders", key)
    assert cached_render(job) is None and read_sidecar(image) == {}
    image.parent.mkdir()
    image.write_bytes(PNG)
    assert cached_render(job) is None  # an image without its sidecar is not a render yet
    assert write_render(map_dir / "renders", key, PNG, {"kind": "sketch", "width": 320}) == image
    assert cached_render(job) == image and image.read_bytes() == PNG
    written = read_sidecar(image)
    assert list(written)[:2] == ["key", "created"] and written["key"] == key
    assert (written["kind"], written["width"]) == ("sketch", 320)
    assert json.loads(sidecar.read_text(encoding="utf-8")) == written
    assert sorted(p.name for p in image.parent.iterdir()) == [f"{key}.json", f"{key}.png"]  # no temporary left


def test_keys_never_name_a_path_elsewhere(tmp_path: Path) -> None:
    for bad in ("../escape", "sketch-ABC12345", "short", "sketch-0123456789abcdef/x", ""):
        with pytest.raises(ValueError, match="key"):
            write_render(tmp_path, bad, PNG, {})
    assert not any(tmp_path.iterdir())


def test_an_unreadable_sidecar_reads_as_empty(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("not json", encoding="utf-8")
    (tmp_path / "b.json").write_text("[1, 2]", encoding="utf-8")
    assert read_sidecar(tmp_path / "a.png") == {} and read_sidecar(tmp_path / "b.png") == {}


def test_an_unreadable_map_has_no_cached_render(tmp_path: Path) -> None:
    assert cached_render(RenderJob(tmp_path / "nope")) is None
