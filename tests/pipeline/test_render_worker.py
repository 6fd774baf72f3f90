"""The render worker: sketches (pipeline.render.sketch), its JSON-lines protocol, and diffusion with a warm model.

Protocol tests run the real process (`python -m pipeline.render.worker`); the warm-model
tests drive the worker class in-process too, to count model loads. Diffusion uses the tiny
random SD checkpoint of tests/tiny_sd.py. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.render.sketch import _font, _Label, _place_labels, draw_sketch, short_title, sketch_map
from pipeline.render.worker import RenderWorker
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.render_queue import RenderQueue
from vista_tui.mapdata import MapReader
from vista_tui.mapdata.renders import RenderJob, cached_render, read_sidecar, render_key

WAIT_S = 120.0


@pytest.fixture(scope="module")
def map_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_map(tmp_path_factory.mktemp("store") / "maps" / "syn", n=300, seed=2)


@pytest.fixture
def fresh_map(tmp_path: Path) -> Path:
    """A map of its own (an empty renders/ cache)."""
    return build_synthetic_map(tmp_path / "maps" / "syn", n=120, seed=5)


# -- sketches -----------------------------------------------------------------------------------------


def test_sketch_is_deterministic_and_sized(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    first = sketch_map(reader, None, (640, 480))
    second = sketch_map(MapReader(map_dir), None, (640, 480))
    assert first.size == (640, 480) and first.mode == "RGB"
    assert first.tobytes() == second.tobytes()
    assert sketch_map(reader, reader.root.node_id, (640, 480)).tobytes() == first.tobytes()  # root = whole map


def test_sketch_colours_clusters_and_emphasises_the_selected_node(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    whole = np.asarray(sketch_map(reader, None, (640, 480))).astype(int)
    colours = {tuple(c) for c in whole.reshape(-1, 3)[::7]}
    assert len(colours) > 20  # clusters in their hues, grey noise, labels
    node = next(n for n in reader.children(reader.root.node_id) if n.kind == "cluster")
    sketch = draw_sketch(reader, node.node_id, (640, 480))
    selected = np.asarray(sketch.image).astype(int)
    assert (np.abs(selected - whole).sum(axis=2) > 30).mean() > 0.01

    # Outside the selected node (its box, and the titles of it and its children) the map is faded: far
    # fewer vivid pixels than in the whole map.
    outside = np.ones(selected.shape[:2], dtype=bool)
    (x0, y1), (x1, y0) = sketch.plot.to_canvas(*node.bbox[:2]), sketch.plot.to_canvas(*node.bbox[2:])
    for box in [(x0 - 12, y0 - 12, x1 + 12, y1 + 12), *(label.box for label in sketch.labels)]:
        outside[max(0, int(box[1])) : int(box[3]) + 2, max(0, int(box[0])) : int(box[2]) + 2] = False

    def vivid(image: np.ndarray) -> int:
        return int((((image.max(axis=2) - image.min(axis=2)) > 90) & outside).sum())

    assert vivid(selected) < 0.6 * vivid(whole)


def test_sketch_rejects_unknown_nodes_and_bad_sizes(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    with pytest.raises(ValueError, match="no node 'nope'"):
        sketch_map(reader, "nope")
    with pytest.raises(ValueError, match="between"):
        sketch_map(reader, None, (10, 10))


def test_labels_never_overlap_and_crowded_ones_are_skipped() -> None:
    draw = ImageDraw.Draw(Image.new("RGB", (300, 200)))
    font = _font(14)
    labels = [_Label(f"cluster number {i}", (150.0, 100.0), (0, 0, 0), font) for i in range(40)]
    placed = _place_labels(draw, labels, (0, 0, 300, 200), [])
    assert 1 < len(placed) < 40
    boxes = [box for _, box in placed]
    for i, a in enumerate(boxes):
        assert min(a[0], a[1]) >= 0 and a[2] <= 300 and a[3] <= 200
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    first = placed[0][1]
    assert ((first[0] + first[2]) / 2, (first[1] + first[3]) / 2) == pytest.approx((150, 100))  # the first: centred


def test_short_titles(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    node = next(n for n in reader.tree if n.kind == "cluster")
    assert short_title(node) == ", ".join(node.labels.keywords[:2])
    node.labels.llm_label = "a very long label \x1b[31m that goes on and on and on"
    title = short_title(node)
    assert len(title) <= 28 and title.endswith("…") and "\x1b" not in title


def test_out_of_memory_fails_the_job_and_ends_the_worker(fresh_map: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Collect()
    worker = RenderWorker(sink)

    def no_memory(*args: Any) -> None:
        raise MemoryError

    monkeypatch.setattr(worker, "_sketch", no_memory)
    assert worker.run(request("a", fresh_map)) is False  # serve() then exits with status 3
    assert sink.events()[-1] == {"event": "failed", "job_id": "a", "error": "out of memory: MemoryError"}


# -- the protocol, on the real process ------------------------------------------------------------------


class WorkerProcess:
    """`python -m pipeline.render.worker` with a thread reading its stdout into a queue."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.render.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=env or dict(os.environ),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.raw: list[str] = []
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.raw.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.process.stdin.flush()

    def event(self, timeout: float = WAIT_S) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        assert line is not None, "the worker closed its stdout"
        return json.loads(line)

    def until(self, kind: str, timeout: float = WAIT_S) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Events up to and including the first of `kind`."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.event(max(0.1, deadline - time.monotonic()))
            seen.append(event)
            if event["event"] == kind:
                return event, seen

    def close(self) -> int:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"op": "shutdown"})
        try:
            code = self.process.wait(30)
            if self.process.stderr is not None and not self.process.stderr.closed:
                self.stderr = self.process.stderr.read()
            return code
        finally:
            self.process.kill()
            for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()


def request(job_id: str, map_dir: Path, **fields: Any) -> dict[str, Any]:
    return RenderJob(map_dir, **fields).to_request(job_id)


def test_protocol_sketch_then_cache_hit(fresh_map: Path) -> None:
    worker = WorkerProcess()
    try:
        assert worker.event()["event"] == "ready"
        worker.send("this is not json")
        worker.send(request("a", fresh_map, width=200, height=150))
        done, seen = worker.until("done")
        assert seen[0] == {"event": "started", "job_id": "a"}
        assert done["cached"] is False and done["job_id"] == "a"
        png, sidecar = Path(done["path"]), Path(done["sidecar"])
        assert png.parent == fresh_map / "renders" and png.with_suffix(".json") == sidecar
        assert Image.open(png).size == (200, 150)
        assert json.loads(sidecar.read_text())["kind"] == "sketch"
        mtime = png.stat().st_mtime_ns

        worker.send(request("b", fresh_map, width=200, height=150))
        again, _ = worker.until("done")
        assert again["cached"] is True and again["path"] == done["path"]
        assert png.stat().st_mtime_ns == mtime

        worker.send(request("c", fresh_map, node_id="missing"))
        failed, _ = worker.until("failed")
        assert failed == {"event": "failed", "job_id": "c", "error": "map syn has no node 'missing'"}
        assert worker.close() == 0
        assert all(json.loads(line) for line in worker.raw)  # stdout carries protocol lines only
        assert "ignoring a bad request line" in worker.stderr
    finally:
        worker.close()


def test_protocol_cancel_a_slow_job(fresh_map: Path) -> None:
    worker = WorkerProcess(env=dict(os.environ, VISTA_RENDER_TEST="1"))
    try:
        assert worker.event()["event"] == "ready"
        worker.send(request("slow", fresh_map, steps=400, debug_delay_s=0.05, width=128, height=96))
        worker.until("progress")
        worker.send({"op": "cancel", "job_id": "slow"})
        cancelled, seen = worker.until("cancelled", timeout=10)
        assert cancelled["job_id"] == "slow" and "done" not in [e["event"] for e in seen]
        assert not (fresh_map / "renders").exists() or not list((fresh_map / "renders").glob("*.png"))
        worker.send(request("next", fresh_map, width=128, height=96))
        done, _ = worker.until("done")
        assert done["job_id"] == "next"
    finally:
        worker.close()


def test_the_test_delay_needs_the_test_switch(fresh_map: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VISTA_RENDER_TEST"}
    worker = WorkerProcess(env=env)
    try:
        worker.event()
        worker.send(request("a", fresh_map, steps=400, debug_delay_s=0.05, width=128, height=96))
        done, seen = worker.until("done")
        # Honoured, the delay stretches the sketch over its 400 steps (a progress line says
        # `"total": 400`); ignored, the sketch is the one step it always is.
        assert done["cached"] is False
        assert [(e["step"], e["total"]) for e in seen if e["event"] == "progress"] == [(1, 1)]
    finally:
        worker.close()


def test_worker_ends_when_its_stdin_closes(fresh_map: Path) -> None:
    worker = WorkerProcess(env=dict(os.environ, VISTA_RENDER_TEST="1"))
    worker.event()
    worker.send(request("slow", fresh_map, steps=400, debug_delay_s=0.05, width=128, height=96))
    worker.until("progress")
    assert worker.process.stdin is not None
    worker.process.stdin.close()
    assert worker.process.wait(10) == 0
    worker.close()


# -- diffusion with the tiny checkpoint -----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from tests.helpers.tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "model", seed=0)


class Collect(io.StringIO):
    """An event sink for the in-process worker."""

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


def test_warm_worker_loads_the_model_once_and_never_renders_twice(fresh_map: Path, tiny_model: Path) -> None:
    sink = Collect()
    worker = RenderWorker(sink)
    base = {"model": str(tiny_model), "steps": 3, "width": 64, "height": 64}
    assert worker.run(request("a", fresh_map, **base))
    done = sink.events()[-1]
    assert done["event"] == "done" and done["cached"] is False, sink.events()
    assert worker.model_loads == 1
    sidecar = read_sidecar(Path(done["path"]))
    assert sidecar["kind"] == "diffusion" and sidecar["model"] == str(tiny_model)
    assert sidecar["seed"] == 0 and sidecar["steps"] == 3 and (sidecar["width"], sidecar["height"]) == (64, 64)
    assert sidecar["prompt"] == MapReader(fresh_map).root.labels.visual_prompt
    assert Image.open(done["path"]).size == (64, 64)
    progress = [e for e in sink.events() if e["event"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == 3

    assert worker.run(request("b", fresh_map, **base))
    again = sink.events()[-1]
    assert again["event"] == "done" and again["cached"] is True and again["path"] == done["path"]
    assert worker.model_loads == 1

    assert worker.run(request("c", fresh_map, **{**base, "seed": 1}))
    other = sink.events()[-1]
    assert other["event"] == "done" and other["cached"] is False and other["path"] != done["path"]
    assert worker.model_loads == 1  # warm: the loaded model served the new seed

    assert worker.run(request("d", fresh_map, kind="panorama", **{**base, "width": 96}))
    panorama = sink.events()[-1]
    assert panorama["event"] == "done", sink.events()[-3:]
    regions = read_sidecar(Path(panorama["path"]))["prompts"]
    assert len(regions) >= 2 and Image.open(panorama["path"]).size == (96, 64)
    assert worker.model_loads == 1


def test_a_job_naming_another_model_reloads(fresh_map: Path, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    other = shutil.copytree(tiny_model, tmp_path / "other-model")
    sink = Collect()
    worker = RenderWorker(sink)
    for job_id, model in (("a", tiny_model), ("b", other), ("c", other)):
        assert worker.run(request(job_id, fresh_map, model=str(model), steps=2, width=64, height=64, seed=3))
        assert sink.events()[-1]["event"] == "done", sink.events()[-1]
    assert worker.model_loads == 2


def test_diffusion_errors_are_one_line(fresh_map: Path, tiny_model: Path, tmp_path: Path) -> None:
    sink = Collect()
    worker = RenderWorker(sink)
    worker.run(request("a", fresh_map, model=str(tmp_path / "no-such-model"), steps=2))
    failed = sink.events()[-1]
    assert failed["event"] == "failed" and "does not exist" in failed["error"] and "\n" not in failed["error"]
    worker.run(request("b", fresh_map, model=str(tiny_model), steps=2, width=66, height=64))
    failed = sink.events()[-1]
    assert failed["event"] == "failed" and "multiple of" in failed["error"], failed


def test_the_queue_renders_with_a_warm_worker_and_cancels_diffusion(fresh_map: Path, tiny_model: Path) -> None:
    """First render (model load), the same job again (a cache hit), a new seed in the warm worker, a cancel.

    The time each takes is a figure for `python -m benchmarks.render`, not for a test."""
    env = dict(os.environ, VISTA_RENDER_TEST="1")
    with RenderQueue(env=env, time_limit_s=WAIT_S) as render_queue:
        base = {"model": str(tiny_model), "steps": 4, "width": 64, "height": 64}
        first = render_queue.wait(render_queue.submit(RenderJob(fresh_map, **base)), WAIT_S)
        cached = render_queue.wait(render_queue.submit(RenderJob(fresh_map, **base)), WAIT_S)
        warm = render_queue.wait(render_queue.submit(RenderJob(fresh_map, seed=9, **base)), WAIT_S)
        assert first.state == cached.state == warm.state == "done", (first.error, warm.error)
        assert cached.cached and cached.path == first.path and not warm.cached

        slow = render_queue.submit(RenderJob(fresh_map, seed=10, debug_delay_s=0.05, **{**base, "steps": 400}))
        deadline = time.monotonic() + WAIT_S
        while render_queue.status(slow).step == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert render_queue.cancel(slow)
        assert render_queue.wait(slow, 15).state == "cancelled"
        after = render_queue.wait(render_queue.submit(RenderJob(fresh_map, seed=11, **base)), WAIT_S)
        assert after.state == "done"
        assert render_queue.workers_started == 1
        assert sum("loading" in line for line in render_queue.worker_log()) == 1


def test_the_queue_and_the_pipeline_share_one_render_cache(fresh_map: Path, tiny_model: Path) -> None:
    """The worker (TUI, `vista render`) and pipeline.render.run key a job alike and find each other's images."""
    render = pytest.importorskip("pipeline.render")
    from tests.helpers.tiny_sd import TINY_WINDOW_PX

    components = render.load_components(str(tiny_model), device="cpu", dtype="float32")
    job = RenderJob(fresh_map, kind="panorama", model=str(tiny_model), steps=2, width=96, height=64)
    # What someone calling the pipeline would write: the job's settings, windows of the model's size.
    cfg = render.RenderConfig(
        model=str(tiny_model),
        steps=2,
        width=96,
        height=64,
        window=TINY_WINDOW_PX,
        stride=TINY_WINDOW_PX // 2,
        device="cpu",
        dtype="float32",
    )

    # Rendered by the worker, found by the pipeline.
    sink = Collect()
    assert RenderWorker(sink).run(job.to_request("a"))
    done = sink.events()[-1]
    assert done["event"] == "done" and done["cached"] is False, done
    found = render.run(cfg, fresh_map, per="cluster", components=components)
    assert found.cached and found.png == Path(done["path"]) and found.key == render_key(job)

    # Rendered by the pipeline, found by the TUI's lookup, the queue and the worker.
    made = render.run(replace(cfg, seed=4), fresh_map, per="cluster", components=components)
    assert not made.cached and made.key == render_key(replace(job, seed=4))
    assert cached_render(replace(job, seed=4)) == made.png
    with RenderQueue(time_limit_s=WAIT_S) as render_queue:
        status = render_queue.wait(render_queue.submit(replace(job, seed=4)), WAIT_S)
        assert status.state == "done" and status.cached and status.path == made.png
        assert render_queue.workers_started == 0  # answered from the cache
    sink = Collect()
    assert RenderWorker(sink).run(replace(job, seed=4).to_request("b"))
    assert sink.events()[-1]["cached"] is True and sink.events()[-1]["path"] == str(made.png)

    # A picture the worker never makes (regions per context) gets a key of its own.
    contexts = render.run(cfg, fresh_map, per="context", components=components)
    assert not contexts.cached and contexts.key != render_key(job)
