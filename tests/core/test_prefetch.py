"""A map's first screen read by a forked child (`vista explore MAP`): the same map, without pyarrow here.

The fork itself is tested in a fresh interpreter (as `vista explore` forks: before any thread and
before pyarrow is imported); the reading and the model built from it are tested in this process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core import blas, prefetch
from vista_tui.core.model import MapModel
from vista_tui.core.prefetch import FIRST_ROWS, MapPrefetch, read_first_screen, spare_core
from vista_tui.mapdata import MapCorruptError, MapReader

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_group_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A map of 8,500 contexts: two row groups of the contexts file (8,192 rows each at most)."""
    return build_synthetic_map(tmp_path_factory.mktemp("prefetch") / "syn-8500", n=8500, seed=3, latent=5)


def same_nodes(model: MapModel, other: MapModel) -> None:
    assert list(model.nodes) == list(other.nodes)
    for node_id, node in model.nodes.items():
        twin = other.nodes[node_id]
        assert np.array_equal(node.members, twin.members)
        # repr, not ==: an unset agreement is NaN, never equal to itself
        assert repr(dataclasses.replace(node, members=None)) == repr(dataclasses.replace(twin, members=None))
    assert model.walk() == other.walk()


def test_first_screen_is_what_the_map_holds(two_group_map: Path) -> None:
    first = read_first_screen(two_group_map)
    reader = MapReader(two_group_map)
    assert first.manifest == reader.manifest
    assert np.array_equal(first.activations, reader.activations)
    assert np.array_equal(first.layout, reader.layout)
    assert first.context_ids == reader.context_ids
    assert len(first.group_rows) == 2 and sum(first.group_rows) == 8500
    model = MapModel.open(two_group_map)
    rows = model.members_by_activation(model.root.node_id)[:FIRST_ROWS]
    assert sorted(first.contexts) == sorted(int(row) for row in rows)
    for row in rows:
        assert first.contexts[int(row)] == model.contexts.fetch(int(row))


def test_a_model_from_the_first_screen_is_the_map_without_reading_it(two_group_map: Path, tmp_path: Path) -> None:
    first = read_first_screen(two_group_map)
    # A copy whose contexts file is unreadable: what the first screen shows must not read it.
    copy = tmp_path / two_group_map.name
    copy.mkdir()
    for path in two_group_map.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    contexts_file = copy / MapReader(copy).manifest.files["contexts"].name
    contexts_file.write_bytes(b"\0" * contexts_file.stat().st_size)  # same size: only reading finds out

    model = MapModel.open(copy, first)
    reference = MapModel.open(two_group_map)
    same_nodes(model, reference)
    assert np.array_equal(model.activations, reference.activations)
    assert np.array_equal(model.layout, reference.layout)
    assert model.n_contexts == 8500
    assert [model.contexts.group_of(row) for row in (0, 8191, 8192, 8499)] == [0, 0, 1, 1]
    assert model.reader.context_ids == reference.reader.context_ids
    rows = model.members_by_activation(model.root.node_id)
    assert np.array_equal(rows, reference.members_by_activation(reference.root.node_id))
    model.contexts.load(rows[:FIRST_ROWS])  # every one is there already: nothing to read
    for row in rows[:FIRST_ROWS]:
        assert model.contexts.is_loaded(int(row))
        assert model.contexts.get(int(row)) == reference.contexts.fetch(int(row))
    # Any other row is read from the file, as without a first screen: here the zeroed file fails.
    with pytest.raises(MapCorruptError, match="unreadable"):
        model.contexts.fetch(int(rows[FIRST_ROWS]))


def test_a_first_screen_of_an_older_manifest_is_not_used(two_group_map: Path) -> None:
    first = read_first_screen(two_group_map)
    stale = dataclasses.replace(
        first, manifest=dataclasses.replace(first.manifest, created="2020-01-01T00:00:00Z"), tree=[], contexts={}
    )
    model = MapModel.open(two_group_map, stale)  # the map was written again since: read here
    same_nodes(model, MapModel.open(two_group_map))
    assert not model.contexts.is_loaded(0)


CHILD_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from vista_tui.core.blas import one_blas_thread
    from vista_tui.core.prefetch import MapPrefetch

    path, mode = Path(sys.argv[1]), sys.argv[2]
    one_blas_thread()
    prefetch = MapPrefetch.start(path)
    pid = prefetch._pid
    report = {"numpy_before": "numpy" in sys.modules, "pyarrow_before": "pyarrow" in sys.modules}
    if mode == "close":
        prefetch.close()
    else:
        first = prefetch.take(Path(sys.argv[3]) if len(sys.argv) > 3 else path)
        report["took"] = first is not None
        if first is not None:
            from vista_tui.core.model import MapModel
            import vista_tui.tui.screens.map  # noqa: F401 - the map screen's modules, as the explorer's worker
            model = MapModel.open(path, first)
            rows = model.members_by_activation(model.root.node_id)[:64]
            model.contexts.load(rows)
            report["texts"] = [model.contexts.get(int(row)).text for row in rows[:3]]
            report["root"] = model.root.node_id
        report["second_take"] = prefetch.take(path) is not None
    try:
        os.waitpid(pid, os.WNOHANG)
        report["reaped"] = False
    except ChildProcessError:
        report["reaped"] = True
    report["pyarrow_after"] = "pyarrow" in sys.modules
    print(json.dumps(report))
    """
)


def run_child(*args: str) -> tuple[dict[str, object], subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done


def test_explore_forks_a_reader_and_draws_the_map_without_pyarrow(two_group_map: Path) -> None:
    report, done = run_child(str(two_group_map), "take")
    assert report["numpy_before"] is False and report["pyarrow_before"] is False
    assert report["took"] is True
    model = MapModel.open(two_group_map)
    rows = model.members_by_activation(model.root.node_id)[:3]
    assert report["texts"] == [model.contexts.fetch(int(row)).text for row in rows]
    assert report["root"] == model.root.node_id
    assert report["pyarrow_after"] is False  # model, first contexts and the map screen's modules, no pyarrow
    assert report["second_take"] is False and report["reaped"] is True
    assert done.stderr == ""


def test_an_unreadable_map_leaves_the_reading_to_the_explorer(two_group_map: Path, tmp_path: Path) -> None:
    broken = tmp_path / "syn-broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((two_group_map / "manifest.json").read_text())
    report, done = run_child(str(broken), "take")
    assert report["took"] is False and report["reaped"] is True  # the worker then reads and reports it
    assert done.stderr == "" and done.stdout.count("\n") == 1  # the child wrote nothing to the terminal


def test_another_map_or_an_early_quit(two_group_map: Path, tmp_path: Path) -> None:
    report, _ = run_child(str(two_group_map), "take", str(tmp_path / "another"))
    assert report["took"] is False and report["reaped"] is True
    report, _ = run_child(str(two_group_map), "close")
    assert report["reaped"] is True


def test_without_fork_or_with_threads_there_is_no_prefetch(
    two_group_map: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()
    stop = threading.Event()
    thread = threading.Thread(target=lambda: (started.set(), stop.wait()))
    thread.start()
    started.wait()
    try:
        assert MapPrefetch.start(two_group_map) is None  # another thread runs: no fork
    finally:
        stop.set()
        thread.join()
    monkeypatch.delattr(os, "fork")
    assert MapPrefetch.start(two_group_map) is None


@pytest.mark.parametrize(
    ("cores", "loadavg", "spare"),
    [
        (2, "0.90 0.80 0.70 1/120 999", True),  # only this process runs: the other core is idle
        (2, "0.20 0.30 0.40 2/120 999", False),  # another thread runs now, whatever the average says
        (16, "9.00 9.00 9.00 15/900 999", True),
        (16, "9.00 9.00 9.00 16/900 999", False),
        (1, "0.00 0.00 0.00 1/50 999", False),
        (2, None, True),  # no /proc/loadavg: the 1-minute average, 0.4
    ],
)
def test_a_core_is_spare_when_one_is_idle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cores: int, loadavg: str | None, spare: bool
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.4, 0.4, 0.4))
    proc = tmp_path / "loadavg"
    if loadavg is not None:
        proc.write_text(loadavg + "\n")
    monkeypatch.setattr(prefetch, "PROC_LOADAVG", proc)
    assert spare_core() is spare


def test_one_blas_thread_keeps_the_users_setting_and_the_childrens_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blas, "_set_here", {})
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    blas.one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert "OPENBLAS_NUM_THREADS" not in blas.child_environ()  # a render worker gets what the user had

    monkeypatch.setattr(blas, "_set_here", {})
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    blas.one_blas_thread()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert blas.child_environ()["OPENBLAS_NUM_THREADS"] == "4"
