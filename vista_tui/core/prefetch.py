"""A map's first screen read in a forked child while `vista explore` starts the TUI.

The explorer is one process whose Python runs on one core at a time: importing Textual, then
numpy and pyarrow, reading the tree and the first contexts, and drawing all queue for it. The
reading half needs nothing of the TUI, so `vista explore MAP` forks before it imports Textual:
the child (on the other core) imports pyarrow, reads what the first screen shows and sends it
back pickled through a pipe, while the parent starts the TUI; the map's worker then builds the
model from it (`MapModel.open(path, first)`) and pyarrow loads only after the map is drawn.

The child pays off only on a core the explorer would not use: on a machine whose cores are all
busy it takes the explorer's time instead, so `vista explore` forks only when a core is idle
(`spare_core`).

Whatever goes wrong in the child (an unreadable map, a kill, no fork on this platform), `take`
returns None and the worker reads the map itself, as without a prefetch: its errors, and their
one-line messages, are the ones the explorer always showed. The child writes nothing to the
terminal (its standard streams go to /dev/null) and never runs the parent's exit handlers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vista_tui.mapdata import FirstScreen

FIRST_ROWS = 64
"""Contexts of the root read for the first screen (a 160x48 contexts panel shows ~40)."""


PROC_LOADAVG = Path("/proc/loadavg")
"""Linux's load figures; the fourth field counts the threads runnable at this instant (us included)."""


def spare_core() -> bool:
    """Whether the child would have a core of its own: this machine has more than one, and the
    threads runnable right now (Linux; elsewhere the 1-minute load average) leave one idle.

    With every core busy the child takes the explorer's time instead of an idle core's: at load
    1.8 on two cores the first screen came ~150 ms later. The load average alone lags behind by a
    minute either way (a benchmark's own runs keep it near 1 on an idle machine), so the instant
    count decides where there is one.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform
        cores = os.cpu_count() or 1
    if cores < 2:
        return False
    try:
        running = int(PROC_LOADAVG.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        running = None
    if running is not None:
        return running - 1 <= cores - 2  # the others leave a core besides ours
    try:
        return os.getloadavg()[0] < cores - 0.5
    except OSError:  # no load average either
        return True


def read_first_screen(path: Path, rows: int = FIRST_ROWS) -> FirstScreen:
    """What the map's first screen shows: its tree, the activation and layout columns, the
    context ids (triage), the contexts file's row groups and the root's first `rows` contexts."""
    from vista_tui.core.model import MapModel
    from vista_tui.mapdata import FirstScreen

    model = MapModel.open(path)
    reader = model.reader
    first_rows = [int(row) for row in model.members_by_activation(model.root.node_id)[:rows]]
    return FirstScreen(
        manifest=reader.manifest,
        tree=reader.tree,
        activations=reader.activations,
        layout=reader.layout,
        context_ids=reader.context_ids,
        group_rows=model.contexts.group_rows,
        contexts={row: model.contexts.fetch(row) for row in first_rows},
    )


class MapPrefetch:
    """A forked child reading one map's first screen; `take` waits for it, `close` ends it."""

    def __init__(self, path: Path, pid: int, fd: int) -> None:
        self.path = path
        self._pid: int | None = pid
        self._fd: int | None = fd

    @classmethod
    def start(cls, path: Path) -> MapPrefetch | None:
        """Fork a child reading `path`'s first screen; None where fork is unavailable or fails, or
        where this process runs other threads (a fork copies only the calling one, and any lock
        another holds would stay held in the child): call it before Textual runs, and where
        `spare_core()` says the child has a core of its own.
        """
        if not hasattr(os, "fork") or sys.platform == "win32" or threading.active_count() > 1:
            return None
        read_fd, write_fd = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_fd)
            os.close(write_fd)
            return None
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(path, write_fd)
        os.close(write_fd)
        return cls(path, pid, read_fd)

    def take(self, path: Path) -> FirstScreen | None:
        """The first screen of `path` once the child has read it (blocks: call from a worker);
        None when the child read another map or failed. Once only: later calls return None."""
        fd, self._fd = self._fd, None
        if fd is None:
            return None
        chunks = []
        try:
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        except OSError:
            chunks = []
        finally:
            os.close(fd)
        failed = self._reap(block=True)
        if failed or not chunks or Path(path) != self.path:
            return None
        try:
            return pickle.loads(b"".join(chunks))  # our own child's bytes, through our own pipe
        except Exception:  # a truncated or foreign payload: read the map here instead
            return None

    def close(self) -> None:
        """End the child if it still runs (the app quit before the map was read) and reap it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap(block=True)

    def _reap(self, block: bool) -> bool:
        """Wait for the child; whether it failed (a non-zero exit or a signal)."""
        pid, self._pid = self._pid, None
        if pid is None:
            return True
        try:
            _, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return True
        return not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0)


def _child(path: Path, write_fd: int) -> None:
    """In the forked child: read, send, exit, without touching the terminal or the parent's state."""
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C before the TUI starts ends the child too
        payload = pickle.dumps(read_first_screen(path), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(payload)
        while view:
            view = view[os.write(write_fd, view) :]
        code = 0
    except BaseException:  # anything, a Ctrl-C included: the parent reads the map itself
        code = 1
    finally:
        os._exit(code)
