"""`vista build` / `vista demo` end to end: real MiniLM, a small real SAE, a small real corpus.

Bad input gets one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.build_inputs import D_SAE, docstring_corpus, save_sae
from vista_tui.mapdata import MapReader, Store, read_atlas, read_latent_stats

pytestmark = pytest.mark.slow

DEAD_LATENT = 5


def vista(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "vista_tui.cli", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_sae(tmp_path_factory.mktemp("sae"), 384, dead_latent=DEAD_LATENT)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return docstring_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl", 400)


def build_args(store: Path, corpus: Path, sae: Path, *extra: str) -> list[str]:
    return [
        "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae), "--corpus", str(corpus),
        "--top-n", "150", "--cache", str(store), *extra,
    ]  # fmt: skip


def test_build_then_rebuild_reuses_steps(tmp_path: Path, corpus: Path, sae_dir: Path, umap_warm: None) -> None:
    first = vista(*build_args(tmp_path, corpus, sae_dir, "--latents", "1,2"))
    assert first.returncode == 0, first.stderr
    assert "latent 1" in first.stdout and "latent 2" in first.stdout
    maps = Store(tmp_path).list_maps()
    assert len(maps) == 2
    reader = MapReader(maps[0].path)
    assert reader.n_contexts == 150
    assert set(reader.manifest.steps) == {"harvest", "layout", "cluster", "keywords", "fidelity"}
    assert len(reader.tree) >= 2
    stats = read_latent_stats(maps[0].path)  # written with the map: density, all firings, positions, per node
    assert stats is not None and stats.n_tokens_seen == reader.manifest.provenance.n_tokens_seen
    assert stats.activations.total == stats.n_fired >= reader.n_contexts
    assert set(stats.nodes) == {node.node_id for node in reader.tree}
    root = stats.nodes[reader.tree[0].node_id]
    assert root.activations.total == sum(root.positions) == reader.n_contexts
    assert first.stdout.count("density: ") == 2 and first.stdout.count("activations (all firings, 0–") == 2
    before = {e.map_id: e.manifest.steps["layout"].finished for e in maps}  # type: ignore[union-attr]

    again = vista(*build_args(tmp_path, corpus, sae_dir, "--latents", "1,2"))
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") == 2
    after = {e.map_id: e.manifest.steps["layout"].finished for e in Store(tmp_path).list_maps()}  # type: ignore[union-attr]
    assert after == before

    reseeded = vista(*build_args(tmp_path, corpus, sae_dir, "--latents", "1", "--min-cluster-size", "7"))
    assert reseeded.returncode == 0, reseeded.stderr
    assert "computed cluster, keywords" in reseeded.stderr  # layout and fidelity reused


def test_build_ends_with_the_command_that_opens_each_map(
    tmp_path: Path, corpus: Path, sae_dir: Path, umap_warm: None
) -> None:
    """The README's build as a user runs it (no --cache: the default store, from a folder that is no
    checkout), then each printed `open with` command, run headless (`summary` for `explore`)."""
    home = tmp_path / "home"
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="120", HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # this checkout, from another folder
    env.pop("VISTA_CACHE", None)

    def user_vista(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vista_tui.cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path
        )

    args = build_args(tmp_path, corpus, sae_dir, "--latents", "1,2")
    at = args.index("--cache")
    del args[at : at + 2]
    built = user_vista(*args)
    assert built.returncode == 0, built.stderr
    store = home / "cache" / "vista-tui"
    lines = built.stdout.splitlines()
    assert lines[-3] == f"store: {store}"
    commands = [lines[-2].removeprefix("open with: "), lines[-1].strip()]
    maps = {entry.map_id for entry in Store(store).list_maps()}
    assert len(maps) == 2
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ["vista", "explore"] and len(words) == 3  # the default store: no --cache to type
        opened = user_vista("summary", *words[2:])
        assert opened.returncode == 0, opened.stderr
        assert opened.stdout.split()[0] == words[2] and words[2] in maps
    assert {shlex.split(command)[2] for command in commands} == maps


def test_empty_corpus(tmp_path: Path, sae_dir: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = vista(*build_args(tmp_path, empty, sae_dir, "--latents", "1"))
    assert_one_line_error(result, "no text")


def test_latent_that_never_fires(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    result = vista(*build_args(tmp_path, corpus, sae_dir, "--latents", str(DEAD_LATENT)))
    assert_one_line_error(result, f"latent {DEAD_LATENT}", "never fired")


def test_sae_width_does_not_match_the_hook(tmp_path: Path, corpus: Path) -> None:
    narrow = save_sae(tmp_path / "narrow", d_in=128)
    result = vista(*build_args(tmp_path, corpus, narrow, "--latents", "1"))
    assert_one_line_error(result, "d_in 128", "384")


def test_unknown_sae_release(tmp_path: Path, corpus: Path) -> None:
    args = build_args(tmp_path, corpus, Path("x"), "--latents", "1")
    at = args.index("--sae-path")
    args[at : at + 2] = ["--sae", "no-such-release/layer_3"]
    assert_one_line_error(vista(*args), "no-such-release")


def test_latent_beyond_the_sae(tmp_path: Path, corpus: Path, sae_dir: Path) -> None:
    result = vista(*build_args(tmp_path, corpus, sae_dir, "--latents", str(D_SAE + 10)))
    assert_one_line_error(result, str(D_SAE + 10))


def test_build_help_documents_every_option() -> None:
    result = vista("build", "--help")
    assert result.returncode == 0
    for option in (
        "--model",
        "--hook",
        "--force-hook",
        "--sae",
        "--sae-path",
        "--corpus",
        "--latents",
        "--top-n",
        "--lam",
        "--seed",
        "--cache",
        "--force",
    ):
        assert option in result.stdout


def test_demo_end_to_end(tmp_path: Path, umap_warm: None) -> None:
    """The real demo path, small: train an SAE on MiniLM over stdlib docstrings, pick latents, build maps, then
    the atlas of 64 latents (in process: a local Ray instance would add its start and a numba JIT per worker,
    and the atlas on Ray is tested in tests/pipeline)."""
    small = [
        "--cache",
        str(tmp_path),
        "--d-sae",
        "256",
        "--train-tokens",
        "6000",
        "--max-tokens",
        "20000",
        "--top-n",
        "200",
        "--n-latents",
        "2",
        "--atlas-top-n",
        "60",
        "--no-ray",
    ]
    result = vista("demo", *small)
    assert result.returncode == 0, result.stderr
    store = Store(tmp_path)
    maps = store.list_maps()
    assert len(maps) == 2
    for entry in maps:
        reader = MapReader(entry.path)
        prov = reader.manifest.provenance
        assert prov.model.endswith("all-MiniLM-L6-v2") and prov.corpus == "python-stdlib-docstrings"
        assert reader.n_contexts == 200
        assert reader.tree[0].kind == "root" and reader.tree[0].size == 200
        assert reader.fidelity is not None and len(reader.fidelity.k) >= 20
        assert f"latent {prov.latent}" in result.stdout
    assert "gain peaks at k=" in result.stdout
    assert f"store: {tmp_path}" in result.stdout.splitlines()
    for entry in maps:
        assert f"vista explore {entry.map_id} --cache {tmp_path}" in result.stdout
    assert list((tmp_path / "saes").iterdir())  # the SAE is cached

    # The atlas: 64 latents, the maps' latents among them, each row's map opens; its line comes after the maps'.
    (entry,) = store.list_atlases()
    atlas = read_atlas(entry.path)
    rows = atlas.rows()
    assert len(rows) == 64 and len(atlas.manifest.latents) == 64
    assert {reader_latent(m.path) for m in maps} <= set(atlas.manifest.latents)
    built = [row for row in rows if row.built]
    assert len(built) >= 60, [row.error for row in rows if not row.built]
    for row in built:
        reader = MapReader(Store(entry.path).map_path(row.map_id))
        assert reader.manifest.provenance.latent == row.latent and reader.n_contexts == row.n_contexts
    lines = result.stdout.splitlines()
    atlas_line = f"open with: vista explore {entry.atlas_id} --cache {tmp_path}"
    assert atlas_line in lines
    assert lines.index(atlas_line) > max(i for i, line in enumerate(lines) if maps[0].map_id in line)

    again = vista("demo", *small)  # second run: cached SAE, maps and atlas, only opens them
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("up to date") == 3
    assert "(0 built now" in again.stderr and atlas_line in again.stdout.splitlines()


def reader_latent(map_dir: Path) -> int:
    """The latent a map is of."""
    return MapReader(map_dir).manifest.provenance.latent
