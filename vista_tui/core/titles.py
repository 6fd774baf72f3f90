"""What a node is called on screen, in `vista summary`, in sketches and in prompts.

A node is named by what fires when that is telling: its focus tokens (the tokens the latent
fired on), ranked by class-based TF-IDF against its siblings so that each sibling is named by
what sets it apart, shown quoted with their counts: `" want" ×412 · " need" ×230`. When the
focus tokens are spread over many different tokens, a few of them describe little of the
node, and the window keywords (what surrounds the focus) name it instead. An LLM label, when
one was asked for, comes first either way: it is a reading of the marked focus tokens.

The focus tokens *concentrate* when the `FOCUS_TITLE_TOKENS` best-scoring ones (each held by
at least `FOCUS_MIN_COUNT` contexts) are together the focus token of at least `FOCUS_SHARE`
of the node's members. See `FOCUS_SHARE` for why.

Everything returned here is sanitised: tokens come from a corpus and may hold escapes.
"""

from __future__ import annotations

from vista_tui.core.sanitize import sanitize, sanitize_token
from vista_tui.mapdata import ClusterNode, FocusToken, NodeLabels

FOCUS_TITLE_TOKENS = 2
"""How many focus tokens a title names (and the rule measures): room for two quoted tokens with
their counts in the tree's title column at 80 columns."""
FOCUS_SHARE = 0.30
"""The least share of a node's members whose focus token the title's tokens must be.

Why 30 %: at that share one context in three, opened at random, fires on a token the title
names, so the title predicts what a reader sees. A latent (or a sub-sense) that fires on a few
tokens is far above it: a sub-sense split by its focus token is mostly one token. A latent
that fires across many tokens (a topic, a position, a code feature) spreads its top two over
well under 15 %, and a title of two tokens would name a small corner of it while the window
keywords say what all of it shares. The share counts contexts, not activation mass, so the
choice does not change with the scale of the SAE's activations."""
FOCUS_MIN_COUNT = 2
"""A token the latent fired on once is an anecdote, never a name."""
TITLE_TOKEN_CHARS = 16
"""A quoted token is cut to this many characters: titles are short and tokens can be 100 kB."""


def quote_token(token: str, max_chars: int = TITLE_TOKEN_CHARS) -> str:
    """A token as titles show it: sanitised, cut, in double quotes so that a leading space shows."""
    # Backslash and quote escaped, so that the quotes delimit the token unambiguously.
    text = sanitize_token(token).replace("\\", "\\\\").replace('"', '\\"')
    if len(text) > max_chars:
        text = text[: max(1, max_chars - 1)] + "…"
    return f'"{text}"'


def ranked_focus_tokens(labels: NodeLabels) -> list[FocusToken]:
    """The node's focus tokens, most distinctive first (score, then count, then the token)."""
    return sorted(labels.focus_tokens, key=lambda entry: (-entry.score, -entry.count, entry.token))


def title_focus_tokens(labels: NodeLabels, size: int) -> list[FocusToken]:
    """The focus tokens a title names, best first; empty when they do not concentrate (module docstring)."""
    named = [entry for entry in ranked_focus_tokens(labels) if entry.count >= FOCUS_MIN_COUNT]
    named = named[:FOCUS_TITLE_TOKENS]
    # A share, not a product: 0.3 * 100 is 30.000000000000004 in floating point, 30 / 100 is 0.3.
    if size <= 0 or not named or sum(entry.count for entry in named) / size < FOCUS_SHARE:
        return []
    return named


def format_focus_tokens(entries: list[FocusToken]) -> str:
    """`" want" ×412 · " need" ×230`."""
    return " · ".join(f"{quote_token(entry.token)} ×{entry.count:,}" for entry in entries)


def focus_title(node: ClusterNode) -> str:
    """The node named by its focus tokens when they concentrate, else ""."""
    return format_focus_tokens(title_focus_tokens(node.labels, node.size))


def node_title(node: ClusterNode, n_keywords: int = 3) -> str:
    """A node's name, sanitised: its LLM label, else its focus tokens when they concentrate, else its
    top keywords; '(noise)' for noise."""
    if node.kind == "noise":
        return "(noise)"
    if node.labels.llm_label:
        return sanitize(node.labels.llm_label)
    by_focus = focus_title(node)
    if by_focus:
        return by_focus
    if node.labels.keywords:
        return sanitize(", ".join(node.labels.keywords[:n_keywords]))
    return f"cluster {node.node_id[:8]}"


def latent_title(root: ClusterNode, n_tokens: int = 4, n_keywords: int = 6) -> str:
    """The root's line in `vista summary`: its top focus tokens by count first, as Neuronpedia's first line.

    Then, after a dash, its LLM label, or its keywords when the focus tokens do not concentrate
    (they would repeat the tokens otherwise). A root without focus tokens (an older map) is
    titled as any node.
    """
    by_count = sorted(root.labels.focus_tokens, key=lambda entry: (-entry.count, entry.token))
    tokens = format_focus_tokens([entry for entry in by_count if entry.count >= FOCUS_MIN_COUNT][:n_tokens])
    if not tokens:
        return node_title(root, n_keywords)
    if root.labels.llm_label:
        rest = sanitize(root.labels.llm_label)
    elif title_focus_tokens(root.labels, root.size):
        rest = ""
    else:
        rest = sanitize(", ".join(root.labels.keywords[:n_keywords]))
    return f"{tokens} — {rest}" if rest else tokens
