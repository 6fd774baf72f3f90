"""The render worker's protocol: JSON lines both ways, and the job status the queue reports.

The queue (`vista_tui.core.render_queue`) and the worker (`python -m pipeline.render.worker`)
read and write lines with the same two helpers. On the worker's stdin, requests:

    {"op": "render", "job_id", "map", "node", "kind", "model", "seed", "steps", "width", "height", "guidance"}
    {"op": "cancel", "job_id"}     {"op": "shutdown"}

(a `render` request is `RenderJob.to_request`). On its stdout, events, and nothing else:

    {"event": "ready"}                      once, at start
    {"event": "started", "job_id"}
    {"event": "progress", "job_id", "step", "total"}
    {"event": "done", "job_id", "path", "sidecar", "cached", "seconds"}
    {"event": "failed", "job_id", "error"}                one line
    {"event": "cancelled", "job_id"}

`JobStatus` is what the queue knows of a job; `RenderEvent` is a status stamped with what just
happened, as `RenderQueue` hands it to its listener. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal

from vista_tui.mapdata.renders import RenderJob

ENV_TEST = "VISTA_RENDER_TEST"
"""Set to 1 in the worker's environment to honour `RenderJob.debug_delay_s` (tests only)."""

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
EventKind = Literal["queued", "started", "progress", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


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
        """Whether the job ended (done, failed or cancelled)."""
        return self.state in FINISHED

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0

    @property
    def percent(self) -> int:
        """Progress in whole percent."""
        return round(100 * self.fraction)


@dataclass(frozen=True)
class RenderEvent(JobStatus):
    """Something that happened to a job (`kind`), with the job's status right after it."""

    kind: EventKind = field(kw_only=True)
    """queued, started, progress, done, failed or cancelled (the state is `running` for started and progress)."""

    @classmethod
    def of(cls, status: JobStatus, kind: EventKind) -> RenderEvent:
        """The event `kind` carrying `status`."""
        return cls(**{f.name: getattr(status, f.name) for f in fields(JobStatus)}, kind=kind)


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
