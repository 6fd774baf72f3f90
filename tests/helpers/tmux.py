"""A real terminal for tests: one detached tmux server per test, driven with send-keys, read with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

TMUX = shutil.which("tmux")
if TMUX is None and os.environ.get("CI"):
    raise RuntimeError("tmux is required for the real-terminal tests (.ci/run installs it)")


class Tmux:
    """One detached tmux server (own socket) running one command in an 80x24 pane."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.socket = f"vista-test-{uuid.uuid4().hex[:8]}"
        env = {
            "TERM": "xterm-256color",
            "HOME": str(cwd),
            "PATH": os.environ.get("PATH", ""),
            "HF_HUB_OFFLINE": "1",
            "TEXTUAL_ANIMATIONS": "none",
        }
        env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
        self.run("new-session", "-d", "-x", "80", "-y", "24", "-c", str(cwd), *env_args, " ".join(command))
        self.run("set-option", "-g", "set-clipboard", "on")

    def run(self, *args: str) -> str:
        result = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=30)  # type: ignore[list-item]
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")

    def wait_gone(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text not in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never went away; the screen was:\n{screen}")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", key)
            time.sleep(0.15)

    def kill(self) -> None:
        self.run("kill-server")
