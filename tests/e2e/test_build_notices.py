"""What `vista build` says along the way, end to end: before each pass over the corpus, after a map of few
contexts, and on Ctrl+C (one line, exit 130, no traceback and no "Exception ignored" from numba's finalizers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.interrupts import HOLD_ENV, interrupted_line
from tests.helpers.build_inputs import docstring_corpus, save_sae
from vista_tui.core.caveats import FEW_CONTEXTS
from vista_tui.mapdata import MapReader, Store

pytestmark = pytest.mark.slow

TOP_N = 40
"""Contexts per map: fewer than FEW_CONTEXTS, so the summary warns."""
MARKER_WAIT_S = 600
"""Only bounds a hang while waiting for the build to reach its hold point; nothing asserts on time."""


def command(store: Path, corpus: Path, sae: Path, *extra: str) -> list[str]:
    """`vista build` of the test model, SAE and corpus into `store`."""
    return [
        sys.executable, "-m", "vista_tui.cli", "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae),
        "--corpus", str(corpus), "--top-n", str(TOP_N), "--cache", str(store), *extra,
    ]  # fmt: skip


def environment(**extra: str) -> dict[str, str]:
    """Our environment, offline, wide enough that no summary line wraps."""
    return dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", **extra)


def build(store: Path, corpus: Path, sae: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `vista build` to the end."""
    return subprocess.run(
        command(store, corpus, sae, *extra), capture_output=True, text=True, env=environment(), timeout=900
    )


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corpus and the SAE."""
    corpus = docstring_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl", 150)
    return corpus, save_sae(tmp_path_factory.mktemp("sae"), 384)


@pytest.fixture(scope="module")
def first_build(
    inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, umap_warm: None
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A store in which latent 1 was built (its harvest cached), and what that build printed."""
    root = tmp_path_factory.mktemp("store")
    first = build(root, *inputs, "--latents", "1")
    assert first.returncode == 0, first.stderr
    return root, first


@pytest.fixture
def store(first_build: tuple[Path, subprocess.CompletedProcess[str]]) -> Path:
    """The store of `first_build`."""
    return first_build[0]


def harvest_lines(stderr: str) -> list[str]:
    """The lines of stderr that announce a harvest."""
    return [line for line in stderr.splitlines() if line.startswith("harvesting ")]


def test_each_pass_over_the_corpus_is_announced_and_few_contexts_are_warned_of(
    first_build: tuple[Path, subprocess.CompletedProcess[str]], inputs: tuple[Path, Path]
) -> None:
    (store, fresh), (corpus, sae) = first_build, inputs
    assert harvest_lines(fresh.stderr) == [
        f"harvesting latent 1: one pass over the corpus ({corpus.name}, "
        f"{max(1, round(corpus.stat().st_size / 1e3))} kB) — harvest several latents at once with --latents a,b,c "
        "to share it"
    ]
    # the build's closing summary says that so small a map means little
    warnings = [line for line in fresh.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: only {TOP_N} contexts (fewer than {FEW_CONTEXTS}): the cluster tree and the fidelity of so "
        "few mean little; a larger corpus gives more"
    ]

    first = MapReader(Store(store).list_maps()[0].path).manifest.provenance
    second = build(store, corpus, sae, "--latents", "2")
    assert second.returncode == 0, second.stderr
    [line] = harvest_lines(second.stderr)
    assert line.startswith(
        f"harvesting latent 2: one more pass over the corpus ({150:,} documents / {first.n_tokens_seen:,} tokens, "
        "as the cached harvest of latent 1 read it) — "
    ), line
    assert line.endswith("--latents 1,2 to share one pass"), line

    again = build(store, corpus, sae, "--latents", "1")
    assert again.returncode == 0, again.stderr
    assert harvest_lines(again.stderr) == []  # the cached harvest serves it: nothing to announce


@pytest.mark.parametrize(
    ("who", "where"),
    [("process group", "code"), ("process group", "finalizer"), ("vista alone", "code")],
)
def test_ctrl_c_during_a_build_says_one_line_and_exits_130(
    store: Path, inputs: tuple[Path, Path], tmp_path: Path, who: str, where: str
) -> None:
    """Ctrl+C reaches `vista` and its pipeline child together; `kill -INT` may reach `vista` alone. It may
    land in plain code, or in a finalizer (numba's and llvmlite's, under UMAP), where Python swallows it
    with an "Exception ignored" report and goes on, unless the pipeline catches it there too."""
    marker = tmp_path / "held"
    before = {entry.map_id: entry.manifest.steps["layout"].finished for entry in Store(store).list_maps()}  # type: ignore[union-attr]
    # --seed 1: the cached harvest serves, the layout (UMAP: numba and llvmlite loaded) runs, then the
    # build waits at the start of the cluster step until it is interrupted.
    process = subprocess.Popen(
        command(store, *inputs, "--latents", "1", "--seed", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(**{HOLD_ENV: f"cluster{'@finalizer' if where == 'finalizer' else ''}:{marker}"}),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + MARKER_WAIT_S
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), process.communicate(timeout=60)
        if who == "process group":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert [line for line in lines if "interrupted" in line] == [interrupted_line("build")], stderr
    assert lines[-1] == interrupted_line("build")  # after the progress bars, the last word
    assert stdout == ""  # no map was finished, none is summarised
    after = {entry.map_id: entry.manifest.steps["layout"].finished for entry in Store(store).list_maps()}  # type: ignore[union-attr]
    assert after == before  # the maps already written are untouched
