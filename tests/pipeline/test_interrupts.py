"""pipeline.interrupts without a model: Ctrl+C in code or in a finalizer leaves with one line and 130."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

from pipeline.interrupts import KEPT, installed, interrupted_line
from tests.helpers.cli import ROOT


def run_interrupted(body: str, *, started_ignoring: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `body` under `installed("build", …)` in a fresh interpreter; it interrupts itself.

    `started_ignoring`: the interpreter starts with SIGINT ignored, as a script's `&` job does."""
    script = textwrap.dedent(
        """
        import os, signal, sys
        from pipeline import interrupts

        def say(line):
            print(line, file=sys.stderr)

        with interrupts.installed("build", say):
            try:
        {body}
                print("went on", file=sys.stderr)
            except KeyboardInterrupt:
                interrupts.leave()
        """
    ).format(body=textwrap.indent(textwrap.dedent(body), " " * 8))
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if started_ignoring else None,
    )


@pytest.mark.parametrize(
    "body",
    [
        "os.kill(os.getpid(), signal.SIGINT)\nsignal.pause()\n",
        # where numba's and llvmlite's finalizers get Ctrl+C: Python can only report it, and goes on
        "class Held:\n    def __del__(self):\n        os.kill(os.getpid(), signal.SIGINT)\n        signal.pause()\n"
        "Held()\n",
        # a second Ctrl+C while leaving changes nothing
        "os.kill(os.getpid(), signal.SIGINT)\nos.kill(os.getpid(), signal.SIGINT)\nsignal.pause()\n",
    ],
    ids=["in code", "in a finalizer", "twice"],
)
def test_an_interrupt_leaves_with_one_line_and_130(body: str) -> None:
    done = run_interrupted(body)
    assert done.returncode == 130, done.stderr
    assert done.stderr == interrupted_line("build") + "\n"


def test_installed_restores_the_handler_and_the_hook() -> None:
    handler, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    with installed("label", print):
        assert signal.getsignal(signal.SIGINT) is not handler and sys.unraisablehook is not hook
    assert signal.getsignal(signal.SIGINT) is handler and sys.unraisablehook is hook


def test_each_command_says_what_it_keeps() -> None:
    assert interrupted_line("label") == f"interrupted; {KEPT['label']}" and "labels.jsonl" in KEPT["label"]
    assert interrupted_line("build").startswith("interrupted; the harvest (once finished) and every map")


def test_while_leaving_a_sigint_finds_a_python_handler_that_does_nothing() -> None:
    """Ctrl+C and `vista` passing it on reach the child together. The second one may land while `leave`
    swaps the handler; were the new one SIG_IGN, Python would find a pending signal without a handler and
    print "OSError: Signal 2 ignored due to race condition" with a traceback (seen in CI). So the handler
    while leaving is a Python function, and a signal simulated at that moment is quietly taken."""
    done = run_interrupted(
        """
        import _thread
        def say(line):
            handler = signal.getsignal(signal.SIGINT)
            print("handler is a function:", callable(handler), file=sys.stderr)
            _thread.interrupt_main(signal.SIGINT)  # pending now: its handler runs at the next check
            print(line, file=sys.stderr)
        interrupts._say = say
        os.kill(os.getpid(), signal.SIGINT)
        signal.pause()
        """
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == "handler is a function: True\n" + interrupted_line("build") + "\n"


def test_a_sigint_ignored_from_the_start_stays_ignored() -> None:
    """A non-interactive shell starts its `&` jobs with SIGINT ignored, so that Ctrl+C in the terminal
    is not for them; Python leaves it ignored, and so does the pipeline."""
    done = run_interrupted("os.kill(os.getpid(), signal.SIGINT)\n", started_ignoring=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "went on\n"
