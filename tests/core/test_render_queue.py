"""The render queue (TUI side) against the real worker process, drawing sketches (no model weights).

Slow jobs use the worker's test-only delay per step (`debug_delay_s`, honoured only with
VISTA_RENDER_TEST=1 in the worker's environment). Every wait is bounded.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.render_protocol import JobStatus, RenderEvent, crash_reason, read_messages, write_message
from vista_tui.core.render_queue import RenderQueue
from vista_tui.mapdata import MapReader
from vista_tui.mapdata.renders import RenderJob, cached_render, read_sidecar, render_key

WAIT_S = 60.0
TEST_ENV = dict(os.environ, VISTA_RENDER_TEST="1")


class Events:
    """Collects a queue's events (called from its delivery thread) and waits for them."""

    def __init__(self) -> None:
        self.items: list[RenderEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: RenderEvent) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[RenderEvent], bool], timeout: float = WAIT_S) -> RenderEvent:
        with self._cond:
            found = self._cond.wait_for(lambda: next((e for e in self.items if predicate(e)), None), timeout)
        assert found is not None, f"no such event within {timeout} s; got {[(e.kind, e.job_id) for e in self.items]}"
        return found

    def kinds(self, job_id: str) -> list[str]:
        with self._cond:
            return [e.kind for e in self.items if e.job_id == job_id]


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "maps" / "syn", n=120, seed=3)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def render_queue(events: Events) -> Iterator[RenderQueue]:
    queue = RenderQueue(time_limit_s=WAIT_S, on_event=events, env=TEST_ENV, cancel_grace_s=10)
    yield queue
    queue.close()


def slow_job(map_dir: Path, steps: int = 400, delay: float = 0.05) -> RenderJob:
    """A sketch that takes steps × delay seconds (20 s by default): long enough to cancel or kill."""
    return RenderJob(map_dir, steps=steps, debug_delay_s=delay, width=256, height=192)


def test_sketch_job_writes_png_and_sidecar_and_the_same_job_is_a_cache_hit(
    map_dir: Path, render_queue: RenderQueue, events: Events
) -> None:
    job = RenderJob(map_dir, width=320, height=240)
    assert cached_render(job) is None
    first = render_queue.wait(render_queue.submit(job), WAIT_S)
    assert first.state == "done", first.error
    assert first.path is not None and first.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert first.path.parent == map_dir / "renders"
    assert first.path.stem == render_key(job) and first.path.stem.startswith("sketch-")
    sidecar = read_sidecar(first.path)
    assert sidecar["kind"] == "sketch" and (sidecar["width"], sidecar["height"]) == (320, 240)
    assert not first.cached
    events.wait_for(lambda e: e.job_id == first.job_id and e.kind == "done")
    assert events.kinds(first.job_id)[:2] == ["queued", "started"]
    assert events.kinds(first.job_id)[-1] == "done"
    mtime = first.path.stat().st_mtime_ns

    assert cached_render(job) == first.path
    second = render_queue.wait(render_queue.submit(job), WAIT_S)
    assert second.state == "done" and second.cached and second.path == first.path
    done = events.wait_for(lambda e: e.job_id == second.job_id and e.kind == "done")
    assert done.cached and done.path == first.path
    assert events.kinds(second.job_id) == ["queued", "done"]  # answered without the worker
    assert first.path.stat().st_mtime_ns == mtime
    assert render_queue.workers_started == 1


def test_jobs_run_in_order_one_at_a_time(map_dir: Path, render_queue: RenderQueue, events: Events) -> None:
    reader = MapReader(map_dir)
    nodes = [node.node_id for node in reader.tree[1:4]]
    ids = [render_queue.submit(RenderJob(map_dir, node_id=node, width=128, height=96)) for node in nodes]
    for job_id in ids:
        assert render_queue.wait(job_id, WAIT_S).state == "done"
    events.wait_for(lambda e: e.job_id == ids[-1] and e.kind == "done")  # delivery is asynchronous
    started = [e.job_id for e in events.items if e.kind == "started"]
    finished = [e.job_id for e in events.items if e.kind == "done"]
    assert started == ids and finished == ids
    order = [(e.kind, e.job_id) for e in events.items if e.kind in ("started", "done")]
    assert order == [(kind, job_id) for job_id in ids for kind in ("started", "done")]
    assert [status.job_id for status in render_queue.jobs()] == ids
    assert len({status.path for status in render_queue.jobs()}) == 3


def test_cancel_a_running_job_keeps_the_worker(map_dir: Path, render_queue: RenderQueue, events: Events) -> None:
    job_id = render_queue.submit(slow_job(map_dir))
    events.wait_for(lambda e: e.job_id == job_id and e.kind == "progress")
    pid = render_queue.worker_pid
    assert render_queue.cancel(job_id)
    status = render_queue.wait(job_id, 10)
    assert status.state == "cancelled"
    assert cached_render(slow_job(map_dir)) is None
    assert not render_queue.cancel(job_id)  # already finished
    after = render_queue.wait(render_queue.submit(RenderJob(map_dir, width=128, height=96)), WAIT_S)
    assert after.state == "done"
    assert render_queue.worker_pid == pid and render_queue.workers_started == 1


def test_cancel_a_queued_job(map_dir: Path, render_queue: RenderQueue, events: Events) -> None:
    running = render_queue.submit(slow_job(map_dir))
    waiting = render_queue.submit(RenderJob(map_dir, width=128, height=96))
    assert render_queue.status(waiting).state == "queued"
    assert render_queue.cancel(waiting)
    assert render_queue.status(waiting).state == "cancelled"
    events.wait_for(lambda e: e.job_id == waiting and e.kind == "cancelled")
    assert events.kinds(waiting) == ["queued", "cancelled"]
    render_queue.cancel(running)
    assert render_queue.wait(running, 10).state == "cancelled"


def test_killed_worker_fails_its_job_and_the_next_job_gets_a_fresh_worker(
    map_dir: Path, render_queue: RenderQueue, events: Events
) -> None:
    job_id = render_queue.submit(slow_job(map_dir))
    events.wait_for(lambda e: e.job_id == job_id and e.kind == "progress")
    pid = render_queue.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    status = render_queue.wait(job_id, WAIT_S)
    assert status.state == "failed"
    assert status.error == "render worker crashed (exit -9); the next render starts a fresh one"
    failed = events.wait_for(lambda e: e.job_id == job_id and e.kind == "failed")
    assert failed.error == status.error

    after = render_queue.wait(render_queue.submit(RenderJob(map_dir, width=128, height=96)), WAIT_S)
    assert after.state == "done", after.error
    assert render_queue.workers_started == 2 and render_queue.worker_pid != pid


def test_time_limit_fails_the_job_and_the_next_one_succeeds(map_dir: Path, events: Events) -> None:
    with RenderQueue(time_limit_s=3, on_event=events, env=TEST_ENV) as queue:
        slow = queue.submit(slow_job(map_dir, steps=600))
        status = queue.wait(slow, WAIT_S)
        assert status.state == "failed" and status.error == "timed out after 3 s"
        after = queue.wait(queue.submit(RenderJob(map_dir, width=128, height=96)), WAIT_S)
        assert after.state == "done", after.error
        assert queue.workers_started == 2


def test_a_worker_that_dies_saying_memoryerror_is_reported_as_out_of_memory(
    map_dir: Path, tmp_path: Path, events: Events
) -> None:
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\necho MemoryError >&2\nexit 1\n")
    fake.chmod(0o755)
    with RenderQueue(python=str(fake), on_event=events) as queue:
        status = queue.wait(queue.submit(RenderJob(map_dir)), WAIT_S)
    assert status.state == "failed"
    assert status.error == "render worker ran out of memory (exit 1); the next render starts a fresh one"


def test_crash_reasons_are_one_line() -> None:
    assert crash_reason(-9, []) == "render worker crashed (exit -9); the next render starts a fresh one"
    reason = crash_reason(1, ["Traceback …", "ModuleNotFoundError: No module named 'pipeline'"])
    assert reason == (
        "render worker crashed (exit 1): ModuleNotFoundError: No module named 'pipeline'; "
        "the next render starts a fresh one"
    )
    assert "out of memory" in crash_reason(-6, ["torch.OutOfMemoryError: CUDA out of memory."])


def test_worker_errors_fail_the_job_with_one_line(map_dir: Path, render_queue: RenderQueue) -> None:
    status = render_queue.wait(render_queue.submit(RenderJob(map_dir, node_id="not-a-node")), WAIT_S)
    assert status.state == "failed" and status.error == "map syn has no node 'not-a-node'"
    gone = render_queue.wait(render_queue.submit(RenderJob(map_dir.parent / "nope")), WAIT_S)
    assert gone.state == "failed" and "does not exist" in gone.error
    assert render_queue.workers_started == 1  # the worker survives bad jobs


def test_close_stops_the_running_job_and_the_worker(map_dir: Path, events: Events) -> None:
    queue = RenderQueue(on_event=events, env=TEST_ENV)
    running = queue.submit(slow_job(map_dir))
    waiting = queue.submit(RenderJob(map_dir))
    events.wait_for(lambda e: e.job_id == running and e.kind == "progress")
    pid = queue.worker_pid
    queue.close()
    assert queue.status(running).state == "cancelled" and queue.status(waiting).state == "cancelled"
    assert events.kinds(running)[-1] == "cancelled"
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(RuntimeError):
        queue.submit(RenderJob(map_dir))


def test_an_event_is_the_status_of_its_job_when_it_happened(map_dir: Path) -> None:
    status = JobStatus("r1", RenderJob(map_dir), state="running", step=3, total=4)
    event = RenderEvent.of(status, "progress")
    assert (event.kind, event.state, event.job_id, event.percent, event.finished) == (
        "progress",
        "running",
        "r1",
        75,
        False,
    )
    done = RenderEvent.of(replace(status, state="done", path=map_dir / "x.png"), "done")
    assert done.fraction == 1.0 and done.finished and done.path == map_dir / "x.png"
    assert JobStatus("r2", RenderJob(map_dir)).state == "queued"


def test_protocol_lines_round_trip_and_bad_lines_are_reported() -> None:
    stream = io.StringIO()
    write_message(stream, {"op": "render", "job_id": "r1"})
    write_message(stream, {"event": "ready"})
    with pytest.raises(ValueError):
        write_message(io.StringIO(), {"guidance": float("nan")})
    bad: list[tuple[str, str]] = []
    lines = [*stream.getvalue().splitlines(keepends=True), "\n", "not json\n", "[1, 2]\n"]
    messages = list(read_messages(lines, lambda line, why: bad.append((line, why))))
    assert messages == [{"op": "render", "job_id": "r1"}, {"event": "ready"}]
    assert [line for line, _ in bad] == ["not json\n", "[1, 2]\n"] and bad[1][1] == "not a JSON object"


# -- `vista render` ------------------------------------------------------------------------------------


def vista_render(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "vista_tui.cli", "render", *args]
    clean = {k: v for k, v in (env or os.environ).items() if k != "VISTA_DIFFUSION_MODEL"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=clean)


def test_vista_render_prints_the_sketch_path(map_dir: Path) -> None:
    node = MapReader(map_dir).tree[1].node_id
    result = vista_render("syn", node[:8], "--size", "300x200", "--cache", str(map_dir.parent.parent))
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.is_file() and path.parent == map_dir / "renders"
    assert read_sidecar(path)["kind"] == "sketch" and read_sidecar(path)["node"] == node
    assert "no diffusion model configured" in result.stderr and "sketch" in result.stderr
    again = vista_render(str(map_dir), node, "--size", "300x200")
    assert again.returncode == 0 and again.stdout == result.stdout
    assert "cached" in again.stderr


def test_vista_render_bad_map_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (("nope", "--cache", str(tmp_path)), (str(tmp_path),)):
        result = vista_render(*args)
        assert result.returncode == 2
        assert result.stdout == ""
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert "Traceback" not in result.stderr


def test_vista_render_bad_node_is_one_line_and_exit_2(map_dir: Path) -> None:
    result = vista_render(str(map_dir), "zzzz")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: map syn has no node 'zzzz'; `vista tree syn` shows every node's id and path"


def test_retry_a_cancelled_job_and_a_worker_that_cannot_start(map_dir: Path, events: Events) -> None:
    with RenderQueue(python="/nonexistent/python", on_event=events) as queue:
        failed = queue.wait(queue.submit(RenderJob(map_dir)), WAIT_S)
        assert failed.state == "failed" and failed.error.startswith("cannot start the render worker")
    with RenderQueue(on_event=events, env=TEST_ENV) as queue:
        slow = queue.submit(slow_job(map_dir))
        queue.cancel(slow)
        assert queue.wait(slow, 10).state == "cancelled"
        with pytest.raises(ValueError):
            queue.retry(queue.submit(RenderJob(map_dir, width=100, height=100)))  # not failed (queued or done)
        again = queue.retry(slow)
        assert again != slow and queue.status(again).job == queue.status(slow).job
        queue.cancel(again)
