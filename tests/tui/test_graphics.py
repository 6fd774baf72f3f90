"""The terminal graphics probe, against a pseudo-terminal that answers like real terminals do."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vista_tui.tui.graphics import DA1_QUERY, KITTY_QUERY, graphics_mode, parse_graphics_reply

REPO = Path(__file__).resolve().parents[2]

TMUX_DA1 = "\x1b[?1;2c"
"""tmux 3.3a: VT100 with advanced video, no Sixel."""
SIXEL_DA1 = "\x1b[?62;4;6;22c"
"""xterm -ti vt340, foot, WezTerm: a 4 among the attributes."""
KITTY_OK = "\x1b_Gi=31;OK\x1b\\"


def test_parse_reply() -> None:
    assert parse_graphics_reply("") is None
    assert parse_graphics_reply(KITTY_OK) is None  # Device Attributes not there yet: keep waiting
    assert parse_graphics_reply(TMUX_DA1) == "halfcell"
    assert parse_graphics_reply(SIXEL_DA1) == "sixel"
    assert parse_graphics_reply(KITTY_OK + "\x1b[?62;22c") == "kitty"
    assert parse_graphics_reply("x" + KITTY_OK + "\x1b[?62;4c") == "sixel"  # Sixel first, as textual-image
    assert parse_graphics_reply("\x1b[?64;14c") == "halfcell"  # 14 is not 4


def test_graphics_mode_validates() -> None:
    assert graphics_mode("Kitty") == "kitty"
    with pytest.raises(ValueError, match="--graphics must be one of"):
        graphics_mode("ascii-art")


def run_in_terminal(code: str, answer: str | None, timeout: float = 20) -> tuple[str, bytes]:
    """Run `code` in a child on a fresh pty; answer its first query with `answer`. (child's last line, all it wrote)."""
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    written = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                written += chunk
                if answer is not None and not answered and DA1_QUERY.encode() in written:
                    os.write(master, answer.encode())
                    answered = True
            elif child.poll() is not None:
                break
    finally:
        child.kill()
        child.wait()
        os.close(master)
    text = written.decode("utf-8", "replace")
    result = text.rpartition("RESULT ")[2].splitlines()[0].strip() if "RESULT " in text else ""
    return result, written


PROBE = "from vista_tui.tui.graphics import probe_graphics; print('RESULT', probe_graphics(timeout=2.0))"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(TMUX_DA1, "halfcell"), (SIXEL_DA1, "sixel"), (KITTY_OK + "\x1b[?62;22c", "kitty")],
    ids=["tmux", "sixel-terminal", "kitty"],
)
def test_probe_asks_once_and_reads_the_answer(answer: str, expected: str) -> None:
    result, written = run_in_terminal(PROBE, answer)
    assert result == expected
    # One write holding both queries; the answer is not echoed back to the screen.
    assert (KITTY_QUERY + DA1_QUERY).encode() in written
    assert written.count(DA1_QUERY.encode()) == 1
    assert b"?62" not in written.split(b"RESULT")[0] and b"?1;2c" not in written.split(b"RESULT")[0]


def test_probe_gives_up_on_a_silent_terminal() -> None:
    # The child prints its RESULT only once the probe has given up waiting for an answer that never
    # comes; a probe that waited for ever would leave no RESULT before the harness kills the child.
    result, _ = run_in_terminal(PROBE.replace("2.0", "0.3"), None)
    assert result == "halfcell"


def test_probe_off_a_terminal_draws_unicode() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=REPO, check=True
    )
    assert result.stdout.split()[-1] == "unicode"


def test_textual_image_is_imported_without_asking_the_terminal() -> None:
    """Inside the app the terminal belongs to Textual: importing textual-image must send no query."""
    code = (
        "import sys; from vista_tui.tui.graphics import image_widget_class; "
        "cls = image_widget_class('halfcell'); "
        "print('RESULT', cls.__name__, sys.__stdout__.isatty())"
    )
    result, written = run_in_terminal(code, TMUX_DA1)
    assert result == "HalfcellImage True"  # the real stdout is back afterwards
    assert DA1_QUERY.encode() not in written and b"\x1b_G" not in written and b"\x1b[16t" not in written
