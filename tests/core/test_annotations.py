"""The annotation store: durable across kills, shared by two processes, kept across rebuilds."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core import annotations
from vista_tui.core.annotations import DEFAULT_STATUSES, AnnotationError, AnnotationStore, TriageConfig
from vista_tui.core.triage import tree_members
from vista_tui.core.triage_config import load_config
from vista_tui.mapdata import MapReader, StepRecord, node_id_for, update_tree

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "maps" / "m", n=120, seed=1)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- basics ----------------------------------------------------------------------------------


def test_writes_are_visible_after_reopening(map_dir: Path) -> None:
    store = AnnotationStore.open(map_dir, "ana")
    saved = store.set_status("n1", "junk", ["c1", "c2"])
    store.add_tag("n1", "dates")
    store.add_tag("n1", "dates")  # a tag once only
    store.set_note("n1", "mostly years")
    assert saved.status == "junk" and saved.author == "ana"
    store.close()
    with AnnotationStore.open(map_dir, "bo") as again:
        assert again.get("n1") == dataclasses.replace(
            again.get("n1"),  # type: ignore[arg-type]
            status="junk",
            tags=("dates",),
            note="mostly years",
            author="ana",
        )
        assert again.members("n1") == ("c1", "c2")
        assert again.get("missing") is None
    connection = sqlite3.connect(map_dir / "annotations.sqlite")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_unknown_status_is_refused(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana") as store:
        with pytest.raises(ValueError, match="unknown status 'great'"):
            store.set_status("n1", "great")
        assert store.get("n1") is None and store.history() == []


def test_tags_counts_and_custom_statuses(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana", statuses=("todo", "ok", "bad")) as store:
        store.set_tags("a", ["x", "y"])
        store.set_tags("b", ["y"])
        store.add_tag("c", "z")
        store.remove_tag("a", "x")
        store.set_status("b", "ok")
        assert store.tags() == ["y", "z"]
        assert store.counts(["a", "b", "c", "d"]) == {"todo": 3, "ok": 1, "bad": 0}
        with pytest.raises(ValueError):
            store.add_tag("a", "  ")


def test_undo_reverts_the_latest_change_then_the_one_before(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana") as ana, AnnotationStore.open(map_dir, "bo") as bo:
        ana.set_status("n1", "junk")
        ana.set_note("n1", "first")
        bo.set_status("n2", "merge")
        ana.set_note("n1", "second")

        undone = ana.undo()
        assert undone is not None and (undone.field, undone.old, undone.new) == ("note", "second", "first")
        assert ana.get("n1").note == "first"  # type: ignore[union-attr]
        ana.undo(author="ana")  # not bo's status of n2, which came after ana's first note
        assert ana.get("n1").note == ""  # type: ignore[union-attr]
        # ana's next own change is the status; bo's change is not hers to undo
        assert ana.undo(author="ana").new == "unreviewed"  # type: ignore[union-attr]
        assert bo.get("n2").status == "merge"  # type: ignore[union-attr]
        assert ana.undo(author="ana") is None
        assert bo.undo(author="bo").node_id == "n2"  # type: ignore[union-attr]
        assert ana.undo() is None

        history = ana.history()
        assert [h.field for h in history].count("note") == 4  # two changes, two reverts, all kept
        assert [h.id for h in history] == sorted(h.id for h in history)
        assert all(h.node_id == "n1" for h in ana.history("n1"))


def test_undo_of_one_node_takes_its_latest_change_followed_across_a_move(map_dir: Path) -> None:
    members = [f"c{i}" for i in range(10)]
    with AnnotationStore.open(map_dir, "ana") as ana:
        ana.set_status("a", "junk", members)
        ana.set_note("b", "later, elsewhere", ["x"])
        ana.set_status("a", "merge", members)
        ana.set_note("b", "latest", ["x"])

        undone = ana.undo("ana", node_id="a")  # not b's note, which came after
        assert undone is not None and (undone.node_id, undone.field, undone.new) == ("a", "status", "junk")
        assert ana.get("b").note == "latest"  # type: ignore[union-attr]

        # a rebuild moves a's annotation to a2: its changes made as a are a2's to undo
        report = ana.reconcile({"a2": members[:9], "b": ["x"]})
        assert [(m.old, m.new) for m in report.moved] == [("a", "a2")]
        assert ana.undo("ana", node_id="a") is None
        undone = ana.undo("ana", node_id="a2")
        assert undone is not None and (undone.node_id, undone.new) == ("a2", "unreviewed")
        assert ana.undo("ana", node_id="a2") is None
        assert ana.undo("bo", node_id="b") is None  # only the author's own changes
        assert ana.get("b").note == "latest"  # type: ignore[union-attr]


def test_config_from_file_env_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VISTA_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("USER", "tester")
    assert load_config() == TriageConfig(DEFAULT_STATUSES, "tester")
    good = tmp_path / "good.toml"
    good.write_text('[triage]\nstatuses = ["new", "fine", "odd"]\nauthor = "ana"\n')
    assert load_config(good) == TriageConfig(("new", "fine", "odd"), "ana")
    monkeypatch.setenv("VISTA_CONFIG", str(good))
    assert load_config().author == "ana"
    for text, words in [
        ("[triage\n", "not valid TOML"),
        ('[triage]\nstatuses = "new"\n', "list of strings"),
        ("[triage]\nstatuses = []\n", "at least one"),
        ('[triage]\nstatuses = ["a", "a"]\n', "distinct"),
        ('[triage]\nauthor = ""\n', "author"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(AnnotationError, match=words) as caught:
            load_config(bad)
        assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(AnnotationError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


# -- failures: read-only, locked, damaged ----------------------------------------------------


def test_read_only_store_reads_and_refuses_writes(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana") as store:
        store.set_status("n1", "junk")
    before = _digest(map_dir / "annotations.sqlite")
    with AnnotationStore.open(map_dir, "ana", readonly=True) as store:
        assert store.get("n1").status == "junk"  # type: ignore[union-attr]
        with pytest.raises(AnnotationError, match="is read-only; copy the map or ask its owner"):
            store.set_note("n1", "x")
    assert _digest(map_dir / "annotations.sqlite") == before


def test_read_only_map_directory(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana") as store:
        store.set_status("n1", "junk")
    before = _digest(map_dir / "annotations.sqlite")
    map_dir.chmod(0o555)
    try:
        if os.access(map_dir, os.W_OK):
            pytest.skip("running as a user who can write a 0o555 directory (root); covered by readonly=True")
        with pytest.raises(AnnotationError, match=f"{map_dir} is read-only"):
            AnnotationStore.open(map_dir, "ana")
        with AnnotationStore.open(map_dir, "ana", readonly=True) as store:
            assert store.get("n1").status == "junk"  # type: ignore[union-attr]
    finally:
        map_dir.chmod(0o755)
    assert _digest(map_dir / "annotations.sqlite") == before


def test_locked_database_gives_one_line(map_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(annotations, "BUSY_TIMEOUT_MS", 200)
    store = AnnotationStore.open(map_dir, "ana")
    store.set_status("n1", "junk")
    other = sqlite3.connect(map_dir / "annotations.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(AnnotationError, match=r"annotations\.sqlite is locked by another process") as caught:
            store.set_note("n1", "blocked")
        # It waited for the lock before giving up: SQLite's busy handler waits as long as the store
        # asks, so check what it asked for (no clock) and that the line says how long that was.
        assert store._db.execute("PRAGMA busy_timeout").fetchone() == (200,)
        assert "still busy after 0.2 s" in str(caught.value)
        assert store.get("n1").note == ""  # type: ignore[union-attr]  # readers still read in WAL mode
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.set_note("n1", "now").note == "now"  # the store is usable after the lock goes
    store.close()


def test_damaged_database_is_reported_and_left_alone(map_dir: Path) -> None:
    path = map_dir / "annotations.sqlite"
    path.write_bytes(b"not sqlite at all " * 300)
    before = _digest(path)
    for readonly in (False, True):
        with pytest.raises(AnnotationError) as caught:
            AnnotationStore.open(map_dir, "ana", readonly=readonly)
        message = str(caught.value)
        assert "annotations.sqlite in" in message and "is damaged" in message
        assert "it was not changed — move it aside to start fresh" in message and "\n" not in message
    assert _digest(path) == before


# -- a kill at any moment loses nothing the writer reported saved ----------------------------

WRITER = textwrap.dedent(
    """
    import itertools, random, sys, time
    from pathlib import Path
    from vista_tui.core.annotations import AnnotationStore, DEFAULT_STATUSES
    map_dir, start, seed, author = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    nodes, pause, writes = sys.argv[5].split(","), float(sys.argv[6]), int(sys.argv[7])
    rng = random.Random(seed)
    store = AnnotationStore.open(map_dir, author)
    print("ready", flush=True)
    sys.stdin.readline()  # the start line: two writers start together
    for i in itertools.count(start) if writes == 0 else range(start, start + writes):
        node = rng.choice(nodes)
        kind = i % 3
        if kind == 0:
            store.set_note(node, f"{author}-{i}", ["c1"])
        elif kind == 1:
            store.add_tag(node, f"{author}-{i}")
        else:
            store.set_status(node, DEFAULT_STATUSES[i % len(DEFAULT_STATUSES)])
            store.set_note(node, f"{author}-{i}")
        # only now, after the method returned, may the writer say "saved"
        print(f"{author}-{i}", flush=True)
        # a person's pace between writes; a writer in a tight loop could starve the other of the lock
        time.sleep(pause)
    """
)


def _spawn_writer(
    map_dir: Path, start: int, seed: int, author: str, nodes: list[str], pause: float = 0.0, writes: int = 0
) -> subprocess.Popen[str]:
    """A writer that opens the store, says "ready", and on its start line writes `writes` times (0: until killed).

    It prints each write's token once the write has returned, one a line.
    """
    args = [str(map_dir), str(start), str(seed), author, ",".join(nodes), str(pause), str(writes)]
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def _start(*children: subprocess.Popen[str]) -> None:
    """Wait until every writer has its store open, then start them all."""
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()


def _committed_tokens(map_dir: Path) -> set[str]:
    with AnnotationStore.open(map_dir, "checker", readonly=True) as store:
        history = store.history()
    tokens: set[str] = set()
    for entry in history:
        if entry.field == "note":
            tokens.add(entry.new)
        elif entry.field == "tags":
            tokens.update(t.strip('[]" ') for t in entry.new.split(","))
    return tokens


def test_sigkill_at_random_moments_loses_no_reported_write(map_dir: Path) -> None:
    rng = random.Random(1234)
    nodes = [f"node{i}" for i in range(12)]
    reported: list[str] = []
    start = 0
    for round_ in range(20):
        child = _spawn_writer(map_dir, start, round_, "w", nodes)
        _start(child)
        assert child.stdout is not None
        # Killed as soon as it has reported 0-4 writes: the next write is in flight or about to start.
        # Counting reports, not waiting a time, keeps the number of writes the same on any machine.
        lines = [child.stdout.readline().strip() for _ in range(rng.randint(0, 4))]
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        lines += [line for line in out.splitlines() if line.startswith("w-")]
        reported.extend(lines)
        start += len(lines) + 1  # the write in flight when killed may or may not have landed
    assert len(reported) > 20, "the writer barely ran; the test proves nothing"
    missing = set(reported) - _committed_tokens(map_dir)
    assert not missing, sorted(missing)[:5]
    connection = sqlite3.connect(map_dir / "annotations.sqlite")
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    connection.close()


# -- two processes on one map ------------------------------------------------------------------


def test_two_writers_on_one_map_lose_nothing_and_see_each_other(map_dir: Path) -> None:
    shared = ["s0", "s1", "s2"]
    # A fixed number of writes each, started together, rather than whatever fits in a time window.
    tui = _spawn_writer(map_dir, 0, 1, "tui", [*shared, "t0", "t1"], pause=0.003, writes=30)
    cli = _spawn_writer(map_dir, 0, 2, "cli", [*shared, "c0", "c1"], pause=0.003, writes=30)
    _start(tui, cli)
    reported = [line for child in (tui, cli) for line in child.communicate()[0].splitlines() if "-" in line]
    assert tui.returncode == 0 and cli.returncode == 0
    assert sum(r.startswith("tui-") for r in reported) > 10 and sum(r.startswith("cli-") for r in reported) > 10
    assert not set(reported) - _committed_tokens(map_dir)
    # each side reads the other's writes
    with AnnotationStore.open(map_dir, "tui") as tui_store, AnnotationStore.open(map_dir, "cli") as cli_store:
        authors = {a.author for a in tui_store.all().values()}
        assert {"tui", "cli"} <= authors
        cli_store.set_note("t0", "from the cli")
        assert tui_store.get("t0").note == "from the cli"  # type: ignore[union-attr]
        tui_store.add_tag("c0", "from the tui")
        assert "from the tui" in cli_store.get("c0").tags  # type: ignore[union-attr]


# -- rebuilds --------------------------------------------------------------------------------


def _shrink_node(map_dir: Path, node_id: str, drop: int) -> str:
    """Rewrite the tree so that `node_id` loses `drop` members; returns its new id."""
    reader = MapReader(map_dir)
    ids = reader.context_ids
    nodes = []
    new_id = node_id
    for node in reader.tree:
        if node.node_id == node_id:
            members = np.asarray(node.members[drop:], dtype=np.int32)
            new_id = node_id_for([ids[i] for i in members], node.kind)
            node = dataclasses.replace(node, node_id=new_id, members=members)
        nodes.append(node)
    step = StepRecord(name="perturb", step_id="p", params={}, versions={}, upstream=None)
    update_tree(map_dir, reader.manifest, nodes, step)
    return new_id


def test_annotations_follow_their_node_across_rebuilds(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    members = tree_members(reader)
    clusters = [n for n in reader.tree if n.kind == "cluster" and n.depth == 2]
    kept, shrunk, gone = clusters[0].node_id, clusters[1].node_id, clusters[2].node_id
    root = reader.root.node_id
    with AnnotationStore.open(map_dir, "ana") as store:
        store.set_note(gone, "will vanish", members[gone])
        for node_id, status in ((root, "polysemantic"), (kept, "interpretable"), (shrunk, "morphology")):
            store.set_status(node_id, status, members[node_id])

    # an identical rebuild keeps every id
    build_synthetic_map(map_dir, n=120, seed=1)
    assert set(tree_members(MapReader(map_dir))) == set(members)
    with AnnotationStore.open(map_dir, "ana") as store:
        report = store.reconcile(tree_members(MapReader(map_dir)))
        assert report.moved == () and report.orphaned == ()

    # a node that loses a few members keeps its annotation under its new id
    new_id = _shrink_node(map_dir, shrunk, drop=2)
    assert new_id != shrunk
    with AnnotationStore.open(map_dir, "ana") as store:
        report = store.reconcile(tree_members(MapReader(map_dir)))
        assert [(m.old, m.new) for m in report.moved] == [(shrunk, new_id)]
        assert report.moved[0].jaccard >= 0.5
        assert store.get(new_id).status == "morphology"  # type: ignore[union-attr]
        assert store.get(shrunk) is None
        assert store.history(shrunk)[-1].field == "node"
        assert store.undo(author="ana").node_id == new_id  # type: ignore[union-attr]  # undo follows the move

    # a rebuild with another seed reshuffles the clusters: the root stays, the rest is orphaned, none deleted
    build_synthetic_map(map_dir, n=120, seed=7)
    current = tree_members(MapReader(map_dir))
    with AnnotationStore.open(map_dir, "ana") as store:
        report = store.reconcile(current)
        assert store.get(root).status == "polysemantic"  # type: ignore[union-attr]
        orphaned = {a.node_id for a in store.orphans()}
        assert gone in orphaned and set(report.orphaned) == orphaned
        assert len(store.all()) == 4
        assert store.reconcile(current).moved == ()  # idempotent
        history_length = len(store.history())
        store.reconcile(current)
        assert len(store.history()) == history_length


def test_reconcile_prefers_the_best_match_and_never_overwrites(map_dir: Path) -> None:
    with AnnotationStore.open(map_dir, "ana") as store:
        store.set_status("old1", "junk", ["a", "b", "c", "d"])
        store.set_status("old2", "merge", ["a", "b", "c", "e"])
        store.set_status("taken", "split", ["x"])
        report = store.reconcile({"new": ["a", "b", "c", "d"], "taken": ["x"], "other": ["a", "b", "c", "q", "r"]})
        assert report.moved[0] == ("old1", "new", 1.0)
        assert report.moved[1].old == "old2" and report.moved[1].new == "other"
        assert store.get("taken").status == "split"  # type: ignore[union-attr]
        with pytest.raises(ValueError):
            store.reconcile({}, threshold=0.0)
