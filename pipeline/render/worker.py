"""`python -m pipeline.render.worker`: the long-lived render process behind `vista_tui.core.render_queue.RenderQueue`.

Protocol (`vista_tui.core.render_protocol`): JSON lines. On stdin, requests:
    {"op": "render", "job_id", "map", "node", "kind", "model", "seed", "steps", "width", "height", "guidance"}
    {"op": "cancel", "job_id"}     {"op": "shutdown"}
On stdout, events (nothing else is ever written there; logs go to stderr):
    {"event": "ready"}                      once, at start
    {"event": "started", "job_id"}
    {"event": "progress", "job_id", "step", "total"}      at most ~10 a second
    {"event": "done", "job_id", "path", "sidecar", "cached", "seconds"}
    {"event": "failed", "job_id", "error"}                one line
    {"event": "cancelled", "job_id"}

Jobs run one at a time on the main thread; a reader thread takes stdin, so a cancel arrives
while a job runs (the render checks a flag between steps). The diffusion model is loaded on
the first diffusion job and kept for the next ones (a job naming another model reloads);
`"model": null` draws a sketch (pipeline.render.sketch) and never imports torch. Images are
cached by content in `<map>/renders/` under `vista_tui.mapdata.renders.render_key` (the key
`pipeline.render.run` uses too), so the same request is never rendered twice: a hit answers
"done" with `"cached": true` and loads nothing. Lines are read and written by
`vista_tui.core.render_protocol`'s helpers, the same the queue uses on the other end.

Out of memory: the job fails with that reason and the worker exits (status 3) rather than
go on in a state nobody can vouch for; the queue starts a fresh one for the next job.
Stdin closing (the TUI went away) cancels the running job and ends the worker.
"""

from __future__ import annotations

import gc
import io
import os
import platform
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from pipeline.render.config import RenderCancelled
from pipeline.render.jobs import render_job, save_render
from pipeline.render.load import load_components
from vista_tui.core.render_protocol import ENV_TEST, read_messages, write_message
from vista_tui.mapdata import MapError, MapReader
from vista_tui.mapdata.renders import SKETCH_VERSION, RenderJob, cached_render, model_key, render_key, renders_dir

EXIT_OUT_OF_MEMORY = 3
PROGRESS_INTERVAL_S = 0.1
ENV_DEVICE = "VISTA_RENDER_DEVICE"
"""torch device for diffusion ('auto' = cuda when there is one); read by `main`, not by the worker."""


class JobCancelled(Exception):
    """The running job was cancelled (raised between steps)."""


def _one_line(error: BaseException) -> str:
    text = " ".join((str(error) or type(error).__name__).split())
    return text[:500]


def _is_out_of_memory(error: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError (and torch.OutOfMemoryError) without importing torch here.
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


class RenderWorker:
    """Serves render requests from `requests` (lines of JSON) and writes events to `events`."""

    def __init__(self, events: IO[str], test_mode: bool = False, device: str = "auto") -> None:
        """`test_mode` honours jobs' `debug_delay_s`; `device` is where diffusion runs ("auto": cuda when there is one)."""
        self.events = events
        self.test_mode = test_mode
        self.device = device
        self._write_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._inbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._current: str | None = None
        self._cancel = threading.Event()
        self._cancelled_early: set[str] = set()
        self._components: Any = None
        self._model: str | None = None
        self.model_loads = 0
        """How many times a diffusion model was loaded (tests check that a warm worker reuses it)."""

    # -- protocol --------------------------------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event line and flush it."""
        with self._write_lock:
            write_message(self.events, {"event": event, **fields})

    def _emit_done(self, job_id: str, image_path: Path, cached: bool, started: float) -> None:
        self.emit(
            "done",
            job_id=job_id,
            path=str(image_path),
            sidecar=str(image_path.with_suffix(".json")),
            cached=cached,
            seconds=round(time.perf_counter() - started, 4),
        )

    def _read_requests(self, requests: IO[str]) -> None:
        def ignore(line: str, why: str) -> None:
            print(f"render worker: ignoring a bad request line ({why}): {line[:200]!r}", file=sys.stderr)

        for message in read_messages(requests, ignore):
            op = message.get("op")
            if op == "render":
                self._inbox.put(message)
            elif op == "cancel":
                with self._state_lock:
                    if message.get("job_id") == self._current:
                        self._cancel.set()
                    else:
                        self._cancelled_early.add(str(message.get("job_id")))
            elif op == "shutdown":
                self._inbox.put(None)
                return
            else:
                print(f"render worker: unknown op {op!r}", file=sys.stderr)
        # stdin closed: whoever asked for renders is gone; stop what runs and end.
        self._cancel.set()
        self._inbox.put(None)

    def serve(self, requests: IO[str]) -> int:
        """Run jobs until shutdown or end of input; returns the exit status."""
        threading.Thread(target=self._read_requests, args=(requests,), name="requests", daemon=True).start()
        self.emit("ready", pid=os.getpid())
        while (message := self._inbox.get()) is not None:
            if not self.run(message):
                return EXIT_OUT_OF_MEMORY
        return 0

    # -- one job ---------------------------------------------------------------------------------

    def run(self, request: dict[str, Any]) -> bool:
        """Run one render request, emitting its events; False when the worker should exit (out of memory)."""
        job_id = str(request.get("job_id") or "")
        with self._state_lock:
            if job_id in self._cancelled_early:
                self._cancelled_early.discard(job_id)
                self.emit("cancelled", job_id=job_id)
                return True
            self._current = job_id
            self._cancel.clear()
        self.emit("started", job_id=job_id)
        started = time.perf_counter()
        try:
            job = RenderJob.from_request(request)
            MapReader(job.map_dir).verify()
            key = render_key(job)
            hit = cached_render(job, key)
            if hit is not None:
                self._emit_done(job_id, hit, True, started)
                return True
            delay = job.debug_delay_s if self.test_mode else 0.0
            progress = self._progress(job_id, delay)
            if job.model is None:
                image, sidecar = self._sketch(job, progress)
            else:
                image, sidecar = self._diffuse(job, progress)
            seconds = time.perf_counter() - started
            sidecar.setdefault("seconds", round(seconds, 3))  # a diffusion sidecar counts denoising only
            self._emit_done(job_id, save_render(image, renders_dir(job.map_dir), key, sidecar), False, started)
        except JobCancelled:
            self.emit("cancelled", job_id=job_id)
        except BaseException as error:
            if _is_out_of_memory(error):
                self._drop_model()
                self.emit("failed", job_id=job_id, error=f"out of memory: {_one_line(error)}")
                return False
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt, SystemExit: not the job's fault
            if not isinstance(error, ValueError | MapError | OSError | KeyError):
                traceback.print_exc(file=sys.stderr)
                self.emit("failed", job_id=job_id, error=f"{type(error).__name__}: {_one_line(error)}")
            else:
                self.emit("failed", job_id=job_id, error=_one_line(error))
        finally:
            with self._state_lock:
                self._current = None
        return True

    def _progress(self, job_id: str, delay: float) -> Callable[[int, int], None]:
        """A progress callback: throttled events, the cancel check, and (tests only) a delay per step."""
        last = 0.0

        def report(step: int, total: int) -> None:
            nonlocal last
            if delay:
                self._cancel.wait(delay)
            if self._cancel.is_set():
                raise JobCancelled
            now = time.monotonic()
            if now - last >= PROGRESS_INTERVAL_S or step >= total:
                last = now
                self.emit("progress", job_id=job_id, step=int(step), total=int(total))

        return report

    def cancelled(self) -> bool:
        """Whether the running job was asked to stop (the render checks it between steps)."""
        return self._cancel.is_set()

    def _sketch(self, job: RenderJob, progress: Callable[[int, int], None]) -> tuple[Any, dict[str, Any]]:
        from PIL import __version__ as pillow_version

        from pipeline.render.sketch import sketch_font, sketch_map

        reader = MapReader(job.map_dir)
        # A sketch is one step; with a test delay it pretends to take `steps` (to test cancel and limits).
        total = job.steps if job.debug_delay_s and self.test_mode else 1
        for step in range(1, total):
            progress(step, total)
        image = sketch_map(reader, job.node_id, job.size)
        progress(total, total)
        return image, {
            "kind": "sketch",
            "render": job.kind,
            "map_id": reader.manifest.map_id,
            "node": job.node_id,
            "width": job.width,
            "height": job.height,
            "sketch_version": SKETCH_VERSION,
            "font": sketch_font(),
            "note": "sketch — not a diffusion render (no diffusion model configured)",
            "versions": {"python": platform.python_version(), "pillow": pillow_version},
        }

    def _diffuse(self, job: RenderJob, progress: Callable[[int, int], None]) -> tuple[Any, dict[str, Any]]:
        # torch and diffusers load only in here (load_components imports them): sketch jobs and
        # cache hits never pay for them.
        assert job.model is not None
        model = model_key(job.model)
        if self._components is None or self._model != model:
            self._drop_model()
            print(f"render worker: loading {model} (device {self.device})", file=sys.stderr, flush=True)
            loaded = time.perf_counter()
            self._components = load_components(model, self.device, "auto")
            self._model = model
            self.model_loads += 1
            print(f"render worker: loaded in {time.perf_counter() - loaded:.1f} s", file=sys.stderr, flush=True)
        try:
            return render_job(self._components, job, progress=progress, cancelled=self.cancelled)
        except RenderCancelled:
            raise JobCancelled from None

    def _drop_model(self) -> None:
        if self._components is None:
            return
        self._components, self._model = None, None
        gc.collect()
        if "torch" in sys.modules:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def main() -> int:
    """Entry point: claim stdout for the protocol, send everything else to stderr, serve."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Only protocol lines may reach the real stdout: keep a private handle on it and point
    # fd 1 (and sys.stdout) at stderr, so a library's print cannot corrupt the stream.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    requests = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    worker = RenderWorker(
        protocol, test_mode=os.environ.get(ENV_TEST) == "1", device=os.environ.get(ENV_DEVICE, "auto")
    )
    try:
        return worker.serve(requests)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
