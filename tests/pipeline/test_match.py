"""`vista match` on planted SAEs: a permuted copy is recovered exactly, a split latent finds both halves with
the right cosines, the matching equals brute force, the sparse path equals the dense one where its candidates
suffice, and bad input is one line with exit 2 (Ctrl+C: 130)."""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.interrupts import HOLD_ENV, interrupted_line
from pipeline.match.assign import dense_assignment, one_to_one
from pipeline.match.run import MatchConfig, match_saes, run
from pipeline.models import ModelError
from tests.helpers.cli import ROOT, assert_one_line_error, vista
from vista_tui.mapdata import Store, match_id_for, read_match_table

D_IN = 32
D_SAE = 48
SPLIT = 7
"""The latent of A that B splits in two."""
HALF_ANGLE = math.radians(20)


def save_planted(path: Path, decoder: np.ndarray, encoder: np.ndarray | None = None) -> Path:
    """An sae-lens SAE at `path` whose decoder rows are `decoder` (d_sae, d_in) and encoder columns `encoder`
    (the decoder's rows when None)."""
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig

    d_sae, d_in = decoder.shape
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=4))
    with torch.no_grad():
        sae.W_dec.copy_(torch.as_tensor(decoder, dtype=torch.float32))
        sae.W_enc.copy_(torch.as_tensor(decoder if encoder is None else encoder, dtype=torch.float32).T)
    sae.save_inference_model(path)
    return path


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A; B = A permuted and perturbed (encoders perturbed apart); C = A with latent SPLIT split in two at ±20°;
    D reads wider activations."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("planted")
    a = unit(rng.normal(size=(D_SAE, D_IN)))
    perm = rng.permutation(D_SAE)  # latent i of A is latent perm[i] of B
    b = np.empty_like(a)
    b[perm] = unit(a + 0.03 * rng.normal(size=a.shape))
    b_enc = np.empty_like(a)
    b_enc[perm] = unit(a + 0.03 * rng.normal(size=a.shape))
    # Two directions at ±20° from latent SPLIT, in a plane with a random direction orthogonal to it.
    other = rng.normal(size=D_IN)
    other = unit(other - (other @ a[SPLIT]) * a[SPLIT])
    halves = [math.cos(HALF_ANGLE) * a[SPLIT] + sign * math.sin(HALF_ANGLE) * other for sign in (1, -1)]
    c = np.concatenate([np.delete(a, SPLIT, axis=0), np.stack(halves)])  # the halves are the last two latents
    return {
        "a": save_planted(root / "a", a),
        "b": save_planted(root / "b", b, b_enc),
        "c": save_planted(root / "c", c),
        "d": save_planted(root / "d", unit(rng.normal(size=(D_SAE, D_IN + 8)))),
        "perm": perm,
        "store": Store(root / "store"),
        "root": root,
    }


@pytest.mark.parametrize("dense_limit", [1 << 24, 0], ids=["dense", "top-k candidates"])
def test_a_permuted_perturbed_copy_is_recovered_exactly(planted: dict, dense_limit: int) -> None:
    store = Store(planted["root"] / f"store-{dense_limit}")
    report = run(MatchConfig(k=4, candidates=3, dense_limit=dense_limit), str(planted["a"]), str(planted["b"]), store)
    table = read_match_table(report.path)
    perm = planted["perm"]
    assert report.path == store.match_path(match_id_for(str(planted["a"]), str(planted["b"])))
    assert table.manifest.exact and table.manifest.n_matched == D_SAE
    assert table.manifest.method == ("dense" if dense_limit else "top-3 candidates")
    for latent in range(D_SAE):
        row = table.row(latent)
        assert row is not None
        assert row.matched == perm[latent]
        assert row.decoder_neighbours[0] == perm[latent] and row.encoder_neighbours[0] == perm[latent]
        assert row.matched_cosine > 0.95 and len(row.decoder_neighbours) == 4
    assert table.manifest.share_above == 1.0 and table.manifest.mean_matched_cosine > 0.95
    assert table.reverse(int(perm[SPLIT]))[0][0] == SPLIT


def test_a_split_latent_has_both_halves_as_its_top_two(planted: dict) -> None:
    path = match_saes(str(planted["a"]), str(planted["c"]), store=planted["store"], k=3, offline=True)
    table = read_match_table(path)
    row = table.row(SPLIT)
    assert row is not None
    halves = {D_SAE - 1, D_SAE}
    assert set(row.decoder_neighbours[:2]) == halves
    assert row.decoder_cosines[:2] == pytest.approx([math.cos(HALF_ANGLE)] * 2, abs=1e-4)
    assert row.decoder_cosines[2] < 0.8  # the next one is an unrelated latent
    assert set(row.encoder_neighbours[:2]) == halves
    assert row.matched in halves and row.matched_cosine == pytest.approx(math.cos(HALF_ANGLE), abs=1e-4)
    others = [table.row(i) for i in range(D_SAE) if i != SPLIT]
    assert all(r is not None and r.matched == r.latent - (r.latent > SPLIT) for r in others)
    assert table.manifest.sae_b.d_sae == D_SAE + 1


def brute_force(sims: np.ndarray) -> tuple[float, dict[int, int]]:
    """The best one-to-one matching of min(m, n) pairs, by trying every one."""
    m, n = sims.shape
    best, pairs = -math.inf, {}
    if m <= n:
        for cols in itertools.permutations(range(n), m):
            total = sum(sims[i, j] for i, j in enumerate(cols))
            if total > best:
                best, pairs = total, dict(enumerate(cols))
    else:
        for rows in itertools.permutations(range(m), n):
            total = sum(sims[i, j] for j, i in enumerate(rows))
            if total > best:
                best, pairs = total, {i: j for j, i in enumerate(rows)}
    return best, pairs


@pytest.mark.parametrize(("m", "n"), [(6, 7), (7, 6)])
def test_the_matching_equals_brute_force(m: int, n: int) -> None:
    rng = np.random.default_rng(m * 10 + n)
    a, b = torch.as_tensor(rng.normal(size=(m, 5))), torch.as_tensor(rng.normal(size=(n, 5)))
    sims = unit(a.numpy()) @ unit(b.numpy()).T
    best, pairs = brute_force(sims)
    for found in (dense_assignment(a, b), one_to_one(a, b, dense_limit=0, candidates=max(m, n))):
        assert found.exact
        assert {i: int(j) for i, j in enumerate(found.partner) if j >= 0} == pairs
        assert found.total == pytest.approx(best, abs=1e-6)


def test_the_sparse_path_equals_the_dense_one_where_its_candidates_suffice() -> None:
    rng = np.random.default_rng(3)
    a = unit(rng.normal(size=(120, 24)))
    b = unit(rng.normal(size=(150, 24)))
    b[rng.permutation(150)[:120]] = unit(a + 0.4 * rng.normal(size=a.shape))  # noisy copies: near, not trivial
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    dense = dense_assignment(a, b)
    sparse = one_to_one(a, b, dense_limit=0, candidates=8)
    np.testing.assert_array_equal(sparse.partner, dense.partner)
    assert sparse.total == pytest.approx(dense.total, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_random_directions_the_sparse_gap_bounds_the_distance_to_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = torch.as_tensor(rng.normal(size=(60, 16))), torch.as_tensor(rng.normal(size=(80, 16)))
    dense = dense_assignment(a, b)
    sparse = one_to_one(a, b, dense_limit=0, candidates=3)
    assert (sparse.partner >= 0).all() and len(set(sparse.partner.tolist())) == 60
    assert sparse.total <= dense.total + 1e-5  # never better than exact (float32 cosines)
    assert dense.total - sparse.total <= sparse.gap * 60 + 1e-5  # and within the bound it reports
    if sparse.exact:  # only when proved: then it is the optimum
        assert sparse.total == pytest.approx(dense.total, abs=1e-4)
    else:
        assert f"at most {sparse.gap:.4f} below the exact one" in sparse.note


def test_a_candidate_graph_without_a_full_matching_leaves_latents_out_or_matches_them_apart() -> None:
    # Every latent of A has b0 as its one candidate; every other latent of B has a0: only two pairs fit.
    e = np.eye(8)
    a = np.stack([unit(e[0] + 0.3 * (e[1] + e[2] + e[3]))] + [unit(e[0] + 0.05 * e[4 + i]) for i in range(3)])
    b = np.stack([e[0], e[1], e[2], e[3]])
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    apart = one_to_one(a, b, dense_limit=0, candidates=1)
    assert apart.n_matched == 2 and (apart.partner == -1).sum() == 2 and np.isnan(apart.cosine).sum() == 2
    assert not apart.exact and "2 unmatched (-1)" in apart.note
    assert apart.partner[0] in (1, 2, 3)  # a0 takes one of its own candidates, and b0 goes to a1..a3
    completed = one_to_one(a, b, dense_limit=4, candidates=1)  # 16 pairs > 4: sparse; 2 x 2 leftovers: dense
    assert completed.n_matched == 4 and completed.method == "top-1 candidates + dense leftovers"
    assert sorted(completed.partner.tolist()) == [0, 1, 2, 3]


def test_shapes_and_names_are_checked_before_weights_load(planted: dict, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"reads 32-wide activations and SAE B .* 40-wide"):
        match_saes(str(planted["a"]), str(planted["d"]), store=Store(tmp_path))
    with pytest.raises(ModelError, match="neither an SAE folder nor RELEASE/SAE_ID"):
        match_saes("just-a-name", str(planted["a"]), store=Store(tmp_path))
    with pytest.raises(ValueError, match="threshold must be a cosine"):
        MatchConfig(threshold=2.0)
    assert not (tmp_path / "matches").exists()


def test_vista_match_prints_the_summary_and_where_the_table_is(planted: dict, tmp_path: Path) -> None:
    done = vista("match", str(planted["a"]), str(planted["b"]), "--k", "2", "--cache", str(tmp_path), "--offline")
    assert done.returncode == 0, done.stderr
    assert "mean matched decoder cosine" in done.stderr and "100.0% of A's latents at or above 0.7" in done.stderr
    assert "method: dense; exact" in done.stderr
    store_line, table_line = done.stdout.splitlines()[-2:]
    assert store_line == f"store: {tmp_path}"
    table = read_match_table(Path(table_line.removeprefix("table: ")))
    assert table.manifest.k == 2 and table.row(0) is not None and table.row(0).matched == planted["perm"][0]


@pytest.mark.parametrize(
    ("which", "words"),
    [
        ("wider", ("SAE A", "reads 32-wide activations and SAE B", "40-wide", "match two SAEs of one model and hook")),
        ("missing", ("SAE directory", "does not exist")),
        ("unknown release", ("unknown SAE release no-such-release",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(planted: dict, tmp_path: Path, which: str, words: tuple[str, ...]) -> None:
    other = {"wider": str(planted["d"]), "missing": str(tmp_path / "nope"), "unknown release": "no-such-release/x"}
    env = dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="300")
    done = vista("match", str(planted["a"]), other[which], "--cache", str(tmp_path), env=env)
    assert done.returncode == 2
    assert_one_line_error(done, *words)
    assert not (tmp_path / "matches").exists()


def test_ctrl_c_says_one_line_exits_130_and_writes_nothing(planted: dict, tmp_path: Path) -> None:
    marker = tmp_path / "held"
    argv = [sys.executable, "-m", "vista_tui.cli", "match", str(planted["a"]), str(planted["b"])]
    process = subprocess.Popen(
        [*argv, "--cache", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1", COLUMNS="200", **{HOLD_ENV: f"assign:{marker}"}),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # only bounds a hang; nothing asserts on time
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), process.communicate(timeout=60)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.rstrip().endswith(interrupted_line("match"))
    assert not (tmp_path / "matches").exists()


def test_help_says_how_exact_the_matching_is_and_match_may_download() -> None:
    from pipeline import cli

    shown = vista("match", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    for words in ("RELEASE/SAE_ID", "2^24", "upper bound", "--candidates", "--threshold COS", "130 interrupted"):
        assert words in text, words
    assert cli.argv_command(["match"]) not in cli.OFFLINE_COMMANDS  # downloads like `build`, unless --offline
