"""What every pipeline step shares: its id, its record in the manifest, progress reporting, reuse.

Every step module has one shape: `STEP` (its name in the manifest), `VERSION` (bumped when
its code changes its output), `DISTRIBUTIONS` (the packages whose versions shape its output),
a frozen `Config` dataclass that validates itself without I/O, and
`run(cfg, <inputs>, *, progress=no_progress, ...)`. A step's id hashes its name, version,
parameters and upstream step id, so a rebuild can tell which outputs it may keep
(`reuse_or_run`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from vista_tui.mapdata import StepRecord, utc_now

if TYPE_CHECKING:
    from vista_tui.mapdata import Manifest, MapReader

Output = TypeVar("Output")


class Progress(Protocol):
    """Reports progress of a long step: `done` of `total` units (total None when unknown)."""

    def __call__(self, done: int, total: int | None = None, note: str = "") -> None: ...


def no_progress(done: int, total: int | None = None, note: str = "") -> None:
    """A Progress that reports nothing."""


class StepModule(Protocol):
    """What the build reads off a step module to id, record and reuse its output."""

    STEP: str
    VERSION: int
    DISTRIBUTIONS: tuple[str, ...]


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def params_of(cfg: Any) -> dict[str, Any]:
    """A step config as plain JSON-able parameters.

    A config may name, in a class attribute `OPTIONAL_PARAMS`, fields left out while they are None
    (an option that is off): adding such an option does not change the ids of what was made without it.
    """
    params = _jsonable(cfg)
    for name in getattr(cfg, "OPTIONAL_PARAMS", ()):
        if params.get(name, 0) is None:
            del params[name]
    return params


def step_id(name: str, version: int, params: Mapping[str, Any], upstream: str | None) -> str:
    """Hash of what determines a step's output: its code version, parameters and input."""
    key = json.dumps(
        {"step": name, "version": version, "params": _jsonable(params), "upstream": upstream},
        sort_keys=True,
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def package_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of the named distributions, plus python's."""
    versions = {"python": platform.python_version()}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def make_record(
    name: str,
    version: int,
    params: Mapping[str, Any],
    upstream: str | None,
    distributions: tuple[str, ...],
    seconds: float,
) -> StepRecord:
    """The manifest entry of a finished step."""
    return StepRecord(
        name=name,
        step_id=step_id(name, version, params, upstream),
        params=_jsonable(params),
        versions=package_versions(*distributions),
        upstream=upstream,
        seconds=round(seconds, 3),
        finished=utc_now(),
    )


@contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t:` … `t[0]` holds the seconds the block took."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def step_id_of(step: StepModule, cfg: object, upstream: str | None) -> str:
    """The id of `step` run with `cfg` on the output of the step with id `upstream`."""
    return step_id(step.STEP, step.VERSION, params_of(cfg), upstream)


def previous_record(
    step: StepModule, cfg: object, upstream: str | None, previous: Manifest | None
) -> StepRecord | None:
    """The previous map's record of `step` when it has the id this run would have, else None."""
    if previous is None:
        return None
    record = previous.steps.get(step.STEP)
    return record if record is not None and record.step_id == step_id_of(step, cfg, upstream) else None


@dataclass(frozen=True)
class StepRun(Generic[Output]):
    """One step's output in a build, its manifest record, and whether the previous map supplied it."""

    output: Output
    record: StepRecord
    reused: bool


def reuse_or_run(
    step: StepModule,
    cfg: object,
    upstream: str | None,
    previous: MapReader | None,
    run: Callable[[], Output],
    reuse: Callable[[MapReader], Output | None],
) -> StepRun[Output]:
    """The previous map's output of `step` when it records the same step id, else `run()`, timed and recorded.

    `previous` is None when nothing may be reused (no map yet, `--force`, or an upstream step
    that was recomputed); `reuse` reads the output from the previous map, None when it has none.
    Reusing keeps the previous record, so the manifest still says when and how it was made.
    """
    record = previous_record(step, cfg, upstream, previous.manifest if previous is not None else None)
    if previous is not None and record is not None:
        kept = reuse(previous)
        if kept is not None:
            return StepRun(kept, record, reused=True)
    with timed() as seconds:
        output = run()
    made = make_record(step.STEP, step.VERSION, params_of(cfg), upstream, step.DISTRIBUTIONS, seconds[0])
    return StepRun(output, made, reused=False)
