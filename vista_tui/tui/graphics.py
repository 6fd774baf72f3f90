"""How images reach the terminal: Kitty graphics, Sixel, half cells or Unicode blocks.

What the terminal can draw must be asked before Textual takes the terminal over (Textual's
input thread would swallow the answers). textual-image asks on import, in two round trips,
the second waiting out a 100 ms timeout on every terminal without Kitty graphics (tmux, most
SSH sessions), and its import loads PIL and numpy. So `probe_graphics` asks here instead, in
one round trip that needs only the standard library (the Kitty graphics query, then Device
Attributes, which every terminal answers), before the app starts; textual-image is imported
only when the first image is shown, with its own probe switched off (`image_widget_class`).
Over tmux or plain SSH the answer is usually half cells, which work everywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GRAPHICS_MODES = ("auto", "kitty", "sixel", "halfcell", "unicode")
"""Values of `--graphics` (and $VISTA_GRAPHICS)."""

ENV_GRAPHICS = "VISTA_GRAPHICS"
ENV_VIEWER = "VISTA_VIEWER"

KITTY_QUERY = "\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\"
"""Kitty graphics protocol query (a 1x1 image that is never stored): Kitty answers `_Gi=31;OK`."""
DA1_QUERY = "\x1b[c"
"""Primary Device Attributes: every terminal answers `ESC [ ? … c`; a 4 among the values is Sixel."""
_DA1_REPLY = re.compile(r"\x1b\[\?([0-9;]*)c")
_KITTY_OK = re.compile(r"\x1b_Gi=31;OK\x1b\\")


def graphics_mode(requested: str | None = None) -> str:
    """The `--graphics` value to use: the argument, else $VISTA_GRAPHICS, else 'auto' (validated)."""
    mode = (requested or os.environ.get(ENV_GRAPHICS) or "auto").lower()
    if mode not in GRAPHICS_MODES:
        raise ValueError(f"--graphics must be one of {', '.join(GRAPHICS_MODES)}, got {mode!r}")
    return mode


def parse_graphics_reply(reply: str) -> str | None:
    """What a terminal's answer to KITTY_QUERY + DA1_QUERY says it draws; None until DA1 has arrived.

    Sixel before Kitty graphics, as textual-image orders them (terminals that answer both
    draw its Sixel images better); otherwise half cells.
    """
    da1 = _DA1_REPLY.search(reply)
    if da1 is None:
        return None
    if "4" in da1.group(1).split(";"):
        return "sixel"
    if _KITTY_OK.search(reply[: da1.start()]):
        return "kitty"
    return "halfcell"


def probe_graphics(timeout: float = 1.0) -> str:
    """Ask the terminal what it draws ('sixel', 'kitty', 'halfcell'); 'unicode' when not on a terminal.

    One write, one answer: the terminal answers the queries in order, so Device Attributes
    arriving ends the wait (no timeout is waited out). Call before Textual starts.
    """
    stdin, stdout = sys.__stdin__, sys.__stdout__
    if stdin is None or stdout is None or not stdin.isatty() or not stdout.isatty():
        return "unicode"
    import termios
    import tty

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    reply = ""
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # no echo, no line buffering: the answer is not shown
        os.write(stdout.fileno(), (KITTY_QUERY + DA1_QUERY).encode())
        deadline = time.monotonic() + timeout
        while (mode := parse_graphics_reply(reply)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return "halfcell"  # no answer at all: draw what works everywhere
            reply += os.read(fd, 1024).decode("latin-1")
    except OSError:
        return "halfcell"
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
    if mode in ("sixel", "kitty"):
        _seed_cell_size()
    return mode


def _seed_cell_size() -> None:
    """Have textual-image measure the cell size now, while the terminal can still answer (it caches it)."""
    with contextlib.suppress(Exception):
        from textual_image._terminal import get_cell_size  # light: no PIL, no numpy

        get_cell_size()


class _NotATerminal:
    """sys.__stdout__ as textual-image sees it while imported inside the app: not a terminal."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _no_terminal_queries() -> Iterator[None]:
    """Import textual-image without its terminal probe (Textual owns the terminal by then)."""
    real = sys.__stdout__
    sys.__stdout__ = _NotATerminal(real)  # type: ignore[misc]
    try:
        yield
    finally:
        sys.__stdout__ = real  # type: ignore[misc]


def image_widget_class(mode: str) -> type[Any]:
    """The textual-image widget class that draws `mode` ('auto' is resolved by `probe_graphics` first).

    Imports textual-image (PIL, numpy) on first use, with its own terminal probe switched off.
    """
    if mode == "auto":
        raise ValueError("resolve 'auto' with probe_graphics() before the app starts")
    with _no_terminal_queries():  # only its first import probes; later ones find it in sys.modules
        from textual_image import widget
    return {
        "kitty": widget.TGPImage,
        "sixel": widget.SixelImage,
        "halfcell": widget.HalfcellImage,
        "unicode": widget.UnicodeImage,
    }[mode]


def viewer_command(path: Path) -> list[str] | None:
    """The command that opens `path` in an external viewer, or None when there is none here.

    $VISTA_VIEWER first (a command line; the path is appended), else the desktop's opener
    when this process can reach a display, else None (the TUI then shows the path and copies
    it to the clipboard with OSC 52, which reaches the laptop through SSH and tmux).
    """
    custom = os.environ.get(ENV_VIEWER, "").strip()
    if custom:
        import shlex

        return [*shlex.split(custom), str(path)]
    if sys.platform == "darwin" and shutil.which("open"):
        return ["open", str(path)]
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if has_display and shutil.which("xdg-open"):
        return ["xdg-open", str(path)]
    return None


def open_externally(path: Path) -> list[str] | None:
    """Start the external viewer on `path` (detached); returns the command, or None if there is none."""
    command = viewer_command(path)
    if command is None:
        return None
    subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return command
