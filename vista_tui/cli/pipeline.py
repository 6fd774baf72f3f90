"""`vista build`, `vista demo`, `vista label`: passed through to `python -m pipeline` in a child process.

A child process, so that this one never imports torch or the pipeline (the explorer that
`demo` opens afterwards starts as light as `vista explore`). The child prints the paths of
the maps it wrote on stdout, one per line; this side prints their summaries, then the store
and the command that opens each map (`open_hint`).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from vista_tui.cli.console import EXIT_INTERRUPTED, fail, stdout
from vista_tui.cli.maps import explore, print_summaries
from vista_tui.mapdata import Store, resolve_store

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
    # The environment as it is: the child decides whether the hub is on (`build` downloads unless --offline or
    # HF_HUB_OFFLINE, `demo` and `label` stay offline).
    with (
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", command, *args], stdout=subprocess.PIPE, text=True
        ) as child,
        interrupts_passed_on(child),
    ):
        assert child.stdout is not None
        paths = [Path(line.strip()) for line in child.stdout if line.strip()]
        code = child.wait()
    return code, paths


def open_hint(paths: Sequence[Path]) -> list[str]:
    """The lines a build ends with: where the maps are, and the exact command that opens each one.

    `--cache DIR` is part of the command only when the store is not the one `vista` finds by
    itself from here (`resolve_store()`), so the line can be pasted as is.
    """
    store = paths[0].parent.parent.absolute()
    default = resolve_store().absolute()
    same = store == default or (store.exists() and default.exists() and os.path.samefile(store, default))
    cache = "" if same else f" --cache {shlex.quote(str(store))}"
    commands = [f"vista explore {shlex.quote(path.name)}{cache}" for path in paths]
    lines = [f"store: {store}", f"open with: {commands[0]}"]
    lines += [f"           {command}" for command in commands[1:]]
    return lines


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
    """`vista build|demo|label`: run the pipeline, print what it built (and, for build and demo, the store and
    how to open each map); the demo then opens its first map."""
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
    if code == 0 and command in ("build", "demo") and paths:
        for line in open_hint(paths):
            stdout.print(line, soft_wrap=True, markup=False)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if code == 0 and command == "demo" and paths and interactive and not no_open:
        return explore(Store(paths[0].parent.parent), paths[0])
    return code
