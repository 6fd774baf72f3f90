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

Focus tokens: the same comparison, with a context's focus token (the display token the latent
fired on, exactly as the contexts hold it, leading space included) as its only term. Per node,
the step keeps the top `n_focus_tokens` by count, by activation mass (the summed activation of
the contexts firing on the token) and by c-TF-IDF score against the siblings (plain tf, no
square root: how much of the node fires on a token is what matters), their union, most frequent
first. A node with no class to compare against scores a token by its share of the node. These
name the node on screen when they concentrate (`vista_tui.core.titles`); the window keywords
stay beside them as the fallback. The visual prompt leads with the focus tokens' words when
they concentrate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline.steps import Progress, no_progress
from vista_tui.core.titles import title_focus_tokens
from vista_tui.mapdata import ClusterNode, FocusToken, NodeLabels

STEP = "keywords"
VERSION = 2
"""2: focus tokens per node (counts, activation mass, c-TF-IDF); the visual prompt leads with them."""
DISTRIBUTIONS = ("numpy", "scipy", "scikit-learn")
"""Packages whose versions shape the keywords, in the order the manifest records them."""

_RUN = re.compile(r"\w+")
_SPECIAL = re.compile(r"^\s*\[(?:CLS|SEP|PAD|UNK|MASK)\]\s*$|^\s*<\|?[a-z_]+\|?>\s*$|^\s*<(?:s|/s|pad|unk)>\s*$")
"""Special tokens of common tokenizers ([CLS], <|endoftext|>, </s>): never words."""
MAX_FOCUS_TOKEN_CHARS = 80
"""A focus token is stored cut to this length: a corpus can hold a 100 kB "token"."""


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
    """How many words go into the visual prompt: the focus tokens' words when they concentrate, then keywords."""
    prompt_template: str = "an illustration of {keywords}"
    """`{keywords}` becomes "a, b, and c" (focus words first); an optional `{focus}` becomes the focus
    words alone ("a and b"; empty when the focus tokens do not concentrate)."""
    n_focus_tokens: int = 10
    """Each node keeps its top this many focus tokens by count, by mass and by score (their union)."""

    def __post_init__(self) -> None:
        if isinstance(self.extra_stop_words, str):
            raise ValueError(f"extra_stop_words must be a sequence of words, got the string {self.extra_stop_words!r}")
        object.__setattr__(self, "extra_stop_words", tuple(self.extra_stop_words))
        for name in ("n_keywords", "min_df", "min_word_length", "n_focus_tokens"):
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
            self.prompt_template.format(keywords="x", focus="y")
        except (IndexError, KeyError, ValueError) as error:
            raise ValueError(
                f"prompt_template {self.prompt_template!r} must have no placeholder but {{keywords}} and {{focus}}"
                f" ({error})"
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
    activations: Sequence[float] | np.ndarray | None = None,
) -> list[ClusterNode]:
    """The nodes, in the same order, with `labels.keywords`, `labels.focus_tokens` and `labels.visual_prompt` set.

    `tokens[i]` is context row i's window of display tokens, `focus[i]` the index of its focus
    token and `activations[i]` the latent's activation there (without them, focus tokens have
    no mass: NaN); node members index these rows. Other labels are kept. The input is not changed.
    """
    focus = np.asarray(focus, dtype=np.int64)
    if len(focus) != len(tokens):
        raise ValueError(f"focus has {len(focus)} entries for {len(tokens)} token windows")
    n_rows = len(tokens)
    weights = np.full(n_rows, np.nan) if activations is None else np.asarray(activations, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise ValueError(f"activations has shape {weights.shape} for {n_rows} token windows")
    for node in nodes:
        if len(node.members) and (int(np.min(node.members)) < 0 or int(np.max(node.members)) >= n_rows):
            raise ValueError(f"node {node.node_id} has members outside the {n_rows} context rows")

    counts, vocabulary = _count_matrix(cfg, tokens, focus)
    present = counts.copy()
    present.data = np.ones_like(present.data)
    focus_counts, focus_mass, focus_vocabulary = _focus_matrices(tokens, focus, weights)

    keywords: list[list[str]] = [[] for _ in nodes]
    focus_tokens: list[list[FocusToken]] = [[] for _ in nodes]
    groups = _sibling_groups(nodes)
    for done, (positions, classes, compared) in enumerate(groups):
        membership = _membership(classes, n_rows)
        if compared:
            scores = _class_tfidf(membership @ counts, cfg.reduce_frequent_words)
            df = (membership @ present).toarray()
            for row, p in enumerate(positions):
                keywords[p] = _top_words(cfg, scores[row], df[row], len(classes[row]), vocabulary)
        else:
            for p, members in zip(positions, classes, strict=False):
                keywords[p] = _own_keywords(cfg, members, counts, present, vocabulary)
        class_counts = (membership @ focus_counts).toarray()
        class_mass = (membership @ focus_mass).toarray()
        # One term per context: tf is a token's share of the class. Without siblings, the share alone.
        focus_scores = (
            _class_tfidf(membership @ focus_counts, reduce_frequent_words=False)
            if compared
            else class_counts / np.maximum(class_counts.sum(axis=1, keepdims=True), 1)
        )
        for row, p in enumerate(positions):
            focus_tokens[p] = _top_focus_tokens(
                cfg, class_counts[row], class_mass[row], focus_scores[row], focus_vocabulary, activations is not None
            )
        progress(done + 1, len(groups), "keywords")

    named: list[ClusterNode] = []
    for node, words, entries in zip(nodes, keywords, focus_tokens, strict=True):
        labels = replace(node.labels, keywords=words, focus_tokens=entries)
        focus_words = prompt_focus_words(labels, node.size)
        named.append(replace(node, labels=replace(labels, visual_prompt=visual_prompt(cfg, words, focus_words))))
    return named


def _sibling_groups(nodes: list[ClusterNode]) -> list[tuple[list[int], list[np.ndarray], bool]]:
    """Nodes grouped by parent: (their positions, the classes compared, whether there are >= 2 to compare).

    The classes are the siblings' members, in the order of the positions, then the parent's members
    that none of them covers (one more, unnamed class) when there are any. The root, and any node
    whose parent is not among `nodes`, is in a group of parentless nodes that compares nothing.
    """
    by_id = {node.node_id: node for node in nodes}
    positions_of: dict[str | None, list[int]] = {}
    for position, node in enumerate(nodes):
        parent = node.parent_id if node.parent_id in by_id else None
        positions_of.setdefault(parent, []).append(position)
    groups: list[tuple[list[int], list[np.ndarray], bool]] = []
    for parent_id, positions in positions_of.items():
        classes = [np.asarray(nodes[p].members, dtype=np.int64) for p in positions]
        if parent_id is not None:
            covered = np.unique(np.concatenate(classes)) if classes else np.zeros(0, np.int64)
            rest = np.setdiff1d(np.asarray(by_id[parent_id].members, dtype=np.int64), covered)
            if rest.size:
                classes.append(rest)
        groups.append((positions, classes, parent_id is not None and len(classes) >= 2))
    return groups


def prompt_focus_words(labels: NodeLabels, size: int) -> list[str]:
    """The words of the focus tokens a title names (lowercased; letters, digits, ' and - only), or none.

    Only when the focus tokens concentrate, by the explorer's rule, so that prompt and title agree.
    Keeping only those characters also keeps a hostile token's escapes out of the prompt.
    """
    words: list[str] = []
    for entry in title_focus_tokens(labels, size):
        word = "".join(ch for ch in entry.token.strip() if ch.isalnum() or ch in "'-").lower()
        if any(ch.isalpha() for ch in word) and word not in words:
            words.append(word)
    return words


def visual_prompt(cfg: KeywordsConfig, keywords: Sequence[str], focus_words: Sequence[str] = ()) -> str:
    """The text-to-image prompt: "an illustration of a, b, and c", focus words first ("" without any words)."""
    focus_clean = _prompt_words(focus_words)
    words = _prompt_words([*focus_clean, *keywords])[: cfg.n_prompt_keywords]
    if not words:
        return ""
    return cfg.prompt_template.format(keywords=_joined(words), focus=_joined(focus_clean))


def _prompt_words(words: Sequence[str]) -> list[str]:
    """Words as a prompt shows them: underscores as spaces, blanks dropped, each once."""
    out: list[str] = []
    for word in words:
        word = word.replace("_", " ").strip()
        if word and word not in out:
            out.append(word)
    return out


def _joined(words: list[str]) -> str:
    """ "a", "a and b", "a, b, and c"."""
    if len(words) <= 1:
        return "".join(words)
    if len(words) == 2:
        return f"{words[0]} and {words[1]}"
    return ", ".join(words[:-1]) + f", and {words[-1]}"


def _focus_matrices(
    tokens: Sequence[Sequence[str]], focus: np.ndarray, weights: np.ndarray
) -> tuple[Any, Any, np.ndarray]:
    """(contexts × focus tokens) CSRs of counts (one per context) and activation, and the sorted tokens.

    A context whose focus index is outside its window has no focus token and counts nowhere.
    """
    # scipy: heavy import, only here.
    import scipy.sparse as sp

    focus_of = [
        window[index] if 0 <= index < len(window) else None
        for window, index in zip(tokens, focus.tolist(), strict=True)
    ]
    vocabulary = np.array(sorted({token for token in focus_of if token is not None}), dtype=object)
    column_of = {token: column for column, token in enumerate(vocabulary.tolist())}
    rows = np.array([row for row, token in enumerate(focus_of) if token is not None], dtype=np.int64)
    columns = np.array([column_of[token] for token in focus_of if token is not None], dtype=np.int64)
    shape = (len(tokens), len(vocabulary))
    counts = sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=shape)
    # NaN activations (none given) stay NaN in the sums: mass unknown, not zero.
    mass = sp.csr_matrix((weights[rows], (rows, columns)), shape=shape)
    return counts, mass, vocabulary


def _top_focus_tokens(
    cfg: KeywordsConfig,
    counts: np.ndarray,
    mass: np.ndarray,
    scores: np.ndarray,
    vocabulary: np.ndarray,
    has_mass: bool,
) -> list[FocusToken]:
    """A node's top focus tokens by count, by mass and by score (their union), most frequent first.

    Ties break by mass, then by the token (the columns are sorted), so the output depends only on the inputs.
    """
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        return []
    n = cfg.n_focus_tokens
    mass_key = np.nan_to_num(mass[present], nan=0.0)
    keep: set[int] = set()
    keep.update(present[np.lexsort((present, -mass_key, -counts[present]))][:n].tolist())
    if has_mass:
        keep.update(present[np.lexsort((present, -counts[present], -mass_key))][:n].tolist())
    keep.update(present[np.lexsort((present, -counts[present], -scores[present]))][:n].tolist())
    chosen = np.array(sorted(keep), dtype=np.int64)
    order = chosen[np.lexsort((chosen, -np.nan_to_num(mass[chosen], nan=0.0), -counts[chosen]))]
    return [
        FocusToken(
            token=str(vocabulary[column])[:MAX_FOCUS_TOKEN_CHARS],
            count=int(counts[column]),
            mass=float(mass[column]) if has_mass else float("nan"),
            score=float(scores[column]),
        )
        for column in order.tolist()
    ]


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
