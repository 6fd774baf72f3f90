"""A store with one latent across two SAEs: a narrow SAE's map with children in a wide SAE, the wide
SAE's map of its strongest child, a match table between the two SAEs, and maps outside the match.

- `narrow`: latent 42 of NARROW (the synthetic map, 240 contexts) with `children.json`. Its planted
  children in WIDE: 1234 fires on the muscle sub-senses and on classical music, 1500 on jazz and
  folk music (with 1234 weaker beside it), 77 on mustard, 9 on modern museums; history museums
  and the noise fire none. So the music node splits between 1234 and 1500, and 1234 dominates
  several nodes (the muscle ones and classical).
- `wide-1234`: latent 1234 of WIDE, the synthetic map of the same corpus with 200 contexts: its
  context ids are those of narrow's first 200 rows, its tree the same shape over them.
- `wide-77`: latent 77 of WIDE, a tiny map of another corpus (no context in common with narrow).
- `lonely`: latent 5 of an SAE that no match table names, built without `--also-sae`.
- the match table NARROW vs WIDE: latent 42's decoder neighbours 1234 (0.83), 77 (0.71), 1500 (0.55),
  9 (0.40); encoder neighbours 1234 (0.77), 1500 (0.50); one-to-one partner 1234. No map of 1500.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.helpers.small_map import small_map
from tests.helpers.synthetic_map import build_synthetic_map
from vista_tui.mapdata import MapReader
from vista_tui.mapdata.children import map_children, write_children
from vista_tui.mapdata.matches import LatentMatches, MatchManifest, SaeRef, match_id_for, write_match_table

NARROW = "syn-release/narrow-512"
WIDE = "syn-release/wide-2048"
LONELY = "syn-release/lonely-512"
NEIGHBOURS = [(1234, 0.83), (77, 0.71), (1500, 0.55), (9, 0.40)]
CHILD_OF_SUBSENSE: dict[str, list[tuple[int, float]]] = {
    "anatomy": [(1234, 3.0)],
    "training": [(1234, 2.5)],
    "classical": [(1234, 2.0)],
    "jazz": [(1500, 3.0), (1234, 1.0)],
    "folk": [(1500, 2.0), (1234, 0.5)],
    "cooking": [(77, 2.0)],
    "plants": [(77, 1.5)],
    "modern": [(9, 1.0)],
    "history": [],
}


@dataclass(frozen=True)
class CrossSaeStore:
    root: Path

    def map_dir(self, name: str) -> Path:
        return self.root / "maps" / name


def _children_json(map_dir: Path) -> None:
    reader = MapReader(map_dir)
    nodes = reader.tree
    firings: list[list[tuple[int, float]]] = [[] for _ in range(reader.n_contexts)]
    for node in nodes:
        if node.depth == 2 and node.labels.keywords:
            for row in node.members:
                firings[int(row)] = list(CHILD_OF_SUBSENSE[node.labels.keywords[0]])
    children = map_children(
        sae=WIDE,
        d_sae=2048,
        latent=42,
        neighbours=NEIGHBOURS,
        contexts=firings,
        node_members={node.node_id: node.members.tolist() for node in nodes},
    )
    write_children(map_dir, children)


def _match_table(root: Path) -> None:
    manifest = MatchManifest(
        match_id=match_id_for(NARROW, WIDE),
        created="2026-11-01T12:00:00+00:00",
        sae_a=SaeRef(NARROW, d_in=64, d_sae=512),
        sae_b=SaeRef(WIDE, d_in=64, d_sae=2048),
        k=4,
        threshold=0.7,
        method="dense",
        exact=True,
        mean_matched_cosine=0.8,
        share_above=0.5,
        n_matched=3,
    )
    rows = [
        LatentMatches(
            latent=42,
            decoder_neighbours=tuple(j for j, _ in NEIGHBOURS),
            decoder_cosines=tuple(c for _, c in NEIGHBOURS),
            encoder_neighbours=(1234, 1500),
            encoder_cosines=(0.77, 0.50),
            matched=1234,
            matched_cosine=0.83,
        ),
        LatentMatches(
            latent=5,
            decoder_neighbours=(1234, 3),
            decoder_cosines=(0.31, 0.2),
            encoder_neighbours=(),
            encoder_cosines=(),
            matched=3,
            matched_cosine=0.2,
        ),
        LatentMatches(
            latent=6,
            decoder_neighbours=(77,),
            decoder_cosines=(0.9,),
            encoder_neighbours=(),
            encoder_cosines=(),
            matched=77,
            matched_cosine=0.9,
        ),
    ]
    write_match_table(root / "matches" / manifest.match_id, manifest, rows)


def cross_sae_store(root: Path) -> CrossSaeStore:
    """Write the store described in the module docstring under `root`."""
    store = CrossSaeStore(root)
    narrow = build_synthetic_map(store.map_dir("narrow"), n=240, seed=0, latent=42, sae=NARROW, d_sae=512)
    _children_json(narrow)
    build_synthetic_map(store.map_dir("wide-1234"), n=200, seed=0, latent=1234, sae=WIDE, d_sae=2048)
    small_map(store.map_dir("wide-77"), sae=WIDE, latent=77)
    build_synthetic_map(store.map_dir("lonely"), n=120, seed=1, latent=5, sae=LONELY)
    _match_table(root)
    return store
