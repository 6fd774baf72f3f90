"""What a reading is scored on: a node's held-out contexts, and non-activating items to tell them from.

**Held out.** The label step quoted each node's most telling contexts to the LLM
(`pipeline.label.prompts.representative_rows`); scoring the LLM's own label on them would
reward memory, not prediction, so they are left out. The rest of the node's members are
held out; a sample of them is drawn evenly across the node's activation deciles, as delphi
draws its test examples from activation quantiles.

**Negatives.** `random`: the harvest's windows where the latent is 0 on every token
(`<map>/negatives.parquet`). `siblings`: the parent's other contexts (the latent fires on them
too, in another sense: hard negatives that ask whether the reading is specific to its node).
`store`: contexts of the store's other maps (other latents' top contexts).

Every draw is seeded by the run's seed and the node id, so a rerun draws the same items and
finds its answers in the cache.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from pipeline.label.prompts import RunContexts, representative_rows
from pipeline.score.config import ScoreConfig, ScoreError
from vista_tui.mapdata import ClusterNode, MapError, MapReader, read_negatives

STRATA = 10
"""Activation strata a node's held-out sample is spread over (delphi's deciles)."""


@dataclass(frozen=True)
class Item:
    """One text shown to a scorer: a window of display tokens, and whether the latent fires there."""

    tokens: tuple[str, ...]
    focus: int
    """The token the latent fired on (activating items) or the drawn token (negatives)."""
    activating: bool
    highlight: int
    """The token the fuzzing scorer marks: the focus of an activating item, a token where the latent
    is 0 in a non-activating one."""

    @property
    def text(self) -> str:
        """The window as text."""
        return "".join(self.tokens)


@dataclass
class NodeSample:
    """A node's items: for the LLM scorers (small), and for the embedding scorer (large)."""

    positives: list[Item] = field(default_factory=list)
    negatives: list[Item] = field(default_factory=list)
    embedding_positives: list[Item] = field(default_factory=list)
    embedding_negatives: list[Item] = field(default_factory=list)


def node_rng(seed: int, node_id: str, purpose: str = "") -> np.random.Generator:
    """A generator seeded by the run's seed and the node (and what it draws for): the same draw on every rerun."""
    digest = hashlib.blake2b(f"{node_id}\x00{purpose}".encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


def held_out_rows(
    reader: MapReader, node: ClusterNode, label_contexts: int, contexts: RunContexts | None = None
) -> np.ndarray:
    """The node's member rows that the label step did not quote (all of them when it quoted none)."""
    members = np.asarray(node.members, dtype=np.int64)
    if label_contexts <= 0:
        return members
    quoted = representative_rows(reader, node, label_contexts, contexts=contexts)
    return members[~np.isin(members, np.asarray(quoted, dtype=np.int64))]


def spread_sample(rows: np.ndarray, activations: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `n` of `rows`, drawn evenly from STRATA activation strata (all of them when there are no more than n)."""
    if len(rows) <= n:
        return rows
    ordered = rows[np.argsort(-activations[rows], kind="stable")]
    strata = [part for part in np.array_split(ordered, min(STRATA, n)) if len(part)]
    quota = np.full(len(strata), n // len(strata))
    quota[: n % len(strata)] += 1
    drawn = [rng.choice(part, size=min(q, len(part)), replace=False) for part, q in zip(strata, quota, strict=True)]
    picked = np.concatenate(drawn)
    if len(picked) < n:  # a short stratum: the rest from what is left
        left = np.setdiff1d(rows, picked)
        picked = np.concatenate([picked, rng.choice(left, size=n - len(picked), replace=False)])
    return picked


def _random_highlight(tokens: tuple[str, ...], avoid: set[int], rng: np.random.Generator) -> int:
    """A random token of the window with some text, outside `avoid` (any token when none is left)."""
    choices = [i for i, token in enumerate(tokens) if token.strip() and i not in avoid]
    if not choices:
        choices = [i for i in range(len(tokens)) if i not in avoid] or list(range(len(tokens)))
    return int(rng.choice(choices))


class NegativePool:
    """Where a run's non-activating items come from (one per run, read once)."""

    def __init__(self, cfg: ScoreConfig, reader: MapReader, contexts: RunContexts) -> None:
        """Read what the source needs; ScoreError (one line) when it has nothing to give."""
        self.cfg = cfg
        self.reader = reader
        self.contexts = contexts
        self._items: list[Item] = []
        if cfg.negatives == "random":
            self._items = self._random()
        elif cfg.negatives == "store":
            self._items = self._store()

    def _random(self) -> list[Item]:
        """The harvest's all-zero windows; the drawn token is the highlight."""
        table = read_negatives(self.reader.path)
        if table is None or table.num_rows == 0:
            raise ScoreError(
                f"map {self.reader.path.name} has no negatives.parquet (built before harvest version 4, or with "
                "--negatives 0): rebuild it, or score with --negatives siblings or --negatives store"
            )
        tokens = table.column("tokens").to_pylist()
        focus = table.column("focus").to_pylist()
        return [
            Item(tuple(window), int(at), activating=False, highlight=int(at))
            for window, at in zip(tokens, focus, strict=True)
            if window
        ]

    def _store(self) -> list[Item]:
        """Contexts of the store's other maps, `store_per_map` from each, none this map also holds."""
        maps_dir = self.reader.path.parent
        own = set(self.reader.context_ids)
        rng = node_rng(self.cfg.seed, self.reader.path.name, "store")
        items: list[Item] = []
        for other in sorted(path for path in maps_dir.iterdir() if path.is_dir() and path != self.reader.path):
            try:
                table = MapReader(other).contexts_table(["context_id", "tokens", "focus"])
            except (MapError, OSError):
                continue  # not a map, or a broken one: the others still serve
            rows = rng.permutation(table.num_rows)[: self.cfg.store_per_map * 2]
            taken = table.take(rows).to_pylist()
            kept = [row for row in taken if row["context_id"] not in own and row["tokens"]][: self.cfg.store_per_map]
            for row in kept:
                window = tuple(row["tokens"])
                focus = int(row["focus"])
                items.append(Item(window, focus, activating=False, highlight=_random_highlight(window, {focus}, rng)))
        if not items:
            raise ScoreError(
                f"the store {maps_dir.parent} holds no other map to draw negatives from; score with --negatives "
                "random or siblings"
            )
        return items

    def for_node(self, node: ClusterNode, parent: ClusterNode | None, n: int, rng: np.random.Generator) -> list[Item]:
        """Up to `n` non-activating items for `node` ([] for the root with `siblings`: it has none)."""
        if self.cfg.negatives != "siblings":
            if len(self._items) <= n:
                return list(self._items)
            return [self._items[int(i)] for i in np.sort(rng.choice(len(self._items), size=n, replace=False))]
        if parent is None:
            return []
        others = np.setdiff1d(np.asarray(parent.members, np.int64), np.asarray(node.members, np.int64))
        if len(others) > n:
            others = np.sort(rng.choice(others, size=n, replace=False))
        return [
            Item(tuple(tokens), focus, activating=False, highlight=_random_highlight(tuple(tokens), {focus}, rng))
            for tokens, focus in self.contexts.windows(others)
            if tokens
        ]


def node_sample(
    cfg: ScoreConfig,
    reader: MapReader,
    node: ClusterNode,
    parent: ClusterNode | None,
    pool: NegativePool,
    contexts: RunContexts,
) -> NodeSample:
    """The items every reading of `node` is scored on (the same for all its readings)."""
    held = held_out_rows(reader, node, cfg.label_contexts, contexts)
    activations = reader.activations
    sample = NodeSample()

    def positives(n: int, purpose: str) -> list[Item]:
        """n held-out contexts spread over the activation strata, highlighted on their focus token."""
        rows = spread_sample(held, activations, n, node_rng(cfg.seed, node.node_id, purpose))
        return [
            Item(tuple(tokens), focus, activating=True, highlight=focus)
            for tokens, focus in contexts.windows(rows)
            if tokens
        ]

    if cfg.llm_scorers:
        sample.positives = positives(cfg.n_positive, "llm")
        sample.negatives = pool.for_node(node, parent, cfg.n_negative, node_rng(cfg.seed, node.node_id, "llm-neg"))
    if "embedding" in cfg.scorers:
        sample.embedding_positives = positives(cfg.embedding_positive, "embedding")
        sample.embedding_negatives = pool.for_node(
            node, parent, cfg.embedding_negative, node_rng(cfg.seed, node.node_id, "embedding-neg")
        )
    return sample
