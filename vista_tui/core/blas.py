"""One BLAS thread in the explorer's process, and the environment its child processes get.

numpy's OpenBLAS starts a thread per core, with its buffers, when numpy is imported: 40-60 ms of
the ~100 ms that import takes on two cores, paid in the map's worker before the map is drawn.
The explorer does no BLAS-sized arithmetic (the pipeline and the render worker are processes of
their own), so `vista explore` asks for one thread before anything imports numpy. A value the user
set is kept, and child processes get the environment without the ones set here.
"""

from __future__ import annotations

import os

THREAD_LIMITS = {"OPENBLAS_NUM_THREADS": "1"}
"""What the explorer sets when the user has not (OpenBLAS reads it once, when numpy loads it)."""

_set_here: dict[str, str] = {}


def one_blas_thread() -> None:
    """Set THREAD_LIMITS in this process's environment where unset (before numpy's import to matter)."""
    for name, value in THREAD_LIMITS.items():
        if name not in os.environ:
            os.environ[name] = value
            _set_here[name] = value


def child_environ() -> dict[str, str]:
    """This process's environment without what `one_blas_thread` set: what a child process inherits."""
    env = dict(os.environ)
    for name, value in _set_here.items():
        if env.get(name) == value:
            del env[name]
    return env
