"""What every pipeline step shares: its id, its record in the manifest, progress reporting."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from importlib import metadata
from typing import Any, Protocol

from vista_tui.mapdata import StepRecord, utc_now


class Progress(Protocol):
    """Reports progress of a long step: `done` of `total` units (total None when unknown)."""

    def __call__(self, done: int, total: int | None = None, note: str = "") -> None: ...


def no_progress(done: int, total: int | None = None, note: str = "") -> None:
    """A Progress that reports nothing."""


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
    """A step config as plain JSON-able parameters."""
    return _jsonable(cfg)


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
