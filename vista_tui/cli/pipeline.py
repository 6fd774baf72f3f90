"""`vista build`, `vista demo`, `vista label`: passed through to `python -m pipeline` in a child process.

A child process, so that this one never imports torch or the pipeline (the explorer that
`demo` opens afterwards starts as light as `vista explore`). The child prints the paths of
the maps it wrote on stdout, one per line; this side prints their summaries.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from vista_tui.cli.console import EXIT_INTERRUPTED, fail
from vista_tui.cli.maps import explore, print_summaries
from vista_tui.mapdata import Store

PIPELINE_COMMANDS = {
    "build": "harvest contexts of latents and build their maps (see `vista build --help`)",
    "demo": "build the offline demo maps (MiniLM + a small SAE over stdlib docstrings) and open them",
    "label": "name every node with an LLM (OpenAI-compatible endpoint or local model): label, explanation, visual prompt",
}
"""The commands the pipeline's own parser handles, with their one-line help for `vista --help`."""


def pipeline_missing() -> str | None:
    """Why the pipeline cannot run in this environment, or None when it can."""
    for module, extra in (("pipeline", "pipeline"), ("torch", "pipeline"), ("umap", "pipeline")):
        if importlib.util.find_spec(module) is None:
            return f"the pipeline is not installed here ({module} is missing): pip install 'vista-tui[{extra}]'"
    return None


def run_pipeline(command: str, args: Sequence[str]) -> tuple[int, list[Path]]:
    """Run `python -m pipeline COMMAND ARGS`; returns its exit code and the map paths it printed."""
    if any(arg in ("-h", "--help") for arg in args):
        return subprocess.call([sys.executable, "-m", "pipeline", command, *args]), []
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    with (
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", command, *args], stdout=subprocess.PIPE, text=True, env=env
        ) as child,
        interrupts_passed_on(child),
    ):
        assert child.stdout is not None
        paths = [Path(line.strip()) for line in child.stdout if line.strip()]
        code = child.wait()
    return code, paths


@contextmanager
def interrupts_passed_on(child: subprocess.Popen[str]) -> Iterator[None]:
    """While the child runs, Ctrl+C is its to handle: this process waits for it to leave (one line, exit 130)
    instead of dying first with a traceback, and passes on a SIGINT sent to this process alone.

    Ctrl+C in a terminal reaches both processes; the child ignores the copy passed on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def pass_on(signum: int, frame: FrameType | None) -> None:
        """Send the SIGINT on to the child, while it runs."""
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGINT, pass_on)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def cmd_pipeline(command: str, args: Sequence[str]) -> int:
    """`vista build|demo|label`: run the pipeline, print what it built; the demo then opens its first map."""
    missing = pipeline_missing()
    if missing:
        return fail(missing)
    no_open = "--no-open" in args
    try:
        code, paths = run_pipeline(command, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if code != 0 or any(arg in ("-h", "--help") for arg in args):
        return code
    code = print_summaries(paths)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if code == 0 and command == "demo" and paths and interactive and not no_open:
        return explore(Store(paths[0].parent.parent), paths[0])
    return code
