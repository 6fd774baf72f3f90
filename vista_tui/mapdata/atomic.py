"""Crash-safe file writes (temporary file, fsync, rename), the timestamps written with them, and the
checked read of the JSON manifests written so (maps, atlases, match tables).

The standard library (and this package's errors) only: the CLI commands that write small files
(annotations exports, imported explanations) use these without loading numpy or pyarrow.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from vista_tui.mapdata.errors import MapCorruptError, MapNotFoundError, SchemaVersionError

Parsed = TypeVar("Parsed")


def utc_now() -> str:
    """ISO-8601 UTC time to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> int:
    """Write `path` through a temporary file in the same directory, fsync, rename; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path.stat().st_size


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write_json(path: Path, payload: Any) -> int:
    data = json.dumps(payload, indent=2, sort_keys=False, allow_nan=True).encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(data))


_APPEND_LOCK = threading.Lock()
"""Serialises appends from the worker threads of one process (each line is written whole)."""


def append_line(path: Path, line: str) -> None:
    """Append one line to a JSON-lines cache, flushed and fsynced before this returns.

    A kill mid-line leaves a torn last line, which readers skip; the next line starts on a
    fresh line rather than continuing the torn one.
    """
    with _APPEND_LOCK, path.open("a", encoding="utf-8") as handle:
        if handle.tell() > 0:
            with path.open("rb") as check:
                check.seek(-1, os.SEEK_END)
                if check.read(1) != b"\n":
                    handle.write("\n")
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def jsonl_objects(path: Path) -> Iterator[Any]:
    """The parsed lines of a JSON-lines cache, in order; a torn or undecodable line is skipped.

    OSError when the file cannot be read at all (the caller names the file and what to do).
    """
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def read_json_manifest(
    folder: Path,
    filename: str,
    *,
    noun: str,
    unfinished: str,
    id_field: str | None,
    version: int,
    hint: str,
    parse: Callable[[dict[str, Any]], Parsed],
) -> Parsed:
    """`folder/filename`, a JSON manifest with a `schema_version` (and `id_field`), parsed by `parse`.

    Every failure is one line naming the file and ending with `hint`: no folder (MapNotFoundError),
    no manifest (`unfinished` says why it may be missing), bad JSON, no VISTA `noun` manifest, a bad
    field (MapCorruptError), another format version (SchemaVersionError).
    """
    folder = Path(folder)
    path = folder / filename
    if not folder.is_dir():
        raise MapNotFoundError(f"no {noun} at {folder}: the directory does not exist")
    if not path.is_file():
        raise MapCorruptError(f"{folder} has no {filename} ({unfinished}): {hint}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MapCorruptError(f"{path} is not valid JSON ({_one_line(error)}): {hint}") from None
    required = ("schema_version",) if id_field is None else ("schema_version", id_field)
    if not isinstance(raw, dict) or any(key not in raw for key in required):
        raise MapCorruptError(f"{path} is not a VISTA {noun} manifest (no {' or '.join(required)}): {hint}")
    if raw["schema_version"] != version:
        raise SchemaVersionError(
            f"{noun} {folder.name} uses {noun} format version {raw['schema_version']!r}, this vista reads "
            f"version {version}: upgrade vista-tui or {hint}"
        )
    try:
        return parse(raw)
    except (KeyError, TypeError, ValueError) as error:
        raise MapCorruptError(f"{path} is missing or has a bad field ({_one_line(error)}): {hint}") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
