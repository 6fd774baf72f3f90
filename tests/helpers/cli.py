"""Running `vista` as a script does: a child process, its exit status, its two streams."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def vista(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m vista_tui.cli ARGS` from the repository root (env: the child's whole environment; default ours)."""
    return subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,  # only bounds a hang: no test asserts on time
    )


def vista_writing_to(stdout: IO[bytes] | int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m vista_tui.cli ARGS` with its stdout on `stdout` (an open file, a terminal's fd…); stderr captured."""
    done = subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        timeout=timeout,  # only bounds a hang: no test asserts on time
    )
    return subprocess.CompletedProcess(done.args, done.returncode, None, done.stderr.decode("utf-8"))


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Fails unless the command failed with one `error: …` line holding every word and no traceback; that line."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
