"""The rule that picks the demo's latents, on hand-made statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.demo.latents import (
    LatentStats,
    latent_stats_from_firings,
    load_latent_stats,
    most_varied,
    pick_latents,
    save_latent_stats,
    token_masks,
)

N_TOKENS = 10_000


def _stats(rows: list[dict]) -> LatentStats:
    """Statistics of len(rows) latents; each row gives fire_count, entropy, n_distinct, top_share,
    punct_share, continuation_share and tokens (its most common token ids)."""
    m = 8
    top_tokens = np.full((len(rows), m), -1, dtype=np.int32)
    for i, row in enumerate(rows):
        tokens = row.get("tokens", list(range(1000 + 10 * i, 1000 + 10 * i + m)))
        top_tokens[i, : len(tokens)] = tokens
    return LatentStats(
        n_tokens=N_TOKENS,
        top_k=256,
        fire_count=np.array([r.get("fire_count", 200) for r in rows], dtype=np.int64),
        n_distinct=np.array([r.get("n_distinct", 60) for r in rows], dtype=np.int64),
        entropy=np.array([r.get("entropy", 5.0) for r in rows], dtype=np.float64),
        top_share=np.array([r.get("top_share", 0.1) for r in rows], dtype=np.float64),
        punct_share=np.array([r.get("punct_share", 0.0) for r in rows], dtype=np.float64),
        continuation_share=np.array([r.get("continuation_share", 0.0) for r in rows], dtype=np.float64),
        max_activation=np.ones(len(rows), dtype=np.float32),
        top_tokens=top_tokens,
        top_token_counts=np.where(top_tokens >= 0, 3, 0).astype(np.int32),
    )


CASES = [
    {"fire_count": 0, "n_distinct": 0, "entropy": 0.0, "top_share": 0.0},  # 0: dead
    {"entropy": 9.0, "top_share": 0.9},  # 1: one token holds 90 % of its top activations
    {"entropy": 9.0, "punct_share": 0.8},  # 2: fires on punctuation
    {"entropy": 9.0, "fire_count": 10},  # 3: too rare for hundreds of contexts
    {"entropy": 9.0, "fire_count": 3000},  # 4: dense (30 % of tokens)
    {"entropy": 6.0},  # 5: rich
    {"entropy": 7.0, "tokens": [1, 2, 3, 4, 5, 6, 7, 8]},  # 6: rich, the richest
    {"entropy": 6.5, "tokens": [1, 2, 3, 4, 5, 6, 7, 9]},  # 7: rich, but the same words as 6
    {"entropy": 5.0},  # 8: rich
    {"entropy": 9.0, "n_distinct": 5},  # 9: too few distinct tokens
    {"entropy": 9.0, "continuation_share": 0.6},  # 10: fires inside words ("##ing"): spelling
]


def test_picks_rich_latents_by_entropy_skipping_lookalikes() -> None:
    assert pick_latents(_stats(CASES), n=3) == [6, 5, 8]


def test_ties_break_by_firing_count_then_index() -> None:
    rows = [{"entropy": 6.0, "fire_count": 200}, {"entropy": 6.0, "fire_count": 250}, {"entropy": 6.0}]
    assert pick_latents(_stats(rows), n=3) == [1, 0, 2]


def test_fills_up_from_the_other_latents_that_fired() -> None:
    picked = pick_latents(_stats(CASES), n=8)
    assert picked[:3] == [6, 5, 8]
    assert len(picked) == 8 and len(set(picked)) == 8
    assert 0 not in picked  # a dead latent is never picked
    # The fill keeps the ranking: highest entropy first, more firings first, then the lower index.
    assert picked[3:] == [4, 1, 2, 9, 10]


def test_strict_does_not_fill() -> None:
    assert pick_latents(_stats(CASES), n=8, strict=True) == [6, 5, 8]


def test_most_varied_for_the_atlas_in_tiers() -> None:
    stats = _stats(CASES)
    # The rule's picks; the rest of the density band by entropy (1, 2, 9, 10 at 9 bits; then the lookalike 7);
    # then the others that fired, dense before rare at equal entropy (4, 3); never the dead latent 0.
    assert most_varied(stats, 20) == [6, 5, 8, 1, 2, 9, 10, 7, 4, 3]
    assert most_varied(stats, 4) == [6, 5, 8, 1]
    # The demo's maps come first, in their order, and count towards n.
    assert most_varied(stats, 5, first=(9, 6)) == [9, 6, 5, 8, 1]
    assert most_varied(stats, 1, first=(9, 6)) == [9, 6]  # `first` is never cut
    with pytest.raises(ValueError, match="n must be positive"):
        most_varied(stats, 0)


def test_thresholds_are_parameters() -> None:
    stats = _stats(CASES)
    relaxed = {"max_top_share": 1.0, "min_distinct": 1, "max_punct_share": 1.0, "max_fire_rate": 1.0}
    assert pick_latents(stats, n=1, **relaxed) == [4]
    assert pick_latents(stats, n=1, min_fires=5000, min_fire_rate=0.0) == [4]  # only latent 4 fires that often
    assert pick_latents(stats, n=2, max_overlap=1.0) == [6, 7]


def test_deterministic() -> None:
    stats = _stats(CASES)
    assert pick_latents(stats, 4) == pick_latents(stats, 4)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be positive"):
        pick_latents(_stats(CASES), n=0)
    with pytest.raises(ValueError, match="min_fire_rate"):
        pick_latents(_stats(CASES), min_fire_rate=0.5, max_fire_rate=0.1)


def test_statistics_from_firings() -> None:
    # Latent 0 fires on tokens 5, 5, 6, 7 (values 4, 3, 2, 1); latent 2 on a comma (id 1) twice; latent 1 never.
    rows = np.array([0, 1, 2, 3, 4, 5])
    latents = np.array([0, 0, 0, 0, 2, 2])
    values = np.array([4.0, 3.0, 2.0, 1.0, 1.0, 2.0], dtype=np.float32)
    token_ids = np.array([5, 5, 6, 7, 1, 1])
    punctuation = np.zeros(10, dtype=bool)
    punctuation[1] = True
    continuation = np.zeros(10, dtype=bool)
    continuation[6] = True
    stats = latent_stats_from_firings(
        rows, latents, values, token_ids, punctuation, d_sae=3, n_tokens=6, continuation=continuation, top_k=3
    )

    assert stats.fire_count.tolist() == [4, 0, 2]
    # Top 3 of latent 0: tokens 5, 5, 6 (the 1.0 on token 7 is cut).
    assert stats.n_distinct.tolist() == [2, 0, 1]
    assert stats.entropy[0] == pytest.approx(-(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3))
    assert stats.entropy[1] == 0.0 and stats.entropy[2] == 0.0
    assert stats.top_share.tolist() == pytest.approx([2 / 3, 0.0, 1.0])
    assert stats.punct_share.tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert stats.continuation_share.tolist() == pytest.approx([1 / 3, 0.0, 0.0])
    assert stats.max_activation.tolist() == [4.0, 0.0, 2.0]
    assert stats.top_tokens[0, :3].tolist() == [5, 6, -1]
    assert stats.top_token_counts[0, :2].tolist() == [2, 1]
    assert stats.fire_rate.tolist() == pytest.approx([4 / 6, 0.0, 2 / 6])


def test_statistics_round_trip(tmp_path: Path) -> None:
    stats = _stats(CASES)
    save_latent_stats(stats, tmp_path / "stats.npz")
    loaded = load_latent_stats(tmp_path / "stats.npz")
    assert loaded.n_tokens == stats.n_tokens and loaded.top_k == stats.top_k
    for name in ("fire_count", "n_distinct", "entropy", "top_share", "punct_share", "continuation_share", "top_tokens"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))
    assert pick_latents(loaded, 3) == pick_latents(stats, 3)


class _Tokenizer:
    """The part of a Hugging Face tokenizer that token_masks reads."""

    def __init__(self, vocab: dict[str, int], special: list[str]) -> None:
        self.vocab, self.all_special_tokens = vocab, special

    def get_vocab(self) -> dict[str, int]:
        return self.vocab

    def __len__(self) -> int:
        return len(self.vocab)


def test_token_masks_wordpiece_and_bpe() -> None:
    wordpiece = _Tokenizer({"[CLS]": 0, "the": 1, "##ing": 2, ",": 3, "##.": 4, "42": 5, "(": 6}, ["[CLS]"])
    punctuation, continuation = token_masks(wordpiece)
    assert punctuation.tolist() == [False, False, False, True, True, False, True]
    assert continuation.tolist() == [False, False, True, False, True, False, False]

    bpe = _Tokenizer({"<s>": 0, "Ġthe": 1, "ing": 2, ",": 3, "Ġ(": 4, "Ġ42": 5}, ["<s>"])
    punctuation, continuation = token_masks(bpe)
    assert punctuation.tolist() == [False, False, False, True, True, False]
    assert continuation.tolist() == [False, False, True, False, False, False]


def test_the_demo_atlas_is_the_maps_latents_then_the_most_varied(tmp_path: Path) -> None:
    from pipeline.cli import make_parser
    from pipeline.demo.run import ATLAS_MAX_TOKENS, DemoConfig, atlas_config

    parser = make_parser()
    default = DemoConfig.from_args(parser.parse_args(["demo"]))
    assert (default.atlas_latents, default.atlas_top_n) == (64, 300)
    stats = _stats(CASES)
    cfg = DemoConfig.from_args(parser.parse_args(["demo", "--atlas-latents", "5", "--atlas-top-n", "50"]))
    atlas = atlas_config(cfg, tmp_path, stats, first=(9,))
    assert atlas is not None
    assert atlas.first == (9, 6, 5, 8, 1)  # built in this order
    assert atlas.harvest.latents == (1, 5, 6, 8, 9) and atlas.harvest.top_n == 50
    assert atlas.harvest.sae_path == str(tmp_path) and atlas.harvest.max_tokens == ATLAS_MAX_TOKENS
    small = DemoConfig.from_args(parser.parse_args(["demo", "--max-tokens", "2000"]))
    assert atlas_config(small, tmp_path, stats, first=()).harvest.max_tokens == 2000  # never more than the maps read
    assert atlas_config(DemoConfig(atlas_latents=0), tmp_path, stats, first=(9,)) is None
    with pytest.raises(ValueError, match="atlas_latents must be at least 0, got -1"):
        DemoConfig(atlas_latents=-1)


@pytest.mark.parametrize(
    ("no_ray", "installed", "cpus", "on_ray"),
    [(False, True, 16, True), (True, True, 16, False), (False, False, 16, False), (False, True, 2, False)],
)
def test_the_demo_atlas_goes_on_ray_only_where_it_pays(no_ray: bool, installed: bool, cpus: int, on_ray: bool) -> None:
    from pipeline.cli import demo_on_ray

    assert demo_on_ray(no_ray, installed, cpus) is on_ray
