"""The render queue, TUI side: jobs go to a long-lived worker process, events come back.

Renders (diffusion, or sketches when no model is configured) run in a separate process,
`python -m pipeline.render_worker`, which keeps the diffusion model loaded between jobs;
this module never imports the pipeline, torch or diffusers (tests/test_import_boundary.py).
It speaks the worker's protocol: one JSON object per line on the worker's stdin
(`render`, `cancel`, `shutdown`) and on its stdout (`ready`, `started`, `progress`,
`done`, `failed`, `cancelled`).

`RenderQueue` keeps a FIFO of jobs and hands the worker one at a time. Each job ends in
exactly one of done, failed or cancelled, whatever the worker does: a worker that dies
mid-job (a crash, the OOM killer) or that outlives the job's time limit fails that job with
a one-line reason, and the next job starts a fresh worker. Events reach `on_event` in order
from a single delivery thread — never the caller's thread, never with a lock held — so the
TUI can forward them with `App.call_from_thread` or `post_message`.

Renders are cached by content in `<map>/renders/<key>.png` with a JSON sidecar beside it.
`render_key` is the one key of that cache, pure Python (the job's parameters, the renderer's
version and a hash of the map's tree and contexts files): the worker and `pipeline.render.run`
file images under it, and the TUI finds an existing image (`cached_render`) without starting
anything; the queue answers such jobs itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Literal

from vista_tui.mapdata import MapError, read_manifest

RENDERS_DIR = "renders"
"""Where a map keeps its renders: `<map>/renders/<key>.png` plus `<key>.json`."""
WORKER_MODULE = "pipeline.render_worker"
ENV_MODEL = "VISTA_DIFFUSION_MODEL"
"""The diffusion model to render with (a diffusers directory or a Hugging Face id); unset → sketches."""
ENV_TEST = "VISTA_RENDER_TEST"
"""Set to 1 in the worker's environment to honour `RenderJob.debug_delay_s` (tests only)."""

KEY_VERSION = 1
"""Version of the cache-key recipe itself."""
SKETCH_VERSION = 1
"""Bump when pipeline/sketch.py draws differently, so cached sketches are redrawn."""
DIFFUSION_VERSION = 1
"""Bump when pipeline/render.py renders differently for the same parameters."""
FINGERPRINT_FILES = ("tree", "contexts")
"""The map files a render depends on (labels, prompts, boxes; positions, activations)."""

RenderKind = Literal["node", "panorama"]
Renderer = Literal["sketch", "diffusion"]
JobState = Literal["queued", "running", "done", "failed", "cancelled"]
EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})

MIN_SIDE = 64
MAX_SIDE = 8192
MAX_STEPS = 1000


def default_size(kind: RenderKind, renderer: Renderer) -> tuple[int, int]:
    """Width and height when none is given: a landscape sketch; SD's native square per node, 2:1 panoramas."""
    if renderer == "sketch":
        return (1024, 768)
    return (512, 512) if kind == "node" else (1024, 512)


@dataclass(frozen=True)
class RenderJob:
    """What to render: a node of a map (or the whole map as a panorama), how, and with which model."""

    map_dir: Path
    """The map directory."""
    node_id: str | None = None
    """The node to render (None = the root); for a panorama, the node whose child clusters become regions."""
    kind: RenderKind = "node"
    model: str | None = None
    """A diffusers directory or Hugging Face id; None draws a sketch instead (no weights needed)."""
    seed: int = 0
    steps: int = 30
    width: int | None = None
    """Pixels; None = `default_size(kind, renderer)`."""
    height: int | None = None
    guidance: float = 7.5
    debug_delay_s: float = 0.0
    """Tests only: seconds the worker sleeps per step; honoured only when the worker has VISTA_RENDER_TEST=1."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "map_dir", Path(self.map_dir))
        if self.kind not in ("node", "panorama"):
            raise ValueError(f"render kind must be 'node' or 'panorama', got {self.kind!r}")
        if self.node_id is not None and (not isinstance(self.node_id, str) or not self.node_id):
            raise ValueError(f"node id must be a non-empty string or None, got {self.node_id!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise ValueError(f"model must be a directory or model id, or None for a sketch, got {self.model!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise ValueError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}")
        default_w, default_h = default_size(self.kind, self.renderer)
        for name, default in (("width", default_w), ("height", default_h)):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)
            elif isinstance(value, bool) or not isinstance(value, int) or not MIN_SIDE <= value <= MAX_SIDE:
                raise ValueError(f"{name} must be an integer from {MIN_SIDE} to {MAX_SIDE} pixels, got {value!r}")
        if not isinstance(self.guidance, int | float) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise ValueError(f"guidance must be a finite number ≥ 0, got {self.guidance!r}")
        object.__setattr__(self, "guidance", float(self.guidance))
        if not isinstance(self.debug_delay_s, int | float) or not 0 <= self.debug_delay_s <= 60:
            raise ValueError(f"debug_delay_s must be between 0 and 60 seconds, got {self.debug_delay_s!r}")

    @property
    def renderer(self) -> Renderer:
        return "sketch" if self.model is None else "diffusion"

    @property
    def size(self) -> tuple[int, int]:
        assert self.width is not None and self.height is not None  # set in __post_init__
        return (self.width, self.height)

    def to_request(self, job_id: str) -> dict[str, Any]:
        """The worker's `render` request for this job."""
        request: dict[str, Any] = {
            "op": "render",
            "job_id": job_id,
            "map": str(self.map_dir),
            "node": self.node_id,
            "kind": self.kind,
            "model": self.model,
            "seed": self.seed,
            "steps": self.steps,
            "width": self.width,
            "height": self.height,
            "guidance": self.guidance,
        }
        if self.debug_delay_s:
            request["debug_delay_s"] = self.debug_delay_s
        return request

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> RenderJob:
        """A job from a `render` request (unknown keys ignored); raises ValueError naming what is wrong."""
        if not isinstance(request.get("map"), str) or not request["map"]:
            raise ValueError("render request has no 'map' (the map directory)")
        known = {f.name for f in fields(cls)} - {"map_dir", "node_id"}
        params = {name: request[name] for name in known if request.get(name) is not None}
        return cls(map_dir=Path(request["map"]), node_id=request.get("node"), **params)


# -- the cache -------------------------------------------------------------------------------------

_fingerprints: dict[tuple[str, int, int, int, int], str] = {}
_fingerprints_lock = threading.Lock()


def _file_digest(path: Path) -> str:
    """blake2b of a file's bytes, memoised by its stat so that asking again costs a stat.

    The inode is part of the memo: map files are replaced by rename (a new inode), which two
    writes within one timestamp tick would otherwise hide.
    """
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    with _fingerprints_lock:
        if memo in _fingerprints:
            return _fingerprints[memo]
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    with _fingerprints_lock:
        _fingerprints[memo] = digest
    return digest


def map_fingerprint(map_dir: Path) -> str:
    """A hash of the bytes of the map files renders depend on; raises MapError for an unreadable map."""
    map_dir = Path(map_dir)
    manifest = read_manifest(map_dir)
    parts = [f"schema={manifest.schema_version}"]
    for key in FINGERPRINT_FILES:
        entry = manifest.files.get(key)
        if entry is None:
            raise MapError(f"map {map_dir.name} has no {key} file: rebuild it with `vista build`")
        try:
            parts.append(f"{key}={_file_digest(map_dir / entry.name)}")
        except OSError as error:
            raise MapError(f"map {map_dir.name}: cannot read {entry.name} ({error.strerror or error})") from None
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


_root_ids: dict[str, str] = {}


def _root_id(map_dir: Path, fingerprint: str) -> str:
    """The id of the map's root node (memoised by the map's fingerprint)."""
    with _fingerprints_lock:
        if fingerprint in _root_ids:
            return _root_ids[fingerprint]
    from vista_tui.mapdata import MapReader  # reads tree.parquet; most keys hit the memo

    try:
        root = MapReader(map_dir).root.node_id
    except (IndexError, OSError) as error:
        raise MapError(f"map {map_dir.name} has an unreadable or empty tree ({error})") from None
    with _fingerprints_lock:
        _root_ids[fingerprint] = root
    return root


def model_key(model: str) -> str:
    """A model as the cache knows it: a local directory by its absolute path, else the id as given."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model.strip()


def render_key(job: RenderJob, options: Mapping[str, Any] | None = None) -> str:
    """The cache key (and file stem) of a job's image: `sketch-…` or `diffusion-…` plus a content hash.

    The only render key there is: the TUI, the worker and `pipeline.render.run` all use it, so
    each finds what another rendered. `options` name renderer settings beyond the job that
    change the picture (JSON values); the worker has none, and `pipeline.render.run` passes only
    those of its config that differ from the worker's, so the same picture gets the same key.
    Pure Python. Raises MapError when the map cannot be read.
    """
    fingerprint = map_fingerprint(job.map_dir)
    # The root named by its id or by None is the same picture: one key.
    node = None if job.node_id is None or job.node_id == _root_id(job.map_dir, fingerprint) else job.node_id
    payload: dict[str, Any] = {
        "key_version": KEY_VERSION,
        "renderer": job.renderer,
        "map": fingerprint,
        "kind": job.kind,
        "node": node,
        "width": job.width,
        "height": job.height,
    }
    if job.model is None:
        payload["sketch_version"] = SKETCH_VERSION
    else:
        payload.update(
            diffusion_version=DIFFUSION_VERSION,
            model=model_key(job.model),
            seed=job.seed,
            steps=job.steps,
            guidance=job.guidance,
        )
    if options:  # absent, not empty, when there are none: keys from before options existed stay valid
        payload["options"] = dict(options)
    digest = hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=12).hexdigest()
    return f"{job.renderer}-{digest}"


def render_paths(job: RenderJob, key: str | None = None) -> tuple[Path, Path]:
    """Where a job's image and sidecar are (or will be)."""
    key = key or render_key(job)
    folder = job.map_dir / RENDERS_DIR
    return folder / f"{key}.png", folder / f"{key}.json"


def cached_render(job: RenderJob, key: str | None = None) -> Path | None:
    """The image already rendered for this job (under `key`, default `render_key(job)`), or None; never starts the worker.

    A render is complete when its sidecar exists (written after the image). None too when the
    map cannot be read: the worker then reports why.
    """
    try:
        image, sidecar = render_paths(job, key)
    except MapError:
        return None
    return image if image.is_file() and sidecar.is_file() else None


def read_sidecar(image: Path) -> dict[str, Any]:
    """The sidecar of a rendered image ({} when missing or unreadable)."""
    try:
        raw = json.loads(image.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


# -- events and status -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job."""

    job_id: str
    job: RenderJob
    state: JobState = "queued"
    step: int = 0
    total: int = 0
    path: Path | None = None
    """The image, when done."""
    cached: bool = False
    """Done from the cache, without rendering."""
    error: str = ""
    """One line, when failed."""
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def percent(self) -> int:
        return round(100 * self.fraction)


@dataclass(frozen=True)
class RenderEvent(JobStatus):
    """Something that happened to a job (`kind`), with the job's status right after it."""

    kind: EventKind = field(kw_only=True)
    """queued, started, progress, done, failed or cancelled (the state is `running` for started and progress)."""

    @classmethod
    def of(cls, status: JobStatus, kind: EventKind) -> RenderEvent:
        return cls(**{f.name: getattr(status, f.name) for f in fields(JobStatus)}, kind=kind)


@dataclass
class _Record:
    """A job as the queue tracks it: its status (replaced, never changed in place) and the queue's handles."""

    status: JobStatus
    worker: _Worker | None = None
    cancel_requested: bool = False
    timers: list[threading.Timer] = field(default_factory=list)

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)


@dataclass
class _Worker:
    process: subprocess.Popen[str]
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    stderr_done: threading.Event = field(default_factory=threading.Event)
    kill_outcome: tuple[JobState, str] | None = None
    """Why we killed it, when we did: the state and reason its job ends with."""


# -- the protocol: one JSON object per line ------------------------------------------------------------


def write_message(stream: IO[str], message: Mapping[str, Any]) -> None:
    """Write one protocol message as a line of JSON and flush it (ValueError for NaN or what JSON cannot hold)."""
    stream.write(json.dumps(message, allow_nan=False) + "\n")
    stream.flush()


def read_messages(lines: Iterable[str], on_bad_line: Callable[[str, str], None]) -> Iterator[dict[str, Any]]:
    """The protocol messages on a stream of lines, in order.

    Blank lines are skipped; any other line that is not a JSON object goes to `on_bad_line(line, why)`.
    """
    for line in lines:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError as error:
            on_bad_line(line, str(error))
            continue
        if isinstance(message, dict):
            yield message
        else:
            on_bad_line(line, "not a JSON object")


def crash_reason(code: int, stderr_tail: list[str]) -> str:
    """One line on why the worker died mid-job."""
    if any("MemoryError" in line or "out of memory" in line.lower() for line in stderr_tail):
        return f"render worker ran out of memory (exit {code}); the next render starts a fresh one"
    last = next((line.strip() for line in reversed(stderr_tail) if line.strip()), "")
    detail = f": {last[:200]}" if last and code > 0 else ""
    return f"render worker crashed (exit {code}){detail}; the next render starts a fresh one"


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
        env = dict(os.environ) if self.env is None else dict(self.env)
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
