"""The render queue, the TUI's side of the renders: jobs go to a long-lived worker process, events come back.

Renders (diffusion, or sketches when no model is configured) run in a separate process,
`python -m pipeline.render.worker`, which keeps the diffusion model loaded between jobs;
this module never imports the pipeline, torch or diffusers (tests/test_contracts.py). It
speaks the worker's protocol (`vista_tui.core.render_protocol`).

`RenderQueue` keeps a FIFO of jobs and hands the worker one at a time. Each job ends in
exactly one of done, failed or cancelled, whatever the worker does: a worker that dies
mid-job (a crash, the OOM killer) or that outlives the job's time limit fails that job with
a one-line reason, and the next job starts a fresh worker. Events reach `on_event` in order
from a single delivery thread — never the caller's thread, never with a lock held — so the
TUI can forward them with `App.call_from_thread` or `post_message`.

A job whose image is already in the map's render cache (`vista_tui.mapdata.renders`) is
answered by the queue itself, without starting the worker.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from vista_tui.core.blas import child_environ
from vista_tui.core.render_protocol import (
    EventKind,
    JobState,
    JobStatus,
    RenderEvent,
    crash_reason,
    read_messages,
    write_message,
)
from vista_tui.mapdata.renders import RenderJob, cached_render

WORKER_MODULE = "pipeline.render.worker"
"""What the queue runs with `python -m`: the long-lived worker."""


@dataclass
class _Record:
    """A job as the queue tracks it: its status (replaced, never changed in place) and the queue's handles."""

    status: JobStatus
    worker: _Worker | None = None
    cancel_requested: bool = False
    timers: list[threading.Timer] = field(default_factory=list)

    def update(self, **changes: Any) -> None:
        """Replace the status by a copy with `changes`."""
        self.status = replace(self.status, **changes)


@dataclass
class _Worker:
    """A worker process and what the queue's reader threads learnt about it."""

    process: subprocess.Popen[str]
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    stderr_done: threading.Event = field(default_factory=threading.Event)
    kill_outcome: tuple[JobState, str] | None = None
    """Why we killed it, when we did: the state and reason its job ends with."""


class RenderQueue:
    """A FIFO of render jobs run one at a time by a long-lived worker process (started on the first job).

    Thread-safe. `on_event` is called from one delivery thread, in order; it may call back into
    the queue. Call `close()` when done (it shuts the worker down).
    """

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        python: str = sys.executable,
        time_limit_s: float = 600.0,
        on_event: Callable[[RenderEvent], None] | None = None,
        cancel_grace_s: float = 30.0,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        """`root`: the store or a map directory, against which relative map paths of jobs resolve.

        `time_limit_s` bounds each job from dispatch (model load included); `cancel_grace_s` is how
        long a cancelled job may take to stop before its worker is killed; `env` replaces the
        worker's environment; `log_path` collects the worker's stderr (always kept in memory too).
        """
        if not time_limit_s > 0 or not cancel_grace_s > 0:
            raise ValueError(f"time limits must be positive, got {time_limit_s!r} and {cancel_grace_s!r}")
        self.root = Path(root) if root is not None else None
        self.python = python
        self.time_limit_s = float(time_limit_s)
        self.cancel_grace_s = float(cancel_grace_s)
        self.on_event = on_event
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: dict[str, _Record] = {}
        self._pending: deque[str] = deque()
        self._current: str | None = None
        self._worker: _Worker | None = None
        self._workers_started = 0
        self._next_id = 0
        self._closed = False
        self._events: queue.SimpleQueue[RenderEvent | None] = queue.SimpleQueue()
        self._delivery: threading.Thread | None = None

    # -- public API --------------------------------------------------------------------------------

    def submit(self, job: RenderJob) -> str:
        """Queue a job; returns its id. A job whose image is cached finishes at once, without the worker."""
        if self.root is not None and not job.map_dir.is_absolute():
            job = replace(job, map_dir=self.root / job.map_dir)
        with self._lock:
            if self._closed:
                raise RuntimeError("the render queue is closed")
            self._next_id += 1
            job_id = f"r{self._next_id}"
            self._records[job_id] = _Record(JobStatus(job_id, job))
            self._pending.append(job_id)
            self._emit("queued", self._records[job_id])
            self._pump()
            return job_id

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it is unknown or already finished."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.status.finished:
                return False
            if record.status.state == "queued":
                self._pending.remove(job_id)
                self._finish(record, "cancelled")
                return True
            if not record.cancel_requested:
                record.cancel_requested = True
                self._send(record.worker, {"op": "cancel", "job_id": job_id})
                timer = threading.Timer(self.cancel_grace_s, self._kill_if_current, (job_id, "cancelled", ""))
                timer.daemon = True
                record.timers.append(timer)
                timer.start()
            return True

    def retry(self, job_id: str) -> str:
        """Submit a failed or cancelled job again; returns the new job's id."""
        with self._lock:
            record = self._records[job_id]
            if record.status.state not in ("failed", "cancelled"):
                raise ValueError(f"job {job_id} is {record.status.state}; only failed or cancelled jobs are retried")
            return self.submit(record.status.job)

    def status(self, job_id: str) -> JobStatus:
        """A snapshot of a job (KeyError when unknown)."""
        with self._lock:
            return self._records[job_id].status

    def jobs(self) -> list[JobStatus]:
        """Every job of this queue, in submission order."""
        with self._lock:
            return [record.status for record in self._records.values()]

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job finishes (or `timeout` seconds pass); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._records[job_id].status.finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return self._records[job_id].status

    @property
    def workers_started(self) -> int:
        """How many worker processes this queue has started (a fresh one after each crash or kill)."""
        return self._workers_started

    @property
    def worker_pid(self) -> int | None:
        """The live worker's process id, if there is one."""
        with self._lock:
            return self._worker.process.pid if self._worker is not None else None

    def worker_log(self) -> list[str]:
        """The last lines the current (or last) worker wrote to stderr."""
        with self._lock:
            return list(self._worker.stderr_tail) if self._worker is not None else []

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is queued, stop the running job, shut the worker down; events are delivered first."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while self._pending:
                self._finish(self._records[self._pending.popleft()], "cancelled")
            worker = self._worker
            if self._current is not None:
                self._send(worker, {"op": "cancel", "job_id": self._current})
            if worker is not None:
                self._send(worker, {"op": "shutdown"})
        if worker is not None:
            try:
                worker.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(worker, ("cancelled", ""))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(timeout)
        with self._lock:
            if self._current is not None:  # the reader thread did not get to it
                self._finish(self._records[self._current], "cancelled")
            delivery = self._delivery
            self._events.put(None)
        if delivery is not None and delivery is not threading.current_thread():
            delivery.join(timeout)

    def __enter__(self) -> RenderQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dispatch (called with the lock held) ------------------------------------------------------

    def _pump(self) -> None:
        """Start the next job when none is running."""
        while self._current is None and self._pending and not self._closed:
            record = self._records[self._pending.popleft()]
            hit = cached_render(record.status.job)
            if hit is not None:
                record.update(path=hit, cached=True)
                self._finish(record, "done")
                continue
            if self._worker is None or self._worker.process.poll() is not None:
                try:
                    self._worker = self._spawn()
                except OSError as error:  # no such interpreter, no memory for a process, ...
                    self._finish(record, "failed", f"cannot start the render worker ({self.python}): {error}")
                    continue
            record.update(state="running")
            record.worker = self._worker
            self._current = record.status.job_id
            timer = threading.Timer(
                self.time_limit_s,
                self._kill_if_current,
                (record.status.job_id, "failed", f"timed out after {self.time_limit_s:g} s"),
            )
            timer.daemon = True
            record.timers.append(timer)
            timer.start()
            self._send(self._worker, record.status.job.to_request(record.status.job_id))

    def _spawn(self) -> _Worker:
        env = child_environ() if self.env is None else dict(self.env)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("PYTHONIOENCODING", "utf-8")
        process = subprocess.Popen(
            [self.python, "-m", WORKER_MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=env,
            # Its own process group: Ctrl-C in the terminal reaches us, not the worker, and a
            # kill takes any helper processes it started with it.
            start_new_session=True,
        )
        worker = _Worker(process)
        self._workers_started += 1
        threading.Thread(target=self._read_stderr, args=(worker,), name="render-worker-stderr", daemon=True).start()
        threading.Thread(target=self._read_stdout, args=(worker,), name="render-worker-stdout", daemon=True).start()
        return worker

    def _send(self, worker: _Worker | None, message: dict[str, Any]) -> None:
        if worker is None or worker.process.stdin is None:
            return
        # A worker that is gone raises here; its stdout reader sees EOF and fails the job.
        with contextlib.suppress(OSError, ValueError):
            write_message(worker.process.stdin, message)

    def _emit(self, kind: EventKind, record: _Record) -> None:
        if self.on_event is None:
            return
        event = RenderEvent.of(record.status, kind)
        if self._delivery is None:
            self._delivery = threading.Thread(target=self._deliver, name="render-events", daemon=True)
            self._delivery.start()
        self._events.put(event)

    def _finish(self, record: _Record, state: JobState, error: str = "") -> None:
        for timer in record.timers:
            timer.cancel()
        record.timers.clear()
        record.update(state=state, error=error)
        if self._current == record.status.job_id:
            self._current = None
        self._emit(state, record)  # type: ignore[arg-type]
        self._changed.notify_all()

    # -- threads -------------------------------------------------------------------------------------

    def _deliver(self) -> None:
        while (event := self._events.get()) is not None:
            try:
                assert self.on_event is not None
                self.on_event(event)
            except Exception as error:  # a broken handler must not stop the queue
                print(f"render queue: event handler failed: {error!r}", file=sys.stderr)

    def _read_stderr(self, worker: _Worker) -> None:
        assert worker.process.stderr is not None
        log: IO[str] | None = None
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = self.log_path.open("a", encoding="utf-8")
        try:
            for line in worker.process.stderr:
                worker.stderr_tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                    log.flush()
        finally:
            if log is not None:
                log.close()
            worker.stderr_done.set()

    def _read_stdout(self, worker: _Worker) -> None:
        assert worker.process.stdout is not None

        def not_protocol(line: str, why: str) -> None:
            worker.stderr_tail.append(f"(not protocol) {line.rstrip()}")

        for message in read_messages(worker.process.stdout, not_protocol):
            self._on_message(worker, message)
        code = worker.process.wait()
        worker.stderr_done.wait(2.0)  # its last words may name the cause (a MemoryError)
        self._on_exit(worker, code)

    def _on_message(self, worker: _Worker, message: dict[str, Any]) -> None:
        with self._lock:
            record = self._records.get(str(message.get("job_id")))
            if record is None or record.worker is not worker or record.status.state != "running":
                return  # "ready", or a late word about a job that already ended
            event = message.get("event")
            if event == "started":
                self._emit("started", record)
            elif event == "progress":
                record.update(step=int(message.get("step", 0)), total=int(message.get("total", 0)))
                self._emit("progress", record)
            elif event == "done":
                record.update(
                    path=Path(str(message.get("path"))),
                    cached=bool(message.get("cached", False)),
                    seconds=float(message.get("seconds", 0.0)),
                )
                self._finish(record, "done")
                self._pump()
            elif event == "failed":
                self._finish(record, "failed", " ".join(str(message.get("error") or "render failed").split()))
                self._pump()
            elif event == "cancelled":
                self._finish(record, "cancelled")
                self._pump()

    def _on_exit(self, worker: _Worker, code: int) -> None:
        for pipe in (worker.process.stdin, worker.process.stdout, worker.process.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        with self._lock:
            if self._worker is worker:
                self._worker = None
            record = self._records.get(self._current) if self._current else None
            if record is not None and record.worker is worker:
                if worker.kill_outcome is not None:
                    state, reason = worker.kill_outcome
                elif self._closed:
                    state, reason = "cancelled", ""
                else:
                    state, reason = "failed", crash_reason(code, list(worker.stderr_tail))
                self._finish(record, state, reason)
            self._pump()

    def _kill_if_current(self, job_id: str, state: JobState, reason: str) -> None:
        """Time limit or cancel grace ran out: kill the worker; its job ends with `state` and `reason`."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None or record.status.state != "running" or record.worker is None:
                return
            self._kill(record.worker, (state, reason))

    @staticmethod
    def _kill(worker: _Worker, outcome: tuple[JobState, str]) -> None:
        if worker.kill_outcome is None:
            worker.kill_outcome = outcome
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker.process.pid, signal.SIGKILL)
