"""`vista score` from the command line: the table, the exit codes, and the scores in `vista export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main, make_parser
from tests.helpers.cli import assert_one_line_error, vista
from tests.helpers.llm_server import Reply, chat_server
from tests.helpers.score_map import prepare_for_scoring
from tests.helpers.score_server import by_word
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import SCORE_CACHE_FILE, MapReader, read_scores


@pytest.fixture
def map_dir(tmp_path: Path) -> Path:
    """A synthetic map with neutral negatives and the published explanation 'mustard'."""
    return prepare_for_scoring(build_synthetic_map(tmp_path / "store" / "maps" / "m", n=120), "mustard")


def score_args(map_dir: Path, url: str, *extra: str) -> list[str]:
    """`score` on the root's published reading by detection."""
    return ["score", str(map_dir), "--scorer", "detection", "--base-url", url, "--model", "m", "--node", "root", *extra]


def test_score_prints_a_table_and_the_map_and_exits_0(map_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with chat_server(by_word) as server:
        code = main(score_args(map_dir, server.base_url, "--concurrency", "2"))
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(map_dir)
    assert "detection" in captured.err and "published" in captured.err and "keywords" in captured.err
    assert "scored 3/3 readings of 1 nodes" in " ".join(captured.err.split())
    scores = read_scores(map_dir)
    assert scores is not None and scores.get(MapReader(map_dir).root.node_id, "published", "detection") is not None
    assert len(server.requests) == 3 * 4  # published, keywords, visual prompt: 40 items in 4 requests each


def test_some_requests_failed_exits_1_and_none_scored_exits_2(
    map_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count: list[int] = []

    def every_third_garbage(request: object) -> Reply:
        count.append(1)
        return Reply("no idea") if len(count) % 3 == 0 else by_word(request)  # type: ignore[arg-type]

    with chat_server(every_third_garbage) as server:
        code = main(score_args(map_dir, server.base_url))
    assert code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "requests failed (e.g. reply has no list of answers)" in last
    (map_dir / SCORE_CACHE_FILE).unlink()  # else the answers of the first run are taken from the cache
    with chat_server(lambda request: Reply("no idea")) as server:
        code = main(score_args(map_dir, server.base_url))
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: nothing could be scored")


def test_help_documents_the_options_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        make_parser().parse_args(["score", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for words in (
        "--scorer {detection,fuzzing,embedding}",
        "--negatives {random,siblings,store}",
        "--base-url",
        "exit status:",
    ):
        assert words in shown


def test_vista_score_without_negatives_is_one_line_and_export_has_the_scores(map_dir: Path) -> None:
    (map_dir / "negatives.parquet").unlink()
    done = vista("score", str(map_dir))
    assert done.returncode == 2
    assert_one_line_error(done, "has no negatives.parquet", "--negatives siblings")
    done = vista("score", str(map_dir), "--negatives", "siblings", "--node", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # vista says what was scored on stderr, and prints no summary
    exported = vista("export", str(map_dir), "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines()]
    scored = [row for row in rows if row["score_published_embedding"] is not None]
    assert len(scored) == 1 and 0.5 < scored[0]["score_published_embedding"] <= 1.0
    assert scored[0]["score_keywords_embedding"] is not None and scored[0]["score_published_detection"] is None
