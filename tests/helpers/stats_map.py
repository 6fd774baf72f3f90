"""The seeded focus-token map (tests/helpers/focus_map.py) with a `stats.json` written through the real writer.

The statistics are fixed and whole numbers where they are shown (counts, a power-of-two
histogram range), computed from the map's own activations and members so that the per-node
figures agree with the tree: the latent's histogram is the map's top-N plus a fixed tail of
weaker firings, every node's histogram bins its members on the same grid, positions are
planted. Quantile examples and logits hold escape sequences and control characters, to show
that the view makes them inert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.helpers.focus_map import build_focus_map
from vista_tui.mapdata import (
    STATS_FILE,
    DecoderLogits,
    Histogram,
    LatentStats,
    MapReader,
    NodeStats,
    QuantileExample,
    QuantileExamples,
    TokenLogit,
    write_latent_stats,
)

BINS = 128
MAX_LENGTH = 32
N_TOKENS_SEEN = 1_000_000
ESCAPE_TOKENS = ("\x1b[31m", "\x07", "\x1b]52;c;aGVsbG8=\x07", "\x1b[2J")
"""Tokens that would colour, beep, write the clipboard and clear the screen if they reached the terminal raw."""

POSITIVE_LOGITS = (
    TokenLogit(" want", 1, 3.25),
    TokenLogit(" wants", 2, 2.5),
    TokenLogit(" desire", 3, 1.75),
    TokenLogit("\x1b[2J", 4, 1.5),
)
NEGATIVE_LOGITS = (TokenLogit(" hate", 5, -2.0), TokenLogit(" refuse", 6, -1.5), TokenLogit("\x00nul", 7, -1.25))


def _bins(values: np.ndarray, hi: float) -> list[int]:
    """`values` counted in BINS equal bins over [0, hi), the last one closed."""
    index = np.minimum((values.astype(np.float64) / hi * BINS).astype(np.int64), BINS - 1)
    return np.bincount(index, minlength=BINS).tolist()


def _focus_position(row: int) -> int:
    """The planted input position of row `row`'s focus token."""
    return 2 + (row * 7) % 20


def _quantile_examples(max_activation: float) -> QuantileExamples:
    """Four intervals over (0, max]: two examples in each of the top two, one (with escapes) below, none in the lowest."""
    edges = tuple(max_activation * i / 4 for i in range(5))

    def example(interval: int, fraction: float, tokens: list[str], focus: int, doc: str) -> QuantileExample:
        activation = edges[interval] + (edges[interval + 1] - edges[interval]) * fraction
        shading = [activation if i == focus else activation / 4 if i == focus + 1 else 0.0 for i in range(len(tokens))]
        return QuantileExample(interval, activation, doc, tuple(tokens), focus, tuple(shading))

    return QuantileExamples(
        edges=edges,
        per_quantile=2,
        examples=(
            example(
                1,
                0.5,
                [" see", ESCAPE_TOKENS[0], " red", ESCAPE_TOKENS[1], " want", ESCAPE_TOKENS[2], " now"],
                4,
                "q/esc",
            ),
            example(2, 0.75, [" they", " said", " we", " need", " more", " time"], 3, "q/need"),
            example(2, 0.25, [" I", " do", " not", " want", " it"], 3, "q/want-low"),
            example(3, 0.9, [" I", " really", " want", " to", " go", " home", " tonight"], 2, "q/want-high"),
            example(3, 0.6, [" you", " wanted", " to", " stay"], 1, "q/wanted"),
        ),
    )


def latent_stats_for(
    map_dir: Path, *, logits: bool = True, logits_note: str = "", quantiles: bool = True
) -> LatentStats:
    """Statistics that agree with the map at `map_dir`: its nodes' members, activations and planted positions."""
    reader = MapReader(map_dir)
    activations = reader.activations
    max_activation = float(activations.max())
    hi = float(2 ** int(np.ceil(np.log2(max_activation))))
    top_n = _bins(activations, hi)
    top_bin = max(i for i, count in enumerate(top_n) if count)
    # The weaker firings below the top-N: many small ones, fewer as the activation grows.
    tail = [int(3000 * 0.8**i) if i <= top_bin else 0 for i in range(BINS)]
    every = [a + b for a, b in zip(top_n, tail, strict=True)]
    rows = np.arange(len(activations))
    positions_of_rows = np.array([_focus_position(int(row)) for row in rows])
    tail_positions = [max(0, 400 - 12 * p) for p in range(MAX_LENGTH)]
    all_positions = np.bincount(positions_of_rows, minlength=MAX_LENGTH) + np.array(tail_positions)
    all_positions *= sum(every) // int(all_positions.sum())  # about as many firings as the histogram counts
    nodes = {
        node.node_id: NodeStats(
            activations=Histogram(0.0, hi, tuple(_bins(activations[node.members], hi))),
            positions=tuple(np.bincount(positions_of_rows[node.members], minlength=MAX_LENGTH).tolist()),
        )
        for node in reader.tree
    }
    return LatentStats(
        latent=reader.manifest.provenance.latent,
        n_tokens_seen=N_TOKENS_SEEN,
        n_fired=sum(every),
        max_activation=max_activation,
        activations=Histogram(0.0, hi, tuple(every)),
        positions=tuple(int(count) for count in all_positions),
        nodes=nodes,
        quantiles=_quantile_examples(max_activation) if quantiles else None,
        logits=DecoderLogits(POSITIVE_LOGITS, NEGATIVE_LOGITS) if logits else None,
        logits_note="" if logits else logits_note,
    )


def build_stats_map(map_dir: Path, *, logits: bool = True, logits_note: str = "", quantiles: bool = True) -> Path:
    """The seeded focus map at `map_dir` with its statistics (`logits=False`: none, with `logits_note`;
    `quantiles=False`: no quantile examples)."""
    build_focus_map(map_dir)
    stats = latent_stats_for(map_dir, logits=logits, logits_note=logits_note, quantiles=quantiles)
    write_latent_stats(map_dir, stats)
    return map_dir


def corrupt_stats(map_dir: Path) -> Path:
    """Overwrite the map's `stats.json` with a truncated one; returns its path."""
    path = map_dir / STATS_FILE
    path.write_text('{"schema_version": 1, "latent": 17', encoding="utf-8")
    return path
