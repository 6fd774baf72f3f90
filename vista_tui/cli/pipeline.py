"""`vista build`, `vista demo`, `vista label`, `vista score`, `vista atlas`, `vista match`: passed through to `python -m pipeline` in a child process.

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
from vista_tui.mapdata import ATLASES_DIR, Store, resolve_store

PIPELINE_COMMANDS = {
    "build": "harvest contexts of latents and build their maps (see `vista build --help`)",
    "demo": "build the offline demo maps and atlas (MiniLM + a small SAE over stdlib docstrings) and open the atlas",
    "label": "name every node with an LLM (OpenAI-compatible endpoint or local model): label, explanation, visual prompt",
    "score": "score every reading of every node against the contexts (detection, fuzzing: an LLM; embedding: offline)",
    "atlas": "an atlas of every latent of an SAE: `vista atlas build …` (see its --help), `vista atlas list`",
    "match": "match two SAEs' latents by decoder direction (top-k neighbours, one-to-one): `vista match SAE_A SAE_B`",
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


def atlas_hint(atlas_dir: Path) -> list[str]:
    """The lines an atlas build ends with: the store, and the command that opens the atlas's latent browser."""
    store = atlas_dir.parent.parent.absolute()
    return [f"store: {store}", f"open with: vista explore {shlex.quote(atlas_dir.name)}{_cache_flag(store)}"]


def match_hint(table_dir: Path) -> list[str]:
    """The lines `vista match` ends with: the store, and the match table's folder in it."""
    return [f"store: {table_dir.parent.parent.absolute()}", f"table: {table_dir.absolute()}"]


def _cache_flag(store: Path) -> str:
    """` --cache STORE` unless `store` is the one `vista` finds by itself from here (`resolve_store()`)."""
    default = resolve_store().absolute()
    same = store == default or (store.exists() and default.exists() and os.path.samefile(store, default))
    return "" if same else f" --cache {shlex.quote(str(store))}"


def list_atlases(args: Sequence[str]) -> int:
    """`vista atlas list [--cache DIR]`: every atlas in the store, newest first, with what it is of."""
    cache = None
    rest = list(args)
    if rest[:1] == ["--cache"] and len(rest) > 1:
        cache, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--cache="):
        cache, rest = rest[0].split("=", 1)[1], rest[1:]
    if rest:
        return fail(f"vista atlas list takes only --cache DIR, got {' '.join(rest)}")
    store = Store(resolve_store(cache))
    entries = store.list_atlases()
    if not entries:
        stdout.print(f"no atlases in {store.root} — build one with `vista atlas build --help`", markup=False)
        return 0
    for entry in entries:
        manifest = entry.manifest
        if manifest is None:
            stdout.print(f"{entry.atlas_id}  (unreadable: {entry.error})", markup=False, soft_wrap=True)
            continue
        stdout.print(
            f"{entry.atlas_id}  {len(manifest.latents):,} latents  {manifest.model} · {manifest.hook} · "
            f"{manifest.sae}  {manifest.n_tokens_seen:,} tokens",
            markup=False,
            soft_wrap=True,
        )
    return 0


def open_hint(paths: Sequence[Path]) -> list[str]:
    """The lines a build ends with: where the maps are, and the exact command that opens each one.

    `--cache DIR` is part of the command only when the store is not the one `vista` finds by
    itself from here (`resolve_store()`), so the line can be pasted as is.
    """
    store = paths[0].parent.parent.absolute()
    cache = _cache_flag(store)
    commands = [f"vista explore {shlex.quote(path.name)}{cache}" for path in paths]
    lines = [f"store: {store}", f"open with: {commands[0]}"]
    lines += [f"           {command}" for command in commands[1:]]
    return lines


@contextmanager
def interrupts_passed_on(child: subprocess.Popen[str]) -> Iterator[None]:
    """While the child runs, Ctrl+C is its to handle: this process waits for it to leave (one line, exit 130)
    instead of dying first with a traceback, and passes on a SIGINT sent to this process alone.

    Ctrl+C in a terminal reaches both processes; the child ignores the copy passed on. A SIGINT
    ignored from the start (a script's background job) stays ignored here and, inherited, in the child.
    """
    # Only the main thread may set handlers; an ignored SIGINT is left as it is (the same test as
    # pipeline.interrupts.sigint_ignored, which this package may not import).
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
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
    how to open each map and the demo's atlas); in a terminal the demo then opens its atlas's latent browser (its
    first map when it built no atlas)."""
    if command == "atlas" and list(args[:1]) == ["list"]:
        return list_atlases(args[1:])  # reads manifests only: no pipeline, no child
    missing = pipeline_missing()
    if missing:
        return fail(missing)
    no_open = "--no-open" in args
    try:
        code, paths = run_pipeline(command, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if any(arg in ("-h", "--help") for arg in args):
        return code
    atlases = [path for path in paths if path.parent.name == ATLASES_DIR]
    paths = [path for path in paths if path not in atlases]
    if command == "atlas":
        # Exit 1 (some maps failed) still names the atlas: what was built is there to open.
        for atlas_dir in atlases:
            for line in atlas_hint(atlas_dir):
                stdout.print(line, soft_wrap=True, markup=False)
        return code
    if command == "match":
        if code == 0 and paths:
            for line in match_hint(paths[-1]):
                stdout.print(line, soft_wrap=True, markup=False)
        return code  # `match` gave its summary on stderr
    if code != 0 or command == "score":
        return code  # `score` said what it scored, on stderr
    code = print_summaries(paths)
    if code == 0 and command in ("build", "demo") and paths:
        for line in open_hint(paths):
            stdout.print(line, soft_wrap=True, markup=False)
    if code == 0 and command == "demo" and atlases:
        for line in atlas_hint(atlases[0]):
            stdout.print(line, soft_wrap=True, markup=False)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if code == 0 and command == "demo" and interactive and not no_open:
        if atlases:  # the demo opens on its atlas's latent browser
            return explore(Store(atlases[0].parent.parent), atlases[0])
        if paths:
            return explore(Store(paths[0].parent.parent), paths[0])
    return code
