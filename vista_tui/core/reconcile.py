"""Annotations after a rebuild: which current node an annotation whose node is gone moves to.

Pure matching (no database): the store's `reconcile` reads the annotations, asks
`match_moves` where the lost ones go, and writes the moves and orphanings in one transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple


class Move(NamedTuple):
    """An annotation that `reconcile` moved to the current node with the most shared members."""

    old: str
    new: str
    jaccard: float


@dataclass(frozen=True)
class ReconcileReport:
    """What `reconcile` did: annotations moved, and those left without a node (all of them, not only new)."""

    moved: tuple[Move, ...] = ()
    orphaned: tuple[str, ...] = ()
    restored: tuple[str, ...] = ()
    """Orphans whose node is in the tree again."""


def match_moves(
    lost: Sequence[tuple[str, set[str], int]],
    nodes: Mapping[str, Sequence[str]],
    annotated: set[str],
    threshold: float,
) -> list[Move]:
    """Each lost annotation (node id, member ids, orphaned) paired with the not yet annotated current
    node of highest Jaccard overlap when that is at least `threshold`; best pairs first, each node once."""
    where: dict[str, list[str]] = defaultdict(list)
    if lost:
        for current, member_ids in nodes.items():
            if current not in annotated:
                for context_id in member_ids:
                    where[str(context_id)].append(current)
    candidates: list[tuple[float, str, str]] = []
    for old, member_set, _ in lost:
        shared: Counter[str] = Counter(n for c in member_set for n in where.get(c, ()))
        for current, overlap in shared.items():
            union = len(member_set) + len(nodes[current]) - overlap
            score = overlap / union if union else 0.0
            if score >= threshold:
                candidates.append((score, old, current))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    moves: list[Move] = []
    taken: set[str] = set()
    placed: set[str] = set()
    for score, old, current in candidates:
        if old in placed or current in taken:
            continue
        moves.append(Move(old, current, round(score, 6)))
        placed.add(old)
        taken.add(current)
    return moves
