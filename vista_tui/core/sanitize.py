"""Makes corpus text inert before it reaches the terminal.

Context text comes from web corpora: escape sequences (CSI, OSC 52 clipboard writes,
title changes), C0/C1 control characters, bidi overrides and invalid UTF-8 must never
reach the terminal raw. Everything drawn from context text passes through `sanitize`.
"""

from __future__ import annotations

import re
import unicodedata

MAX_TOKEN_CHARS = 80
"""A single token longer than this is cut (a 100 kB 'token' must not stall a repaint)."""

_PLACEHOLDER = "\ufffd"

# Bidi controls that reorder what follows them (Trojan-Source style) and invisible joiners.
_BIDI = {
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",  # LRE RLE PDF LRO RLO
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",  # LRI RLI FSI PDI
    "\u200e",
    "\u200f",
    "\u061c",  # LRM RLM ALM
}

_SURROGATE = re.compile("[\ud800-\udfff]")

_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI … final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC … BEL or ST (or unterminated)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
    r"|\x9d[^\x07\x9c]*(?:\x07|\x9c)?"  # 8-bit OSC
)


def _control_picture(char: str) -> str:
    code = ord(char)
    if code < 0x20:
        return chr(0x2400 + code)  # ␀ … ␟
    if code == 0x7F:
        return "\u2421"  # ␡
    return _PLACEHOLDER


def sanitize(text: str | bytes, max_chars: int | None = None) -> str:
    """Text safe to draw: escapes shown as '␛…', controls as control pictures, bad bytes as U+FFFD.

    Newlines and tabs become visible ⏎ and spaces so one context stays one line.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    else:
        # Lone surrogates (from surrogateescape-decoded bytes) are invalid UTF-8 too.
        text = _SURROGATE.sub(_PLACEHOLDER, text)
    text = _ESCAPE.sub(lambda m: "␛" + _printable(m.group(0)[1:]), text)
    out = []
    for char in text:
        if char == "\n":
            out.append("⏎")
        elif char == "\t":
            out.append(" ")
        elif char in _BIDI:
            out.append(_PLACEHOLDER)
        elif unicodedata.category(char) in ("Cc", "Cs", "Co", "Cn") and char != " ":
            out.append(_control_picture(char))
        else:
            out.append(char)
    clean = "".join(out)
    if max_chars is not None and len(clean) > max_chars:
        clean = clean[: max(0, max_chars - 1)] + "…"
    return clean


def _printable(text: str) -> str:
    return "".join(_control_picture(c) if unicodedata.category(c) == "Cc" else c for c in text)


def sanitize_token(token: str) -> str:
    """One token, cut to MAX_TOKEN_CHARS (cut before cleaning, so a 100 kB token costs nothing)."""
    # An escape sequence grows by at most its ESC's placeholder, so a little slack keeps the cut exact.
    return sanitize(token[: MAX_TOKEN_CHARS * 2], MAX_TOKEN_CHARS)
