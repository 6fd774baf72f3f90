"""`vista build --also-sae`: its options in --help, and bad input as one line with exit 2, before anything loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.build_inputs import save_sae

EXIT_BAD_INPUT = 2


def vista(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_BAD_INPUT, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def saes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("saes")
    return save_sae(root / "a", 384), save_sae(root / "narrow", 128)


def build(store: Path, sae: Path, *extra: str) -> list[str]:
    corpus = store / "docs.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog.\n")
    return [
        "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae), "--corpus", str(corpus),
        "--latents", "1", "--cache", str(store), *extra,
    ]  # fmt: skip


def test_also_sae_of_another_width(tmp_path: Path, saes: tuple[Path, Path]) -> None:
    sae, narrow = saes
    error = one_line_error(vista(*build(tmp_path, sae, "--also-sae-path", str(narrow))))
    assert f"--also-sae {narrow} reads d_in 128" in error and "reads 384" in error and "same d_in" in error
    assert not (tmp_path / "harvests").exists()  # refused before any harvest


def test_children_k_without_also_sae(tmp_path: Path, saes: tuple[Path, Path]) -> None:
    error = one_line_error(vista(*build(tmp_path, saes[0], "--children-k", "4")))
    assert "--children-k needs --also-sae" in error


def test_also_sae_twice(tmp_path: Path, saes: tuple[Path, Path]) -> None:
    sae, narrow = saes
    error = one_line_error(vista(*build(tmp_path, sae, "--also-sae", "r/i", "--also-sae-path", str(narrow))))
    assert "at most one of --also-sae" in error


def test_help_documents_the_options() -> None:
    result = vista("build", "--help")
    assert result.returncode == 0
    for option in ("--also-sae RELEASE/SAE_ID", "--also-sae-path DIR", "--children-k K", "children.json"):
        assert option in result.stdout
