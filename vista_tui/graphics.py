"""How images reach the terminal: Kitty graphics, Sixel, half cells or Unicode blocks.

textual-image asks the terminal what it supports; that must happen before Textual takes
the terminal over, so `image_widget_class` is called by the CLI before the app starts.
Over tmux or plain SSH the answer is usually half cells, which work everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

GRAPHICS_MODES = ("auto", "kitty", "sixel", "halfcell", "unicode")
"""Values of `--graphics` (and $VISTA_GRAPHICS)."""

ENV_GRAPHICS = "VISTA_GRAPHICS"
ENV_VIEWER = "VISTA_VIEWER"


def image_widget_class(mode: str | None = None) -> type[Any]:
    """The textual-image widget class for `mode` ('auto' probes the terminal, once, now)."""
    mode = (mode or os.environ.get(ENV_GRAPHICS) or "auto").lower()
    if mode not in GRAPHICS_MODES:
        raise ValueError(f"--graphics must be one of {', '.join(GRAPHICS_MODES)}, got {mode!r}")
    # textual-image probes the terminal on import (Sixel / Kitty queries): only here, only once.
    from textual_image import widget

    return {
        "auto": widget.Image,
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
