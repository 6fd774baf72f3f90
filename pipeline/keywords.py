"""Keywords per cluster node by class-based TF-IDF, and a visual prompt built from them.

The offline label of a node (the method's "Labels" step): BERTopic's c-TF-IDF, where a "class" is
everything a node's contexts say, concatenated. A cluster is scored against its siblings
(the other children of its parent, the parent's noise among them): a word weighs

    W(t, c) = tf(t, c) / |c|  ·  log(1 + A / f(t))

with tf the word's count in class c, |c| the class's word count, f(t) the word's count over
all the sibling classes and A their mean word count (with `reduce_frequent_words`, as in
BERTopic, the square root of tf/|c|). So a word scores for a cluster when it
is frequent there and rare over the siblings together; the words every sibling uses a lot
(what their parent is about) sink. When the parent's members are not all covered by its
children, the uncovered rest joins the comparison as one more (unlabelled) class; a node
with nothing to compare against (the root, an only child) is scored against its own
contexts as documents instead: W = tf / |c| · log(1 + n / df(t)).

Words: a context's display tokens are joined back into text (pieces that begin with a
space start a word, others continue the one before; a WordPiece "##" marks a continuation
too), split into runs of letters, digits and underscores, lowercased, with leading and
trailing underscores dropped; runs without a letter, shorter than `min_word_length`, or in
scikit-learn's English stop-word list are skipped. The word that holds the context's focus
token counts `focus_weight` times instead of once: the latent fired there.

A keyword must also occur in at least `min_df` of the node's contexts (in all of them when
the node is smaller), so one long context cannot name a cluster. Ties rank alphabetically;
the output depends only on the inputs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.steps import Progress, no_progress
from vista_tui.mapdata import ClusterNode

STEP = "keywords"
VERSION = 1
DISTRIBUTIONS = ("numpy", "scipy", "scikit-learn")
"""Packages whose versions shape the keywords, in the order the manifest records them."""

_RUN = re.compile(r"\w+")
_SPECIAL = re.compile(r"^\s*\[(?:CLS|SEP|PAD|UNK|MASK)\]\s*$|^\s*<\|?[a-z_]+\|?>\s*$|^\s*<(?:s|/s|pad|unk)>\s*$")
"""Special tokens of common tokenizers ([CLS], <|endoftext|>, </s>): never words."""


@dataclass(frozen=True)
class KeywordsConfig:
    """How keywords are chosen and how the visual prompt is built from them."""

    n_keywords: int = 8
    focus_weight: float = 3.0
    """How many times the word holding the focus token counts (1 = like any other word)."""
    min_df: int = 2
    """A keyword occurs in at least this many of the node's contexts (all of them if fewer)."""
    min_word_length: int = 2
    reduce_frequent_words: bool = True
    """BERTopic's option: the square root of the normalised term frequency, so a word that fills
    every context of the parent (and so of every sibling) does not outrank the ones that differ."""
    extra_stop_words: tuple[str, ...] = ()
    """Skipped as well as scikit-learn's English stop words (compared lowercased)."""
    n_prompt_keywords: int = 3
    """How many of the top keywords go into the visual prompt."""
    prompt_template: str = "an illustration of {keywords}"
    """`{keywords}` becomes "a, b, and c"."""

    def __post_init__(self) -> None:
        if isinstance(self.extra_stop_words, str):
            raise ValueError(f"extra_stop_words must be a sequence of words, got the string {self.extra_stop_words!r}")
        object.__setattr__(self, "extra_stop_words", tuple(self.extra_stop_words))
        for name in ("n_keywords", "min_df", "min_word_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_prompt_keywords, int) or isinstance(self.n_prompt_keywords, bool):
            raise ValueError(f"n_prompt_keywords must be an integer, got {self.n_prompt_keywords!r}")
        if not 0 <= self.n_prompt_keywords <= self.n_keywords:
            raise ValueError(
                f"n_prompt_keywords must be in 0..n_keywords ({self.n_keywords}), got {self.n_prompt_keywords!r}"
            )
        if (
            not isinstance(self.focus_weight, int | float)
            or isinstance(self.focus_weight, bool)
            or not np.isfinite(self.focus_weight)
            or self.focus_weight < 0
        ):
            raise ValueError(f"focus_weight must be a finite number >= 0, got {self.focus_weight!r}")
        if not all(isinstance(word, str) and word.strip() for word in self.extra_stop_words):
            raise ValueError(f"extra_stop_words must be non-empty strings, got {self.extra_stop_words!r}")
        if not isinstance(self.prompt_template, str) or "{keywords}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain '{{keywords}}', got {self.prompt_template!r}")
        try:
            self.prompt_template.format(keywords="x")
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} must have no placeholder but {{keywords}} ({error})"
            ) from None


Config = KeywordsConfig
"""The step's config under the name every step module exports."""


def run(
    cfg: KeywordsConfig,
    nodes: list[ClusterNode],
    tokens: Sequence[Sequence[str]],
    focus: Sequence[int] | np.ndarray,
    *,
    progress: Progress = no_progress,
) -> list[ClusterNode]:
    """The nodes, in the same order, with `labels.keywords` and `labels.visual_prompt` set.

    `tokens[i]` is context row i's window of display tokens and `focus[i]` the index of its
    focus token; node members index these rows. Other labels are kept. The input is not changed.
    """
    focus = np.asarray(focus, dtype=np.int64)
    if len(focus) != len(tokens):
        raise ValueError(f"focus has {len(focus)} entries for {len(tokens)} token windows")
    n_rows = len(tokens)
    for node in nodes:
        if len(node.members) and (int(np.min(node.members)) < 0 or int(np.max(node.members)) >= n_rows):
            raise ValueError(f"node {node.node_id} has members outside the {n_rows} context rows")

    counts, vocabulary = _count_matrix(cfg, tokens, focus)
    present = counts.copy()
    present.data = np.ones_like(present.data)

    by_id = {node.node_id: node for node in nodes}
    groups: dict[str | None, list[int]] = {}
    for position, node in enumerate(nodes):
        parent = node.parent_id if node.parent_id in by_id else None
        groups.setdefault(parent, []).append(position)

    keywords: list[list[str]] = [[] for _ in nodes]
    for done, (parent_id, positions) in enumerate(groups.items()):
        classes = [np.asarray(nodes[p].members, dtype=np.int64) for p in positions]
        if parent_id is not None:
            covered = np.unique(np.concatenate(classes)) if classes else np.zeros(0, np.int64)
            rest = np.setdiff1d(np.asarray(by_id[parent_id].members, dtype=np.int64), covered)
            if rest.size:
                classes.append(rest)
        if parent_id is not None and len(classes) >= 2:
            membership = _membership(classes, n_rows)
            scores = _class_tfidf(membership @ counts, cfg.reduce_frequent_words)
            df = (membership @ present).toarray()
            for row, p in enumerate(positions):
                keywords[p] = _top_words(cfg, scores[row], df[row], len(classes[row]), vocabulary)
        else:
            for p, members in zip(positions, classes, strict=False):
                keywords[p] = _own_keywords(cfg, members, counts, present, vocabulary)
        progress(done + 1, len(groups), "keywords")

    return [
        replace(
            node,
            labels=replace(node.labels, keywords=words, visual_prompt=visual_prompt(cfg, words)),
        )
        for node, words in zip(nodes, keywords, strict=True)
    ]


def visual_prompt(cfg: KeywordsConfig, keywords: Sequence[str]) -> str:
    """The text-to-image prompt from the top keywords: "an illustration of a, b, and c" ("" without keywords)."""
    words = [word.replace("_", " ").strip() for word in keywords[: cfg.n_prompt_keywords]]
    words = [word for word in words if word]
    if not words:
        return ""
    if len(words) == 1:
        joined = words[0]
    elif len(words) == 2:
        joined = f"{words[0]} and {words[1]}"
    else:
        joined = ", ".join(words[:-1]) + f", and {words[-1]}"
    return cfg.prompt_template.format(keywords=joined)


def context_words(tokens: Sequence[str], focus: int, min_word_length: int = 2) -> tuple[list[str], set[int]]:
    """The words of one window (lowercased, stop words kept) and the indices of those holding the focus token."""
    pieces = _normalised(tokens)
    text = "".join(pieces)
    starts = np.cumsum([0] + [len(piece) for piece in pieces])
    if 0 <= focus < len(pieces):
        focus_start, focus_end = int(starts[focus]), int(starts[focus + 1])
    else:
        focus_start = focus_end = -1
    words: list[str] = []
    at_focus: set[int] = set()
    for match in _RUN.finditer(text):
        word = match.group().strip("_").lower()
        if len(word) < min_word_length or not any(ch.isalpha() for ch in word):
            continue
        if match.start() < focus_end and focus_start < match.end():
            at_focus.add(len(words))
        words.append(word)
    return words, at_focus


def _normalised(tokens: Sequence[str]) -> list[str]:
    """Display pieces as they sit in the text: WordPiece/BPE markers turned into joins and spaces."""
    wordpiece = any(token.startswith("##") for token in tokens)
    pieces: list[str] = []
    for i, token in enumerate(tokens):
        if _SPECIAL.match(token):
            pieces.append(" ")
            continue
        if token.startswith("##"):
            pieces.append(token[2:])
            continue
        piece = " " + token[1:] if token[:1] in ("Ġ", "▁") else token  # BPE / SentencePiece word start
        if wordpiece and i > 0 and piece[:1].isalnum():
            piece = " " + piece  # raw WordPiece: a piece without "##" starts a word
        pieces.append(piece)
    return pieces


def _count_matrix(cfg: KeywordsConfig, tokens: Sequence[Sequence[str]], focus: np.ndarray) -> tuple[Any, np.ndarray]:
    """(contexts × words) CSR of focus-weighted word counts, and the sorted vocabulary."""
    # scipy/scikit-learn: heavy imports, only here.
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = set(ENGLISH_STOP_WORDS) | {word.lower() for word in cfg.extra_stop_words}
    word_ids: dict[str, int] = {}
    indptr = [0]
    indices: list[int] = []
    data: list[float] = []
    for window, focus_index in zip(tokens, focus.tolist(), strict=True):
        words, at_focus = context_words(window, focus_index, cfg.min_word_length)
        weights: dict[int, float] = {}
        for position, word in enumerate(words):
            if word in stop:
                continue
            word_id = word_ids.setdefault(word, len(word_ids))
            weights[word_id] = weights.get(word_id, 0.0) + (cfg.focus_weight if position in at_focus else 1.0)
        for word_id in sorted(weights):
            indices.append(word_id)
            data.append(weights[word_id])
        indptr.append(len(indices))
    # Columns in alphabetical order, so that every later tie breaks alphabetically.
    vocabulary = np.array(sorted(word_ids), dtype=object)
    rank = np.empty(len(word_ids), dtype=np.int64)
    rank[[word_ids[word] for word in vocabulary]] = np.arange(len(word_ids))
    matrix = sp.csr_matrix(
        (np.asarray(data, dtype=np.float64), rank[np.asarray(indices, dtype=np.int64)], np.asarray(indptr)),
        shape=(len(tokens), len(word_ids)),
    )
    matrix.sort_indices()
    matrix.eliminate_zeros()  # focus_weight 0 leaves explicit zeros
    return matrix, vocabulary


def _membership(classes: list[np.ndarray], n_rows: int) -> Any:
    """(classes × contexts) 0/1 CSR."""
    # scipy: heavy import, only when keywords are computed.
    import scipy.sparse as sp

    rows = np.concatenate([np.full(len(members), i, dtype=np.int64) for i, members in enumerate(classes)])
    columns = np.concatenate(classes) if classes else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(columns)), (rows, columns)), shape=(len(classes), n_rows))


def _class_tfidf(class_counts: Any, reduce_frequent_words: bool) -> np.ndarray:
    """BERTopic's c-TF-IDF of (classes × words) counts, dense (classes × words)."""
    counts = np.asarray(class_counts.toarray(), dtype=np.float64)
    word_totals = counts.sum(axis=0)
    mean_class_words = counts.sum(axis=1).mean()
    idf = np.log1p(mean_class_words / np.maximum(word_totals, 1e-12))
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)
    return (np.sqrt(tf) if reduce_frequent_words else tf) * idf


def _own_keywords(
    cfg: KeywordsConfig, members: np.ndarray, counts: Any, present: Any, vocabulary: np.ndarray
) -> list[str]:
    """Keywords of a node with no siblings to compare with: its contexts are the documents."""
    if len(members) == 0:
        return []
    tf = np.asarray(counts[members].sum(axis=0)).ravel()
    df = np.asarray(present[members].sum(axis=0)).ravel()
    idf = np.log1p(len(members) / np.maximum(df, 1))
    tf = tf / max(tf.sum(), 1e-12)
    scores = (np.sqrt(tf) if cfg.reduce_frequent_words else tf) * idf
    return _top_words(cfg, scores, df, len(members), vocabulary)


def _top_words(cfg: KeywordsConfig, scores: np.ndarray, df: np.ndarray, size: int, vocabulary: np.ndarray) -> list[str]:
    """The n best-scoring words that pass min_df; ties alphabetical (columns are sorted)."""
    allowed = (scores > 0) & (df >= min(cfg.min_df, max(size, 1)))
    candidates = np.flatnonzero(allowed)
    if candidates.size == 0:
        return []
    order = np.lexsort((candidates, -scores[candidates]))[: cfg.n_keywords]
    return [str(vocabulary[i]) for i in candidates[order]]
