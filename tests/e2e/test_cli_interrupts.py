"""`vista build|demo|label|…` passes a SIGINT sent to it alone on to its pipeline child, unless SIGINT
was ignored from the start (a script's `&` job), which it leaves ignored, as Python itself does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from vista_tui.cli.pipeline import interrupts_passed_on


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    """A stand-in for the pipeline child: a Python process that waits (Ctrl+C ends it)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], text=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_a_sigint_to_vista_alone_reaches_its_child(child: subprocess.Popen[str]) -> None:
    with interrupts_passed_on(child):
        os.kill(os.getpid(), signal.SIGINT)  # handled here, on the next bytecode: passed on
        child.wait(timeout=30)
    assert child.returncode != 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as it was


def test_a_sigint_ignored_from_the_start_stays_ignored(child: subprocess.Popen[str]) -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_passed_on(child):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)  # dropped by the kernel: nothing to pass on
            with pytest.raises(subprocess.TimeoutExpired):
                child.wait(timeout=1)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
