"""`vista` on bad maps: one line saying what is wrong and what to do, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.cli import assert_one_line_error, vista
from tests.helpers.small_map import small_map
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.core.caveats import FEW_CONTEXTS


@pytest.fixture
def store(tmp_path: Path) -> Path:
    small_map(tmp_path / "maps" / "m1")
    return tmp_path


def test_summary_of_a_good_map(store: Path) -> None:
    result = vista("summary", "m1", "--cache", str(store))
    assert result.returncode == 0, result.stderr
    assert "latent 7" in result.stdout
    assert "muscle, biceps" in result.stdout
    assert "gain peaks at k=2" in result.stdout


@pytest.mark.parametrize(("n", "warned"), [(26, True), (FEW_CONTEXTS - 1, True), (FEW_CONTEXTS, False)])
def test_summary_warns_once_of_a_map_of_few_contexts(tmp_path: Path, n: int, warned: bool) -> None:
    build_synthetic_map(tmp_path / "maps" / "m", n=n, seed=0)
    result = vista("summary", "m", "--cache", str(tmp_path), env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    if warned:
        assert warnings == [f"warning: only {n} contexts (fewer than {FEW_CONTEXTS}): the cluster tree and the "
                            "fidelity of so few mean little; a larger corpus gives more"]  # fmt: skip
    else:
        assert warnings == []


def test_unknown_map(store: Path) -> None:
    assert_one_line_error(vista("summary", "nope", "--cache", str(store)), "no map 'nope'", "m1")


def test_missing_file(store: Path) -> None:
    (store / "maps" / "m1" / "tree.parquet").unlink()
    assert_one_line_error(vista("summary", "m1", "--cache", str(store)), "missing tree.parquet", "vista build")


def test_truncated_parquet(store: Path) -> None:
    path = store / "maps" / "m1" / "tree.parquet"
    path.write_bytes(path.read_bytes()[:50])
    assert_one_line_error(vista("summary", "m1", "--cache", str(store)), "truncated")


def test_corrupt_manifest(store: Path) -> None:
    (store / "maps" / "m1" / "manifest.json").write_text("{")
    assert_one_line_error(vista("summary", "m1", "--cache", str(store)), "not valid JSON")


def test_unknown_schema_version(store: Path) -> None:
    path = store / "maps" / "m1" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    assert_one_line_error(vista("summary", "m1", "--cache", str(store)), "version 99", "upgrade")


def test_list_shows_broken_maps_without_failing(store: Path) -> None:
    (store / "maps" / "broken").mkdir()
    result = vista("list", "--cache", str(store))
    assert result.returncode == 0
    assert "m1" in result.stdout and "broken" in result.stdout


def test_explore_refuses_a_bad_map_with_one_line(store: Path) -> None:
    path = store / "maps" / "m1" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    assert_one_line_error(vista("explore", "m1", "--cache", str(store)), "version 99")


def test_explore_refuses_a_truncated_map_with_one_line(store: Path) -> None:
    contexts = store / "maps" / "m1" / "contexts.parquet"
    contexts.write_bytes(contexts.read_bytes()[:64])
    assert_one_line_error(vista("explore", "m1", "--cache", str(store)), "truncated", "vista build")


def test_explore_unknown_map(store: Path) -> None:
    assert_one_line_error(vista("explore", "nope", "--cache", str(store)), "no map 'nope'")


def test_a_store_given_before_a_pipeline_command_is_passed_on() -> None:
    from vista_tui.cli.main import pipeline_call

    assert pipeline_call(["--cache", "/s", "demo", "--no-open"]) == ("demo", ["--no-open", "--cache", "/s"])
    assert pipeline_call(["--cache=/s", "build", "--latents", "3"]) == ("build", ["--latents", "3", "--cache=/s"])
    assert pipeline_call(["label", "m", "--cache", "/s"]) == ("label", ["m", "--cache", "/s"])
    assert pipeline_call(["--cache", "/s", "summary", "m"]) is None
    assert pipeline_call(["--cache"]) is None
