"""Synthetic atlases: `write_atlas` over deterministic rows, with tiny maps for a few latents."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from tests.helpers.small_map import small_map
from vista_tui.mapdata import AtlasManifest, LatentRow, Store, write_atlas

WORDS = (" the", " music", " river", " bank", " want", " need", "ing", " code", " def", " 42", "\n", " über")
LABELS = ("music and melody", "river banks", "wanting things", "python code", "numbers", "")
EXPLANATIONS = ("songs and melodies", "money and banks", "desire or need", "source code", "", "")
CREATED = "2026-11-01T12:00:00+00:00"
"""Pinned, so that the picker and snapshots read the same on every run."""


def atlas_manifest(atlas_id: str, latents: Iterable[int], d_sae: int) -> AtlasManifest:
    """A manifest for a synthetic atlas of these latents."""
    return AtlasManifest(
        atlas_id=atlas_id,
        created=CREATED,
        model="tiny-gpt2",
        hook="blocks.1.hook_resid_post",
        sae="synthetic-sae",
        d_sae=d_sae,
        d_model=64,
        corpus="synthetic corpus",
        n_tokens_seen=1_000_000,
        n_documents=2_000,
        latents=tuple(sorted(latents)),
        params={"top_n": 200, "window": 16, "max_length": 128, "batch_size": 8},
    )


def synthetic_rows(n: int, seed: int = 0, hostile: bool = False) -> list[LatentRow]:
    """`n` latents (0 … n-1) with varied, deterministic figures; every 7th is dead, every 5th has no label.

    `hostile` puts terminal escapes and bidi controls into the first latent's tokens and label.
    """
    rng = np.random.default_rng(seed)
    density = rng.random(n) ** 3 * 0.05
    max_act = (rng.random(n) * 20).astype(np.float32)
    n_ctx = rng.integers(20, 4000, size=n)
    gain = (rng.random(n) * 0.8).astype(np.float32)
    word_picks = rng.integers(0, len(WORDS), size=(n, 3))
    rows = []
    for latent in range(n):
        dead = latent % 7 == 3
        tokens = tuple(WORDS[i] for i in dict.fromkeys(word_picks[latent].tolist()))
        label = "" if latent % 5 == 4 else LABELS[latent % len(LABELS)]
        explanation = EXPLANATIONS[(latent // 2) % len(EXPLANATIONS)]
        if hostile and latent == 0:
            tokens = ("\x1b[31mred", "\u202eevil")
            label = "label\x1b]0;title\x07 with escapes"
        rows.append(
            LatentRow(
                latent=latent,
                density=0.0 if dead else float(density[latent]),
                n_fired=0 if dead else int(density[latent] * 1_000_000),
                max_activation=0.0 if dead else float(max_act[latent]),
                n_contexts=0 if dead else int(n_ctx[latent]),
                top_tokens=() if dead else tokens,
                top_counts=() if dead else tuple(range(len(tokens) * 10, 0, -10)),
                explanation=explanation,
                llm_label="" if dead else label,
                fidelity_k=-1 if dead else 15,
                fidelity_gain=math.nan if dead else float(gain[latent]),
                error="never fired in the corpus" if dead else "",
            )
        )
    return rows


def build_atlas(
    store_root: Path,
    atlas_id: str = "syn-atlas",
    n: int = 40,
    maps: Iterable[int] = (0, 1, 2),
    seed: int = 0,
    hostile: bool = False,
    order: Iterable[int] = (),
) -> Path:
    """Write a synthetic atlas of `n` latents under `store_root/atlases/`, with tiny maps for `maps`; `order`:
    the atlas's order (those latents' `order` is their position in it)."""
    atlas_dir = Store(store_root).atlas_path(atlas_id)
    rank = {latent: position for position, latent in enumerate(order)}
    rows = [
        LatentRow(**{**row.__dict__, "order": rank.get(row.latent, -1)}) for row in synthetic_rows(n, seed, hostile)
    ]
    built = set(maps)
    for index, row in enumerate(rows):
        if row.latent in built and not row.error:
            map_id = f"{atlas_id}_L{row.latent}"
            map_dir = Store(atlas_dir).map_path(map_id)
            small_map(map_dir)
            _set_map_latent(map_dir, row.latent)
            rows[index] = LatentRow(**{**row.__dict__, "map_id": map_id, "built": True})
    write_atlas(atlas_dir, atlas_manifest(atlas_id, range(n), d_sae=max(n, 16)), rows)
    return atlas_dir


def _set_map_latent(map_dir: Path, latent: int) -> None:
    """The map's manifest names `latent` and a pinned time."""
    path = map_dir / "manifest.json"
    raw = json.loads(path.read_text())
    raw["provenance"]["latent"] = latent
    raw["created"] = CREATED
    path.write_text(json.dumps(raw, indent=2))
