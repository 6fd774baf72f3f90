"""The one triage definition: what the explorer's meter and `vista triage-status` both count, headless."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.annotations import AnnotationError, AnnotationStore, TriageConfig
from vista_tui.core.model import MapModel
from vista_tui.core.triage import TriageFilter, TriageSession, open_triage, tree_members
from vista_tui.mapdata import MapReader

CONFIG = TriageConfig(author="tester")


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    return build_synthetic_map(tmp_path / "maps" / "m", n=120, seed=1)


@pytest.fixture
def session(map_dir: Path) -> Iterator[TriageSession]:
    """The map's session as a command opens it to write."""
    opened = TriageSession.open(map_dir, tree_members(MapReader(map_dir)), CONFIG, write=True)
    yield opened
    opened.close()


def test_every_node_is_a_target_the_root_included(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    with_cli = TriageSession.open(map_dir, tree_members(reader), CONFIG, write=True)
    with_tui = open_triage(MapModel.open(map_dir), CONFIG)
    try:
        assert with_cli.targets[0] == reader.root.node_id
        assert set(with_cli.targets) == set(with_tui.targets) == {node.node_id for node in reader.tree}
        with_cli.set_status(reader.root.node_id, "junk")
        with_tui.refresh()
        for session in (with_cli, with_tui):
            progress = session.progress()
            assert (progress.reviewed, progress.total) == (1, len(reader.tree))
            assert progress.counts["junk"] == 1 and progress.counts["unreviewed"] == len(reader.tree) - 1
            assert list(progress.counts)[: len(CONFIG.statuses)] == list(CONFIG.statuses)
    finally:
        with_cli.close()
        with_tui.close()


def test_writes_are_committed_and_undone_through_the_session(map_dir: Path, session: TriageSession) -> None:
    node_id = session.targets[1]
    session.set_status(node_id, "interpretable")
    session.add_tag(node_id, "verb")
    session.set_note(node_id, "fires on verbs")
    with AnnotationStore.open(map_dir, "reader", readonly=True) as store:
        committed = store.get(node_id)
        assert committed is not None and committed.tags == ("verb",) and committed.note == "fires on verbs"
        assert store.members(node_id) == tuple(sorted(session.tree[node_id]))
    entry = session.undo()
    assert entry is not None and entry.field == "note"
    assert session.get(node_id).note == ""  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        session.remove_tag(session.targets[2], "verb")  # never annotated


def test_next_unreviewed_walks_targets_in_order_and_wraps(session: TriageSession) -> None:
    order = session.targets
    session.set_status(order[1], "junk")
    assert session.next_unreviewed(order[0], +1) == order[2]
    assert session.next_unreviewed(order[2], -1) == order[0]
    assert session.next_unreviewed(order[0], -1) == order[-1]
    assert session.next_unreviewed(order[0], +1, among={order[1], order[3]}) == order[3]
    assert session.matching(TriageFilter("status", "junk")) == {order[1]}
    for node_id in order:
        session.set_status(node_id, "junk")
    assert session.next_unreviewed(order[0], +1) is None


def test_a_read_only_session_refuses_writes(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    session = TriageSession.open(map_dir, tree_members(reader), CONFIG, write=False)
    try:
        assert session.progress().reviewed == 0 and session.orphan_count() == 0
        with pytest.raises(AnnotationError):
            session.set_status(reader.root.node_id, "junk")
    finally:
        session.close()
    assert not (map_dir / "annotations.sqlite").exists()
