"""TUI figures: cold start in a real terminal, key-to-repaint latency, peak memory.

    .venv/bin/python -m benchmarks.tui [--repeats 5] [--n-big 100000] [--keys 200] [--only abcde] [--profile] [--busy]
                                       [--against REV]

Prints medians of --repeats runs and ratios against baselines measured in the same run;
nothing is asserted. Synthetic maps (tests/helpers/synthetic_map.py) are cached under the temp dir,
keyed by N and by the generator's and the map writer's source, so reruns skip the ~20 s build of 100k. Every
figure is wall time on a shared machine: the load average is printed with each part. --busy runs
every part beside a one-core busy loop (`while True: pass` in a process of its own), a machine at
load ≈ 1 more than it had.

(a) Cold start. Each run is a fresh process in its own pseudo-terminal (os.openpty, 80x24
    set with TIOCSWINSZ, TERM=xterm-256color). The clock runs from just before the spawn
    until the bytes written to the terminal, escape sequences stripped, contain the map's
    latent ("latent 42": the first screen, the map's header drawn from its manifest while
    the map is read) or, for the baseline, the text of a minimal Textual app (a Static on a
    pushed Screen). A second figure, "map drawn", runs until the explorer itself is on the
    screen (its tree's title, "clusters", drawn in the same frame as the tree, labels and
    the root's first contexts): the map read and drawn. Also printed for it: the median of each
    round's own ratio (a round runs every variant once) and its quartiles, the spread a single
    run pair shows. `vista explore MAP --cache DIR` runs as a
    user runs it: argument parsing, verify, imports, the map opened in its worker. One row opens
    a copy of the map without its opening file (vista_tui/mapdata/opening.py), as a map written
    before that file existed: the tree and the first contexts then come from the parquet files.
    Compiled bytecode comes from a cache of the benchmark's own (PYTHONPYCACHEPREFIX), as
    an installed package has it, also where PYTHONDONTWRITEBYTECODE is set; one row runs
    without it. One row hides pandas, which pyarrow imports on `to_numpy` when installed
    (it is no dependency of the TUI). One discarded warm-up run of each variant, then the
    variants alternate. Also printed: the first byte each process wrote (imports done,
    driver started), the CPU time of each process (from start to quit, all threads: steadier
    than wall time on a shared machine), and the import of
    `vista_tui.tui.app` alone (`python -X importtime`: self time by top-level package, and the
    biggest cumulative entries). --against REV adds `vista explore` as git revision REV has it
    (its `vista_tui` extracted to a temporary directory, run from there).
(b) Key-to-repaint latency, in a child process: `app.run_test(size=(160, 48))` on the
    --n-big map. The app's `_display` is wrapped on the instance to encode each compositor
    update into the terminal string as the real driver would (the headless driver skips
    that) and to timestamp it. A key's latency runs from `pilot.press` to the last repaint
    before the app goes quiet (no paint, no pending refresh and no contexts worker for
    QUIET_S), i.e. the frame that shows the key's whole effect, Textual's frame timer
    (1/60 s) included. When the key made the contexts list read rows in its worker, the
    latency ends at the last repaint before the first rows were posted (the list drawn
    with placeholder lines), and the time until they are drawn is printed apart as
    "fill". CPU is the process CPU time per key. Keys: tree j/k over the root's children, tree
    l/h (open a sense, back to it, fold it), then the root's contexts: j and k by line, pagedown
    and pageup, end and home. Baseline, same method: j/k on a bare OptionList. --profile runs
    the TUI part under cProfile (UI thread only).
(c) Peak RSS (ru_maxrss from os.wait4 on a headless run_test child): the minimal Textual
    app; the TUI with the --n-big map just opened; the TUI after `end` on the root's
    contexts, once the last rows are read and drawn (with and without pandas).
(e) The latent browser on a synthetic atlas of ATLAS_N (16,384) latents (tests/helpers/atlas_fixture.py,
    written with `write_atlas`, maps for three latents; cached like the maps): the first screen of
    `vista explore ATLAS` in an 80x24 pty (until the header's latent count is shown, then until the
    position line under the table is, i.e. the table drawn), against the minimal Textual app; and,
    in a child, key-to-repaint latency at 80x24 as in (b): j/k by line, pagedown/pageup, end/home
    over the 16,384 rows, and `o` (a re-sort of all of them).
(d) Minimap drawing, in a child process: the widget alone in an 80x24 run_test app, on the
    SMALL_N map and the --n-big map. Per map: the background raster (every point, again for
    each pane size: 80x24's pane, 160x48's, a full 160x48 screen), a change of the selected
    node at 80x24's pane size (leaf, root, leaf, root; per change), and the strips of one frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import json
import re
import select
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(tempfile.gettempdir()) / "vista-bench-tui"
"""Cached maps, the bytecode cache of the measured children, the pandas blocker."""
TERMINAL_SIZE = (80, 24)
"""Columns and lines of the pseudo-terminal of the cold-start runs."""
CELL_PIXELS = (16, 32)
"""Pixels of a cell in the pty's reported size (what tmux 3.3a reports here)."""
ALT_SCREEN = b"\x1b[?1049h"
"""Textual's first write: the driver has started (imports done, app constructed)."""
DA1_REPLY = b"\x1b[?1;2c"
"""tmux 3.3a's answer to Device Attributes (ESC [ c): VT100 with advanced video, no Sixel."""
PILOT_SIZE = (160, 48)
"""Columns and lines of the run_test app of the latency and memory runs."""
LATENT = 42
ROOT_LABEL = f"latent {LATENT}"
"""What the map's first screen draws: its header (and, once read, the tree's root row)."""
MAP_DRAWN = "clusters"
"""The explorer's tree title: on the screen once the map is read and drawn (not on the first screen)."""
MINIMAL_TEXT = "minimal textual app ready"
QUIET_S = 0.05
"""A key has settled when nothing was painted or posted for this long (> one 1/60 s frame)."""
SMALL_N = 4000
"""Contexts of the cold-start map."""
TEXTUAL_IMPORT = "import textual.app, textual.screen, textual.widgets; from textual.widgets import Static"
"""What the minimal app imports, for the whole-process import figure."""
EXPLORE_IMPORTS = "import vista_tui.cli, vista_tui.tui.app"
"""What `vista explore MAP` imports before its first screen (textual-image loads with the first image)."""

MINIMAL_APP = f"""
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static


class MinimalScreen(Screen):
    def compose(self) -> ComposeResult:
        yield Static({MINIMAL_TEXT!r})


class MinimalApp(App):
    def on_mount(self) -> None:
        self.push_screen(MinimalScreen())


if __name__ == "__main__":
    MinimalApp().run()
"""

_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1bP[^\x1b]*\x1b\\"  # DCS
    r"|\x1b[()][0-9A-Za-z]"  # charset
    r"|\x1b[=>78NOc]"
)


# -- shared helpers -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    """95th percentile (inclusive interpolation)."""
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def bench_store(n: int) -> tuple[Path, str]:
    """A store holding the synthetic map of `n` contexts, built in a child (numpy, pyarrow) once and cached."""
    result = subprocess.run(child_command("store", str(n)), capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"building the {n}-context map failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    store, map_id = lines[-1].split("\t")
    return Path(store), map_id


def child_store(n: int) -> None:
    """Build the map if the cache lacks it (keyed by N and by the generator's and writer's source); print store and map id."""
    from tests.helpers.synthetic_map import build_synthetic_map
    from vista_tui.mapdata import MapError, MapReader

    digest = hashlib.sha256()
    for part in ("tests/helpers/synthetic_map.py", "vista_tui/mapdata/writer.py", "vista_tui/mapdata/opening.py"):
        digest.update((REPO / part).read_bytes())
    root = BENCH_DIR / digest.hexdigest()[:10]
    map_id = f"syn-{n}"
    map_dir = root / "maps" / map_id
    try:
        MapReader(map_dir).verify()
    except MapError:
        shutil.rmtree(map_dir, ignore_errors=True)
        start = time.perf_counter()
        build_synthetic_map(map_dir, n=n, seed=0, latent=LATENT)
        print(f"  built {map_dir} in {time.perf_counter() - start:.1f} s")
    print(f"{root}\t{map_id}")


def child_command(*args: str) -> list[str]:
    """The command line of a child of this benchmark (`--child KIND ARGS…`)."""
    return [sys.executable, "-m", "benchmarks.tui", "--child", *args]


def child_result(command: list[str]) -> tuple[Any, str]:
    """Run a child that prints its figures as `RESULT <json>`: the figures, and what it wrote on stderr."""
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=child_env())
    if result.returncode != 0:
        raise RuntimeError(f"{command[4]} child failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT ")), result.stderr


# -- (a) cold start in a pseudo-terminal ----------------------------------------------------------


def child_env(bytecode: bool = True, hide_pandas: bool = False) -> dict[str, str]:
    """Environment of a measured child: TERM set, no size or Textual overrides, bytecode cached in the temp dir.

    bytecode: compiled modules are read from and written to a cache of this benchmark's own
    (PYTHONPYCACHEPREFIX), as an installed package would have them, whatever
    PYTHONDONTWRITEBYTECODE says; False runs with the caller's own setting.
    hide_pandas: a `pandas` that raises ImportError comes first on the path, as on an install
    of the TUI alone (pandas is no dependency of vista-tui; pyarrow imports it when it can).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES") and not k.startswith("TEXTUAL")}
    env["TERM"] = "xterm-256color"
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(BENCH_DIR / "pycache")
    if hide_pandas:
        hidden = BENCH_DIR / "hide-pandas"
        (hidden / "pandas").mkdir(parents=True, exist_ok=True)
        (hidden / "pandas" / "__init__.py").write_text('raise ImportError("pandas hidden by benchmarks.tui")\n')
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hidden), env.get("PYTHONPATH")]))
    return env


def run_in_pty(
    command: list[str], marker: str, env: dict[str, str], timeout: float = 60, then: str | None = None
) -> dict[str, float]:
    """Spawn `command` in a fresh 80x24 pseudo-terminal; seconds to Textual's start, to `marker`, peak RSS, CPU.

    With `then`, also the seconds until that text is on the screen too ("complete"; else the
    same as "painted"); the app is asked to quit once everything awaited has appeared.
    """
    import fcntl
    import termios

    master, slave = os.openpty()
    cols, lines = TERMINAL_SIZE
    # Pixel size too, as tmux and most terminals report it (textual-image reads cells from it).
    fcntl.ioctl(
        slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, cols, cols * CELL_PIXELS[0], lines * CELL_PIXELS[1])
    )
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True
    )
    os.close(slave)
    output = bytearray()
    driver_up = found = complete = None
    deadline = start + timeout
    quit_sent = False
    answered = 0
    exited: tuple[int, Any] | None = None
    try:
        while time.perf_counter() < deadline and exited is None:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                now = time.perf_counter()
                output += chunk
                if driver_up is None and ALT_SCREEN in output:
                    driver_up = now
                asked = output.count(b"\x1b[c") + output.count(b"\x1b[0c")
                if asked > answered:  # a terminal answers Device Attributes; tmux 3.3a answers nothing else asked
                    os.write(master, DA1_REPLY * (asked - answered))
                    answered = asked
                text = _ESCAPES.sub("", output.decode("utf-8", errors="replace"))
                if found is None and marker in text:
                    found = now
                if found is not None and complete is None and (then is None or then in text):
                    complete = now
            if complete is not None and not quit_sent:
                os.write(master, b"\x11")  # ctrl+q: both apps quit on it
                quit_sent = True
                deadline = min(deadline, time.perf_counter() + 10)
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)  # wait4, not poll: it gives the child's rusage
            if pid:
                exited = status, usage
    finally:
        if exited is None:
            process.kill()
            _, status, usage = os.wait4(process.pid, 0)
            exited = status, usage
        process.returncode = os.waitstatus_to_exitcode(exited[0])
        os.close(master)
    if complete is None or found is None or driver_up is None:
        tail = _ESCAPES.sub("", output.decode("utf-8", errors="replace"))[-2000:]
        awaited = marker if then is None else f"{marker!r} then {then!r}"
        raise RuntimeError(f"{awaited!r} never appeared from {command}; the terminal showed:\n{tail}")
    return {
        "driver": driver_up - start,
        "painted": found - start,
        "complete": complete - start,
        "max_rss_mb": exited[1].ru_maxrss / 1024,
        "cpu": exited[1].ru_utime + exited[1].ru_stime,
    }


def revision_tree(revision: str) -> Path:
    """The package `vista_tui` as git `revision` has it, in a temporary directory (for PYTHONPATH)."""
    where = Path(tempfile.mkdtemp(prefix="vista-bench-rev-"))
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "vista_tui"], cwd=REPO, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    return where


def store_without_opening(store: Path, map_id: str) -> Path:
    """A store beside `store` holding a copy of the map without its opening file, as a map written before it.

    The explorer then reads the tree and the first contexts from the parquet files (and imports
    pyarrow) before its first frame.
    """
    from vista_tui.mapdata.opening import OPENING_FILE

    copy = store.with_name(store.name + "-no-opening")
    map_dir = copy / "maps" / map_id
    if not map_dir.is_dir():
        shutil.copytree(store / "maps" / map_id, map_dir, ignore=shutil.ignore_patterns(OPENING_FILE, "*.sqlite*"))
        manifest = json.loads((map_dir / "manifest.json").read_text())
        del manifest["files"]["opening"]
        (map_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def bench_cold_start(store: Path, map_id: str, repeats: int, against: str | None = None) -> None:
    """(a): the variants of `vista explore` and the minimal app, alternating, each in a fresh pty."""
    vista = [sys.executable, "-m", "vista_tui.cli", "explore", map_id, "--cache", str(store)]
    minimal = [sys.executable, "-c", MINIMAL_APP]
    then: dict[str, tuple[list[str], str, str | None, dict[str, str]]] = {}
    if against is not None:
        env = child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(revision_tree(against)), env.get("PYTHONPATH")]))
        # -P: the working directory (this checkout) does not go first on sys.path, PYTHONPATH does
        then[f"  vista explore as {against} has it"] = ([sys.executable, "-P", *vista[1:]], ROOT_LABEL, MAP_DRAWN, env)
    parquet_only = [*vista[:-1], str(store_without_opening(store, map_id))]
    variants = {
        "minimal Textual app": (minimal, MINIMAL_TEXT, None, child_env()),
        f"vista explore {map_id}": (vista, ROOT_LABEL, MAP_DRAWN, child_env()),
        "  same, the map without opening.npz": (parquet_only, ROOT_LABEL, MAP_DRAWN, child_env()),
        "  same, --graphics halfcell": ([*vista, "--graphics", "halfcell"], ROOT_LABEL, MAP_DRAWN, child_env()),
        "  same, pandas hidden (TUI-only install)": (vista, ROOT_LABEL, MAP_DRAWN, child_env(hide_pandas=True)),
        "  same, no bytecode cache (this shell)": (vista, ROOT_LABEL, MAP_DRAWN, child_env(bytecode=False)),
        **then,
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for command, marker, then, env in variants.values():
        run_in_pty(command, marker, env, then=then)  # warm-up: page cache, bytecode cache
    for i in range(repeats):
        names = list(variants) if i % 2 == 0 else list(variants)[::-1]
        for name in names:
            command, marker, then, env = variants[name]
            runs[name].append(run_in_pty(command, marker, env, then=then))

    def figure(name: str, key: str) -> float:
        return median([run[key] for run in runs[name]])

    baseline = figure("minimal Textual app", "painted")
    print(f"\n(a) cold start to first painted screen, {TERMINAL_SIZE[0]}x{TERMINAL_SIZE[1]} pty, median of {repeats}")
    print(f"  first screen when the terminal shows {ROOT_LABEL!r} (vista: the map's header) or {MINIMAL_TEXT!r}")
    print(f"  map drawn when it also shows {MAP_DRAWN!r} (the explorer: tree, labels, contexts read and drawn)")
    print(
        f"  {'':<42} {'Textual up':>10} {'first screen':>12} {'ratio':>6} {'map drawn':>9} {'ratio':>6} {'peak RSS':>9}"
        f" {'CPU':>7}"
    )
    for name in variants:
        print(
            f"  {name:<42} {figure(name, 'driver') * 1000:7.0f} ms {figure(name, 'painted') * 1000:9.0f} ms"
            f" {figure(name, 'painted') / baseline:5.2f}x {figure(name, 'complete') * 1000:6.0f} ms"
            f" {figure(name, 'complete') / baseline:5.2f}x {figure(name, 'max_rss_mb'):6.0f} MB"
            f" {figure(name, 'cpu') * 1000:4.0f} ms"
        )
    vista_name = f"vista explore {map_id}"
    spread = ", ".join(f"{run['painted'] * 1000:.0f}" for run in runs[vista_name])
    drawn = ", ".join(f"{run['complete'] * 1000:.0f}" for run in runs[vista_name])
    print(
        f"  ratio vista / minimal: first screen {figure(vista_name, 'painted') / baseline:.2f}x (target <= 1.5x; "
        f"runs {spread} ms), map drawn {figure(vista_name, 'complete') / baseline:.2f}x (runs {drawn} ms)"
    )
    # Each round runs every variant once: a round's own ratio leaves out drifts slower than a round.
    # On this project's 2-core machine it spread about as widely (quartiles 1.56x-1.98x over 31 rounds):
    # the noise there is run to run, so read it beside the ratio of medians above.
    paired = sorted(
        mine["complete"] / base["painted"]
        for mine, base in zip(runs[vista_name], runs["minimal Textual app"], strict=True)
    )
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else [paired[0]] * 3
    print(
        f"  map drawn, paired by round (vista's run / the minimal app's run in the same round): median "
        f"{median(paired):.2f}x, quartiles {quartiles[0]:.2f}x–{quartiles[2]:.2f}x (target <= 1.8x)"
    )


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def import_times(code: str, repeats: int) -> list[list[tuple[str, int, float, float]]]:
    """`python -X importtime -c CODE`, --repeats times: (module, nesting, self ms, cumulative ms) per import."""
    runs = []
    for _ in range(repeats):
        # Output to a pipe, not a terminal: textual-image's terminal probe does not run, only its import.
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=child_env(),
            check=True,
        )
        entries = []
        for line in result.stderr.splitlines():
            match = IMPORT_LINE.match(line)
            if match:
                depth = len(match.group(3)) // 2
                entries.append((match.group(4), depth, int(match.group(1)) / 1000, int(match.group(2)) / 1000))
        runs.append(entries)
    return runs


def by_package(runs: list[list[tuple[str, int, float, float]]]) -> list[tuple[str, float]]:
    """Median self time per top-level package, biggest first."""
    times: dict[str, list[float]] = {}
    for entries in runs:
        sums: dict[str, float] = {}
        for name, _, self_ms, _ in entries:
            sums[name.split(".")[0]] = sums.get(name.split(".")[0], 0.0) + self_ms
        for package, value in sums.items():
            times.setdefault(package, []).append(value)
    return sorted(((package, median(values)) for package, values in times.items()), key=lambda item: -item[1])


def bench_imports(repeats: int) -> None:
    """Where the import of `vista_tui.tui.app` goes; and of everything `vista explore` imports."""
    runs = import_times("import vista_tui.tui.app", repeats)
    totals = [sum(e[2] for e in entries) for entries in runs]
    typical = runs[totals.index(sorted(totals)[len(totals) // 2])]
    print(f"\n  import of vista_tui.tui.app alone (python -X importtime, median of {repeats}): {median(totals):.0f} ms")
    print("  self time by top-level package: " + ", ".join(f"{p} {ms:.0f} ms" for p, ms in by_package(runs)[:8]))
    print("  biggest cumulative entries (median run; indent = nesting):")
    shown = [e for e in typical if e[1] <= 3 and e[0] != "vista_tui.tui.app"]
    for name, depth, _, cumulative in sorted(shown, key=lambda e: -e[3])[:14]:
        print(f"    {cumulative:7.1f} ms  {'  ' * depth}{name}")
    explore_runs = import_times(EXPLORE_IMPORTS, repeats)
    explore_total = median([sum(e[2] for e in entries) for entries in explore_runs])
    print(f"  everything `vista explore` imports ({EXPLORE_IMPORTS}): {explore_total:.0f} ms")
    print(
        "    self time by top-level package: " + ", ".join(f"{p} {ms:.0f} ms" for p, ms in by_package(explore_runs)[:8])
    )
    wall = {}
    for label, code in (("vista explore's imports", EXPLORE_IMPORTS), ("minimal app's imports", TEXTUAL_IMPORT)):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=REPO, env=child_env(), check=True)
            seconds.append(time.perf_counter() - start)
        wall[label] = median(seconds)
    print("  whole process `python -c IMPORTS`: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in wall.items()))


# -- (b) key-to-repaint latency (child process) ---------------------------------------------------


class KeyTimer:
    """Timestamps of repaints and of contexts posted by the list's worker, and the per-key latencies."""

    def __init__(self) -> None:
        self.paints: list[float] = []
        self.loads: list[float] = []
        self.latency: dict[str, list[float]] = {}
        self.fill: dict[str, list[float]] = {}
        self.paints_per_key: dict[str, list[int]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.no_paint: dict[str, int] = {}

    def record(self, action: str, start: float, settled: float, cpu: float) -> None:
        """Latency (and fill, when the worker posted rows) of a key pressed at `start` that settled at `settled`."""
        self.cpu.setdefault(action, []).append(cpu)
        paints = [t for t in self.paints if start < t <= settled]
        loads = [t for t in self.loads if start < t <= settled]
        self.paints_per_key.setdefault(action, []).append(len(paints))
        if not paints:
            self.no_paint[action] = self.no_paint.get(action, 0) + 1
            return
        shown = paints[-1]
        if loads:
            before = [t for t in paints if t < loads[0]]
            shown = before[-1] if before else next(t for t in paints if t > loads[0])
            self.fill.setdefault(action, []).append(paints[-1] - start)
        self.latency.setdefault(action, []).append(shown - start)


def time_paints(app: Any, timer: KeyTimer) -> Any:
    """Wrap `app._display` so that each update is encoded as a real terminal driver would, and timestamped."""
    display = app._display

    def timed_display(screen: Any, renderable: Any) -> None:
        painting = renderable is not None and not app._batch_count
        if painting and app.is_headless and hasattr(renderable, "render_segments"):
            # The headless driver drops the update before encoding it: encode it here, as LinuxDriver would.
            renderable.render_segments(app.console)
        display(screen, renderable)
        if painting:
            timer.paints.append(time.perf_counter())

    # On the instance, not a subclass: a subclass defined here would look for the app's CSS_PATH here.
    app._display = timed_display
    return app


async def settle(app: Any, timer: KeyTimer, since: float, timeout: float = 10) -> float:
    """Wait until nothing is painted or posted for QUIET_S and no refresh or contexts read is pending."""
    import asyncio

    from textual.worker import WorkerState

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.003)
        screen = app.screen
        pending = (
            screen._dirty_widgets or screen._layout_required or screen._repaint_required or screen._scroll_required
        )
        working = any(
            w.group == "contexts" and w.state in (WorkerState.PENDING, WorkerState.RUNNING) for w in app.workers
        )
        last = max([since, *timer.paints[-1:], *timer.loads[-1:]])
        if not pending and not working and time.perf_counter() - last >= QUIET_S:
            return time.perf_counter()
    raise TimeoutError("the app never settled")


async def press_timed(pilot: Any, timer: KeyTimer, key: str, action: str | None) -> None:
    """Press `key`, wait for the app to settle, and record its latency under `action` (None: not recorded)."""
    start, cpu = time.perf_counter(), time.process_time()
    await pilot.press(key)
    settled = await settle(pilot.app, timer, start)
    if action is not None:
        timer.record(action, start, settled, time.process_time() - cpu)


async def latency_vista(store: Path, map_id: str, keys: int, timer: KeyTimer) -> None:
    """(b): tree j/k and l/h, then the root's contexts by line and by page, each key timed."""
    from vista_tui.mapdata import Store
    from vista_tui.tui.app import VistaApp
    from vista_tui.tui.screens.map import MapScreen
    from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
    from vista_tui.tui.widgets.contexts import ContextList

    # Timestamp each batch of rows the list's worker posts (its constructor runs in the worker's thread).
    original_init = ContextList.RowsLoaded.__init__

    def rows_loaded_init(self: Any, contexts: Any) -> None:
        timer.loads.append(time.perf_counter())  # posted from the worker's thread
        original_init(self, contexts)

    ContextList.RowsLoaded.__init__ = rows_loaded_init  # type: ignore[method-assign]
    app = time_paints(VistaApp(Store(store), store / "maps" / map_id), timer)
    async with app.run_test(size=PILOT_SIZE) as pilot:
        while not isinstance(app.screen, MapScreen):
            await pilot.pause(0.05)
        await settle(app, timer, time.perf_counter())
        screen = app.screen
        tree = screen.query_one("#tree", ClusterTreeView)
        n_children = len(app.model.children(app.model.root.node_id))

        # Tree j/k: down the root's children and back up; each step shows another node's contexts.
        for _ in range(0, keys, n_children):
            for _ in range(n_children):
                await press_timed(pilot, timer, "j", "tree j (next node)")
            for _ in range(n_children):
                await press_timed(pilot, timer, "k", "tree k (previous node)")

        # Tree l/h: open a sense (cursor to its first child), back to it, fold it, on to the next sense.
        await press_timed(pilot, timer, "j", None)
        senses = [n for n in app.model.children(app.model.root.node_id) if app.model.children(n)]
        for i in range(keys):
            await press_timed(pilot, timer, "l", "tree l (open, to first child)")
            await press_timed(pilot, timer, "h", "tree h (to parent)")
            await press_timed(pilot, timer, "h", "tree h (fold)")
            step = "j" if (i % len(senses)) < len(senses) - 1 else None
            if step:
                await press_timed(pilot, timer, "j", None)
            else:
                for _ in range(len(senses) - 1):
                    await press_timed(pilot, timer, "k", None)

        # Contexts: the root's 100k, scrolled by line and by page.
        screen.jump_to(app.model.root.node_id)
        await settle(app, timer, time.perf_counter())
        assert tree.selected == app.model.root.node_id
        contexts = screen.query_one("#contexts", ContextList)
        contexts.focus()
        await settle(app, timer, time.perf_counter())
        for _ in range(keys):
            await press_timed(pilot, timer, "j", "contexts j (line down)")
        for _ in range(keys):
            await press_timed(pilot, timer, "k", "contexts k (line up)")
        for _ in range(keys):
            await press_timed(pilot, timer, "pagedown", "contexts pagedown")
        for _ in range(keys):
            await press_timed(pilot, timer, "pageup", "contexts pageup")
        await press_timed(pilot, timer, "end", "contexts end (to the last of 100k)")
        await press_timed(pilot, timer, "home", "contexts home")


async def latency_baseline(keys: int, timer: KeyTimer) -> None:
    """(b)'s baseline: j/k on a bare six-option OptionList, timed the same way."""
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.widgets import OptionList

    class BareList(OptionList):
        BINDINGS: ClassVar = [Binding("j", "cursor_down"), Binding("k", "cursor_up")]

    class BareApp(App[None]):
        def compose(self) -> ComposeResult:
            yield BareList(*[f"option {i}" for i in range(6)])

    app = time_paints(BareApp(), timer)
    async with app.run_test(size=PILOT_SIZE) as pilot:
        await settle(app, timer, time.perf_counter())
        for _ in range(0, keys, 5):
            for _ in range(5):
                await press_timed(pilot, timer, "j", BASELINE_ACTION)
            for _ in range(5):
                await press_timed(pilot, timer, "k", "baseline: bare OptionList k")


def child_latency(store: Path, map_id: str, keys: int, profile: bool) -> None:
    """The (b) child: baseline, then the TUI (under cProfile with --profile); prints its figures as JSON."""
    import asyncio

    timer = KeyTimer()
    asyncio.run(latency_baseline(keys, timer))
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(latency_vista(store, map_id, keys, timer))
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(r"vista_tui|_refresh_layout|render_update|_on_timer_update", 30)
    else:
        asyncio.run(latency_vista(store, map_id, keys, timer))
    result = {
        "latency": timer.latency,
        "fill": timer.fill,
        "no_paint": timer.no_paint,
        "paints_per_key": {k: statistics.mean(v) for k, v in timer.paints_per_key.items()},
        "cpu": {k: median(v) for k, v in timer.cpu.items()},
    }
    print("RESULT " + json.dumps(result))


BASELINE_ACTION = "baseline: bare OptionList j"


def print_latencies(figures: dict[str, Any]) -> None:
    """The latency table of a (b) or (e) child: per action, keys, median, p95, max, CPU, paints per key.

    With (b)'s baseline in the figures, also each action's median, p95 and CPU over the bare list's `j`
    (the same run, so the same load).
    """
    base = figures["latency"].get(BASELINE_ACTION)
    ratios = f" {'x bare: median':>14} {'p95':>5} {'CPU':>5}" if base else ""
    print(f"  {'action':<38} {'keys':>5} {'median':>8} {'p95':>8} {'max':>8} {'CPU':>8} {'paints/key':>10}{ratios}")
    for action, values in figures["latency"].items():
        ms = [v * 1000 for v in values]
        row = (
            f"  {action:<38} {len(ms):5d} {median(ms):6.1f}ms {p95(ms):6.1f}ms {max(ms):6.1f}ms"
            f" {figures['cpu'][action] * 1000:6.1f}ms {figures['paints_per_key'][action]:10.2f}"
        )
        if base:
            row += (
                f" {median(values) / median(base):14.1f} {p95(values) / p95(base):5.1f}"
                f" {figures['cpu'][action] / figures['cpu'][BASELINE_ACTION]:5.1f}"
            )
        print(row)
    for action, count in figures["no_paint"].items():
        print(f"  {action}: {count} keys painted nothing")


def bench_latency(store: Path, map_id: str, n: int, keys: int, profile: bool) -> None:
    """(b): run the latency child and print its figures."""
    command = child_command("latency", str(store), map_id, str(keys)) + (["--profile"] if profile else [])
    figures, stderr = child_result(command)
    print(f"\n(b) key-to-repaint latency, run_test {PILOT_SIZE[0]}x{PILOT_SIZE[1]}, map of {n:,} contexts")
    print("  press -> last repaint before quiet (frame timer and terminal encoding included); target p95 <= 30 ms")
    print("  CPU: median process CPU time per key (all threads, pilot and polling included; see the baseline)")
    print_latencies(figures)
    if figures["fill"]:
        print("  fill: press -> rows read by the worker drawn (keys that showed placeholders only)")
        for action, values in figures["fill"].items():
            ms = [v * 1000 for v in values]
            print(f"  {action:<38} {len(ms):5d} {median(ms):6.1f}ms {p95(ms):6.1f}ms {max(ms):6.1f}ms")
    if profile:
        print("\n  cProfile of the TUI run (UI thread; own time, then cumulative):\n" + stderr[-12000:])


# -- (c) peak memory (child process) --------------------------------------------------------------


async def memory_run(which: str, store: Path, map_id: str) -> None:
    """The (c) child: the minimal app, or the TUI with the map open (`vista-open`) or after `end` (`vista-end`)."""
    if which == "minimal":
        namespace: dict[str, Any] = {}
        exec(MINIMAL_APP, namespace)  # the same app as the cold-start baseline
        app = namespace["MinimalApp"]()
        async with app.run_test(size=PILOT_SIZE) as pilot:
            await pilot.pause(0.2)
        return
    from vista_tui.mapdata import Store
    from vista_tui.tui.app import VistaApp
    from vista_tui.tui.screens.map import MapScreen
    from vista_tui.tui.widgets.contexts import ContextList

    app = VistaApp(Store(store), store / "maps" / map_id)
    async with app.run_test(size=PILOT_SIZE) as pilot:
        while not isinstance(app.screen, MapScreen):
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        if which == "vista-end":
            contexts = app.screen.query_one("#contexts", ContextList)
            contexts.focus()
            await pilot.press("end")
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline:
                await pilot.pause(0.05)
                top = contexts.scroll_offset.y
                visible = contexts.rows[top : top + contexts.scrollable_content_region.height]
                if contexts.cursor == len(contexts.rows) - 1 and all(
                    contexts.prepared(int(row)) is not None for row in visible
                ):
                    break
            else:
                raise TimeoutError("the last contexts were never read")
            await pilot.pause(0.2)


def bench_memory(store: Path, map_id: str, n: int, repeats: int) -> None:
    """(c): peak RSS of each memory child, from os.wait4."""
    peaks: dict[str, list[float]] = {"minimal": [], "vista-open": [], "vista-end": [], "vista-end-no-pandas": []}
    for _ in range(repeats):
        for which in peaks:
            env = child_env(hide_pandas=which.endswith("no-pandas"))
            command = child_command("memory", which.removesuffix("-no-pandas"), str(store), map_id)
            process = subprocess.Popen(command, cwd=REPO, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                raise RuntimeError(f"memory child {which} failed ({process.returncode})")
            peaks[which].append(usage.ru_maxrss / 1024)
    base = median(peaks["minimal"])
    print(f"\n(c) peak RSS (ru_maxrss of a headless run_test child), median of {repeats}")
    labels = {
        "minimal": "minimal Textual app",
        "vista-open": f"vista, {n:,}-context map opened",
        "vista-end": f"vista, {n:,} map, root contexts scrolled to the end",
        "vista-end-no-pandas": "  same, pandas hidden (TUI-only install)",
    }
    for which, values in peaks.items():
        print(f"  {labels[which]:<52} {median(values):7.0f} MB  {median(values) / base:5.2f}x minimal")
    print(f"  the map's cost at the end: {median(peaks['vista-end']) - base:.0f} MB over the minimal app")


# -- (d) minimap drawing (child process) ----------------------------------------------------------

MINIMAP_PANES = ((46, 12), (78, 22), (158, 46))
"""Cells of the minimap: its pane at 80x24, at 160x48, and a whole 160x48 screen."""


async def minimap_figures(map_dir: Path, repeats: int) -> dict[str, float]:
    """(d) on one map: seconds per minimap step, median of `repeats`, the widget mounted at 80x24."""
    from textual.app import App, ComposeResult

    from vista_tui.core.model import MapModel
    from vista_tui.tui.widgets.minimap import Minimap

    model = MapModel.open(map_dir)
    minimap = Minimap(model)

    class MinimapHost(App[None]):
        def compose(self) -> ComposeResult:
            yield minimap

    # The smallest sub-sense: a cluster two levels down, whose parent is a sense, not the root.
    sense = next(c for c in model.children(model.root.node_id) if model.nodes[c].kind == "cluster")
    leaf, root = model.children(sense)[-1], model.root.node_id
    runs: dict[str, list[float]] = {}
    async with MinimapHost().run_test(size=TERMINAL_SIZE) as pilot:
        minimap.show_node(root)
        await pilot.pause()
        for _ in range(repeats):
            for cols, rows in MINIMAP_PANES:
                start = time.perf_counter()
                minimap._background = None  # a new size: raster every point again
                minimap.compute_frame(cols, rows)
                runs.setdefault(f"background {cols}x{rows}", []).append(time.perf_counter() - start)
            minimap._background = None
            frame = minimap.compute_frame(78, 22)
            start = time.perf_counter()
            for node in (leaf, root, leaf, root):
                minimap.node_id = node
                frame = minimap.compute_frame(78, 22)
            runs.setdefault("node change 78x22", []).append((time.perf_counter() - start) / 4)
            start = time.perf_counter()
            minimap._build_strips(frame)
            runs.setdefault("strips 78x22", []).append(time.perf_counter() - start)
    return {step: median(seconds) for step, seconds in runs.items()}


def child_minimap(map_dirs: list[Path], repeats: int) -> None:
    """The (d) child: the figures of each map, as JSON."""
    import asyncio

    figures = {str(map_dir): asyncio.run(minimap_figures(map_dir, repeats)) for map_dir in map_dirs}
    print("RESULT " + json.dumps(figures))


def bench_minimap(maps: dict[int, Path], repeats: int) -> None:
    """(d): run the minimap child on the maps (contexts -> map directory) and print its figures."""
    figures, _ = child_result(child_command("minimap", str(repeats), *(str(path) for path in maps.values())))
    print(f"\n(d) minimap drawing, widget alone at {TERMINAL_SIZE[0]}x{TERMINAL_SIZE[1]}, median of {repeats}")
    for n, path in maps.items():
        row = figures[str(path)]
        print(f"  minimap {n:>7,} points: " + ", ".join(f"{step} {s * 1e3:.1f} ms" for step, s in row.items()))


# -- (e) the latent browser on a 16,384-latent atlas -----------------------------------------------

ATLAS_N = 16_384
ATLAS_ID = "syn-atlas-16k"
ATLAS_DRAWN = f"1 of {ATLAS_N:,}"
"""The position line under the table: drawn in the frame that draws the table."""


def bench_atlas_store() -> Path:
    """A store holding the synthetic atlas, built in a child once and cached (keyed by the builder's source)."""
    result = subprocess.run(child_command("atlas-store"), capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"building the atlas failed:\n{result.stderr[-3000:]}")
    lines = result.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    return Path(lines[-1])


def child_atlas_store() -> None:
    """Build the atlas if the cache lacks it; print the store."""
    from tests.helpers.atlas_fixture import build_atlas
    from vista_tui.mapdata import MapError, Store, read_atlas

    source = b"".join((REPO / "tests" / "helpers" / name).read_bytes() for name in ("atlas_fixture.py", "small_map.py"))
    root = BENCH_DIR / f"atlas-{hashlib.sha256(source).hexdigest()[:10]}"
    try:
        read_atlas(Store(root).atlas_path(ATLAS_ID))
    except MapError:
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        build_atlas(root, ATLAS_ID, n=ATLAS_N, maps=(0, 1, 2))
        print(f"  built the {ATLAS_N:,}-latent atlas in {time.perf_counter() - start:.1f} s")
    print(root)


async def latency_atlas(store: Path, keys: int, timer: KeyTimer) -> None:
    """(e): the browser's keys on the atlas at 80x24, each timed."""
    from vista_tui.mapdata import Store
    from vista_tui.tui.app import VistaApp
    from vista_tui.tui.screens.atlas import AtlasScreen

    app = time_paints(VistaApp(Store(store), atlas_path=Store(store).atlas_path(ATLAS_ID)), timer)
    async with app.run_test(size=TERMINAL_SIZE) as pilot:
        while not isinstance(app.screen, AtlasScreen):
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await settle(app, timer, time.perf_counter())
        for _ in range(keys):
            await press_timed(pilot, timer, "j", "atlas j (line down)")
        for _ in range(keys):
            await press_timed(pilot, timer, "k", "atlas k (line up)")
        for _ in range(keys):
            await press_timed(pilot, timer, "pagedown", "atlas pagedown")
        for _ in range(keys):
            await press_timed(pilot, timer, "pageup", "atlas pageup")
        for _ in range(max(1, keys // 20)):
            await press_timed(pilot, timer, "end", f"atlas end (to the last of {ATLAS_N:,})")
            await press_timed(pilot, timer, "home", "atlas home")
        for _ in range(max(6, keys // 10)):
            await press_timed(pilot, timer, "o", f"atlas o (re-sort {ATLAS_N:,})")


def child_atlas_latency(store: Path, keys: int) -> None:
    """The (e) child: the browser's keys; prints its figures as JSON."""
    import asyncio

    timer = KeyTimer()
    asyncio.run(latency_atlas(store, keys, timer))
    result = {
        "latency": timer.latency,
        "no_paint": timer.no_paint,
        "paints_per_key": {k: statistics.mean(v) for k, v in timer.paints_per_key.items()},
        "cpu": {k: median(v) for k, v in timer.cpu.items()},
    }
    print("RESULT " + json.dumps(result))


def bench_atlas(store: Path, keys: int, repeats: int) -> None:
    """(e): the browser's first screen in a pty, against the minimal app, and its key latency."""
    vista = [sys.executable, "-m", "vista_tui.cli", "explore", ATLAS_ID, "--cache", str(store)]
    minimal = [sys.executable, "-c", MINIMAL_APP]
    header = f"{ATLAS_N:,} latents"
    run_in_pty(vista, header, child_env(), then=ATLAS_DRAWN)  # warm-up
    run_in_pty(minimal, MINIMAL_TEXT, child_env())
    runs: dict[str, list[dict[str, float]]] = {"minimal": [], "vista": []}
    for _ in range(repeats):
        runs["minimal"].append(run_in_pty(minimal, MINIMAL_TEXT, child_env()))
        runs["vista"].append(run_in_pty(vista, header, child_env(), then=ATLAS_DRAWN))
    baseline = median([run["painted"] for run in runs["minimal"]])
    painted = [run["painted"] for run in runs["vista"]]
    complete = [run["complete"] for run in runs["vista"]]
    print(f"\n(e) the latent browser on a {ATLAS_N:,}-latent atlas, {TERMINAL_SIZE[0]}x{TERMINAL_SIZE[1]}")
    print(f"  first screen, median of {repeats} (target < 1 s):")
    print(f"    minimal Textual app            {baseline * 1000:7.0f} ms")
    print(
        f"    vista explore {ATLAS_ID}  header {median(painted) * 1000:5.0f} ms, table drawn "
        f"{median(complete) * 1000:5.0f} ms ({median(complete) / baseline:.2f}x the minimal app; runs "
        + ", ".join(f"{t * 1000:.0f}" for t in complete)
        + f" ms), peak RSS {median([run['max_rss_mb'] for run in runs['vista']]):.0f} MB"
    )
    figures, _ = child_result(child_command("atlas-latency", str(store), str(keys)))
    print(f"  key-to-repaint latency, run_test {TERMINAL_SIZE[0]}x{TERMINAL_SIZE[1]} (as (b); target p95 <= 30 ms)")
    print_latencies(figures)


# -- main -----------------------------------------------------------------------------------------


def run_child(args: list[str]) -> None:
    """Dispatch `--child KIND ARGS…`."""
    kind, rest = args[0], args[1:]
    if kind == "store":
        child_store(int(rest[0]))
    elif kind == "latency":
        child_latency(Path(rest[0]), rest[1], int(rest[2]), "--profile" in rest)
    elif kind == "memory":
        import asyncio

        asyncio.run(memory_run(rest[0], Path(rest[1]), rest[2]))
    elif kind == "atlas-store":
        child_atlas_store()
    elif kind == "atlas-latency":
        child_atlas_latency(Path(rest[0]), int(rest[1]))
    elif kind == "minimap":
        child_minimap([Path(path) for path in rest[1:]], int(rest[0]))
    else:
        raise SystemExit(f"unknown child {kind!r}")


def main() -> None:
    """Run the parts asked for and print their figures."""
    # The measured children re-enter here: `python -m benchmarks.tui --child KIND ARGS…`.
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (median; default: 5)")
    parser.add_argument("--n-big", type=int, default=100_000, help="contexts of the big map (default: 100000)")
    parser.add_argument("--keys", type=int, default=200, help="key presses per action in (b) (default: 200)")
    parser.add_argument("--only", default="abcde", help="which parts to run, e.g. 'a' or 'be' (default: abcde)")
    parser.add_argument("--profile", action="store_true", help="(b) under cProfile; prints the top functions")
    parser.add_argument("--busy", action="store_true", help="run beside a one-core busy loop (load + 1)")
    parser.add_argument(
        "--against", metavar="REV", help="(a): also run `vista explore` as git revision REV has it, alternating"
    )
    args = parser.parse_args()

    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.2f} python={sys.version.split()[0]}", flush=True)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        if busy is not None:
            print(f"busy loop: one core kept busy by process {busy.pid} for the whole run", flush=True)
        run_parts(args)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def run_parts(args: argparse.Namespace) -> None:
    """The parts named by --only, in order, each followed by the load average."""
    parts: dict[str, Callable[[], None]] = {}
    if "a" in args.only or "d" in args.only:
        small_store, small_id = bench_store(SMALL_N)

        def part_a() -> None:
            bench_cold_start(small_store, small_id, args.repeats, args.against)
            bench_imports(args.repeats)

        parts["a"] = part_a
    if "b" in args.only or "c" in args.only or "d" in args.only:
        big_store, big_id = bench_store(args.n_big)
        parts["b"] = lambda: bench_latency(big_store, big_id, args.n_big, args.keys, args.profile)
        parts["c"] = lambda: bench_memory(big_store, big_id, args.n_big, args.repeats)
    if "d" in args.only:
        maps = {SMALL_N: small_store / "maps" / small_id, args.n_big: big_store / "maps" / big_id}
        parts["d"] = lambda: bench_minimap(maps, args.repeats)
    if "e" in args.only:
        atlas_store = bench_atlas_store()
        parts["e"] = lambda: bench_atlas(atlas_store, args.keys, args.repeats)
    for name in "abcde":
        if name in args.only:
            parts[name]()
            print(f"  (load average after ({name}): {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)", flush=True)


if __name__ == "__main__":
    main()
