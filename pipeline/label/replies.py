"""What comes back: a reply is untrusted text, checked before it becomes a label.

A reply must hold one JSON object with string `label`, `explanation` and `visual_prompt`;
it is refused whole when any of them carries prompt-injection markers or links (a quoted
context may have talked the model into repeating instructions), and each field is stripped
of control and format characters and cut to its limit. A refusal fails the node, not the run.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from pipeline.label.config import LabelConfig, NodeFailed

MAX_REPLY_CHARS = 20_000
"""A reply longer than this is not parsed at all (no label needs it)."""

INJECTION_MARKERS = re.compile(
    r"ignore (?:all |any )?(?:the )?(?:previous|prior|above|earlier)"
    r"|disregard (?:all |any |the )?(?:previous|prior|above|earlier|instructions)"
    r"|system prompt|new instructions|jailbreak|as an ai\b|i cannot|i can't|i'm sorry"
    r"|https?://|www\.|\b[a-z0-9-]+\.(?:com|net|org|io|ru|xyz)\b|<script|```",
    re.IGNORECASE,
)
"""What no honest label, explanation or prompt contains: instructions, refusals, links, code fences."""


def _clean(text: str, limit: int) -> str:
    """One line of printable text, cut at a word boundary to at most `limit` characters."""
    kept = []
    for char in text:
        if char in "\n\t\r":
            kept.append(" ")
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        else:
            kept.append(char)
    clean = " ".join("".join(kept).split()).strip(" \"'")
    if len(clean) > limit:
        cut = clean[: limit - 1]
        space = cut.rfind(" ")
        clean = (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:-") + "…"
    return clean


def parse_reply(content: Any, cfg: LabelConfig) -> tuple[str, str, str]:
    """(label, explanation, visual_prompt) from a reply's text; raises NodeFailed naming what is wrong."""
    if not isinstance(content, str) or not content.strip():
        raise NodeFailed("empty reply")
    if len(content) > MAX_REPLY_CHARS:
        raise NodeFailed(f"reply of {len(content)} characters")
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end <= start:
        raise NodeFailed("reply is not JSON")
    try:
        answer = json.loads(content[start : end + 1])
    except json.JSONDecodeError:
        raise NodeFailed("reply is not JSON") from None
    if not isinstance(answer, dict):
        raise NodeFailed("reply is not a JSON object")
    fields = {}
    for name in ("label", "explanation", "visual_prompt"):
        value = answer.get(name)
        if not isinstance(value, str):
            raise NodeFailed(f"reply has no string {name!r}")
        fields[name] = value
    for name, value in fields.items():
        if INJECTION_MARKERS.search(value):
            raise NodeFailed(f"reply {name} looks like injected instructions")
    label = _clean(fields["label"], cfg.max_label_chars)
    if not re.search(r"\w", label):
        raise NodeFailed("empty label")
    return (
        label,
        _clean(fields["explanation"], cfg.max_explanation_chars),
        _clean(fields["visual_prompt"], cfg.max_prompt_chars),
    )
