"""`vista atlas build` and `vista atlas list` end to end: bad input is one line and exit 2; a tiny atlas builds,
ends with the command that opens it, and a rerun skips it all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.build_inputs import docstring_corpus, save_sae
from vista_tui.mapdata import Store, read_atlas

pytestmark = pytest.mark.slow


def vista(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """`vista ARGS` in a child, offline, wide enough that no line wraps."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sae(tmp_path_factory.mktemp("sae"), 384)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return docstring_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl", 60)


def atlas_args(store: Path, corpus: Path, sae: Path, *extra: str) -> list[str]:
    """`atlas build` of a tiny atlas."""
    return [
        "atlas", "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae), "--corpus", str(corpus),
        "--top-n", "20", "--max-length", "64", "--device", "cpu", "--cache", str(store), *extra,
    ]  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, no traceback, exactly one `error:` line holding every word."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


def test_a_latent_out_of_range(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    result = vista(*atlas_args(tmp_path, corpus, sae_dir, "--latents", "60-70"))
    assert_one_line_error(result, "latent 64 is out of range", "0..63")


def test_an_sae_of_another_width(tmp_path: Path, corpus: Path) -> None:
    narrow = save_sae(tmp_path / "narrow", 128)
    result = vista(*atlas_args(tmp_path, corpus, narrow, "--latents", "0-3"))
    assert_one_line_error(result, "SAE d_in 128 does not match hook", "width 384")


def test_an_unreachable_ray_address(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    pytest.importorskip("ray")
    result = vista(*atlas_args(tmp_path, corpus, sae_dir, "--latents", "0-3", "--ray-address", "127.0.0.1:9"))
    assert_one_line_error(result, "the Ray cluster at 127.0.0.1:9 cannot be reached")


def test_a_corpus_with_no_tokens(tmp_path: Path, sae_dir: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "   "}\n{"text": "\\n"}\n', encoding="utf-8")
    result = vista(*atlas_args(tmp_path, empty, sae_dir, "--latents", "0-3"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "empty.jsonl" in errors[0], result.stderr


def test_a_bad_latents_spec(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    result = vista(*atlas_args(tmp_path, corpus, sae_dir, "--latents", "9-3"))
    assert_one_line_error(result, "runs backwards")


def test_build_list_and_rerun(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    first = vista(*atlas_args(tmp_path, corpus, sae_dir, "--latents", "0,1"))
    assert first.returncode == 0, first.stderr
    (atlas,) = Store(tmp_path).list_atlases()
    rows = read_atlas(atlas.path).rows()
    assert [row.latent for row in rows] == [0, 1] and all(row.built for row in rows)
    assert f"store: {tmp_path}" in first.stdout.splitlines()
    assert f"open with: vista explore {atlas.atlas_id} --cache {tmp_path}" in first.stdout.splitlines()
    listed = vista("atlas", "list", "--cache", str(tmp_path))
    assert listed.returncode == 0 and atlas.atlas_id in listed.stdout and "2 latents" in listed.stdout
    again = vista(*atlas_args(tmp_path, corpus, sae_dir, "--latents", "0,1"))
    assert again.returncode == 0 and "0 built now, 2 up to date" in again.stderr, again.stderr
