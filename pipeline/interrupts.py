"""Ctrl+C in `python -m pipeline`: one line on stderr, exit status 130, and no noise after it.

Catching KeyboardInterrupt in `main` is not enough. numba and llvmlite (under UMAP) keep objects
whose finalizers run at odd moments; a SIGINT that lands while one runs raises KeyboardInterrupt
inside `__del__`, where Python cannot pass it on: it prints "Exception ignored in … KeyboardInterrupt"
and the interrupt is lost, so the build goes on. And after an interrupt, the same finalizers run
again at interpreter exit. So:

- the SIGINT handler raises KeyboardInterrupt once; a later SIGINT (a second Ctrl+C, or `vista`
  passing the signal on to its child) does nothing, so the way out is never interrupted itself
  (while leaving, the handler is a Python function that does nothing: `_ignore` says why);
- a KeyboardInterrupt that a finalizer swallowed reaches `sys.unraisablehook`, which leaves the
  same way instead of printing it;
- leaving (`leave`) stops the live progress display, prints the one line, flushes both streams and
  ends with `os._exit(130)`, which runs no finalizer.

Leaving without finalizers is safe: every file the pipeline writes goes to a temporary name and is
renamed into place, and a harvest or map counts only once its last file is written.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

EXIT_INTERRUPTED = 130
"""Ctrl+C, as a shell reports SIGINT."""
KEPT = {
    "build": "the harvest (once finished) and every map already written are kept; rerun the same command "
    "to go on from there",
    "demo": "the demo SAE (once trained), the harvest (once finished) and every map already written are "
    "kept; rerun the same command to go on from there",
    "atlas": "the atlas's harvest (once finished) and every latent's map already written are kept; rerun the "
    "same command to build only the rest",
    "match": "nothing is written until the match table is whole; rerun the same command",
    "label": "the labels received so far are kept in the map's labels.jsonl; rerun the same command to ask "
    "only for the rest",
}
"""What an interrupted command keeps, by command: the second half of the one line."""
HOLD_ENV = "VISTA_PIPELINE_HOLD_AT"
"""For tests: `STEP:FILE` makes the start of STEP write FILE and wait for a signal (`hold_at`)."""

_command = ""
_say: Callable[[str], None] = print
_interrupted = False
_displays: list[Callable[[], None]] = []
"""How to stop each live display (progress bars) now on screen, so leaving restores the terminal."""


@contextmanager
def installed(command: str, say: Callable[[str], None]) -> Iterator[None]:
    """While inside, Ctrl+C during `command` leaves as the module docstring says (`say` prints the one
    line); on leaving normally, the SIGINT handler and unraisable hook are what they were (`main` may run
    inside another program, such as a test)."""
    global _command, _say, _interrupted
    _command, _say, _interrupted = command, say, False
    # Only the main thread may set handlers. A SIGINT ignored from the start stays ignored, as Python
    # itself leaves it: a script's background job (`vista build … &`) is not for the terminal's Ctrl+C.
    handles = threading.current_thread() is threading.main_thread() and not sigint_ignored()
    previous_handler = signal.signal(signal.SIGINT, _on_sigint) if handles else None
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        if handles:
            signal.signal(
                signal.SIGINT, previous_handler if previous_handler is not None else signal.default_int_handler
            )


def sigint_ignored() -> bool:
    """Whether SIGINT is ignored here (SIG_IGN), as a non-interactive shell leaves it for its `&` jobs."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def interrupted_line(command: str) -> str:
    """The line an interrupted command prints: that it was interrupted, and what it keeps."""
    return f"interrupted; {KEPT.get(command, 'finished work is kept; rerun the same command to go on')}"


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """The first SIGINT raises KeyboardInterrupt; any later one is ignored (the way out is under way)."""
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    raise KeyboardInterrupt


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A SIGINT while leaving: nothing to do.

    A Python function, not `SIG_IGN`: a SIGINT can arrive while `signal.signal` swaps the handler (a
    terminal's Ctrl+C and `vista` passing it on come together). The C handler then marks it pending,
    and when Python finds it pending with `SIG_IGN` installed, it reports "OSError: Signal 2 ignored due
    to race condition" with a traceback. With this handler it finds a function to call.
    """


def _unraisable(unraisable: Any) -> None:
    """A KeyboardInterrupt a finalizer could not raise is the interrupt: leave; anything else as Python would."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        leave()
    sys.__unraisablehook__(unraisable)


@contextmanager
def live_display(stop: Callable[[], None]) -> Iterator[None]:
    """While inside, `leave` calls `stop` first (a progress display that hides the cursor must give it back)."""
    _displays.append(stop)
    try:
        yield
    finally:
        _displays.remove(stop)


def leave() -> NoReturn:
    """Stop the live displays, print the one line, flush, and exit 130 without running finalizers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignore)
    for stop in reversed(_displays):
        with suppress(Exception):  # leaving regardless: the line and the exit status matter more
            stop()
    try:
        _say(interrupted_line(_command))
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(OSError, ValueError):
                stream.flush()
        os._exit(EXIT_INTERRUPTED)


def hold_at(step: str) -> None:
    """For tests: when $VISTA_PIPELINE_HOLD_AT is `STEP:FILE` and `step` is STEP, write FILE and wait for a
    signal, a deterministic moment at which to interrupt a build (no sleeping, no guessing).

    `STEP@finalizer:FILE` waits inside an object's `__del__` instead, where numba's and llvmlite's
    finalizers are when Ctrl+C swallows them: the case `sys.unraisablehook` is here for.
    """
    spec = os.environ.get(HOLD_ENV, "")
    name, _, marker = spec.partition(":")
    held, _, where = name.partition("@")
    if not marker or held != step:
        return
    if where == "finalizer":
        _HeldInFinalizer(marker)  # unreferenced at once: its __del__ runs here, and waits
    else:
        _wait_for_a_signal(marker)


def _wait_for_a_signal(marker: str) -> None:
    """Write `marker`, then wait until a signal handler raises."""
    Path(marker).write_text("held", encoding="utf-8")
    while True:
        signal.pause()


class _HeldInFinalizer:
    """An object whose finalizer waits for a signal (`hold_at`)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __del__(self) -> None:
        _wait_for_a_signal(self.marker)
