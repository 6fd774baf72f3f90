"""Hostile corpus text is made inert before it can reach the terminal."""

from __future__ import annotations

import pytest

from vista_tui.core.sanitize import MAX_TOKEN_CHARS, sanitize, sanitize_token

HOSTILE = [
    "\x1b[31mred\x1b[0m",
    "\x1b]52;c;ZXZpbA==\x07",  # OSC 52 clipboard write
    "\x1b]0;pwned title\x1b\\",  # title change, ST-terminated
    "\x1b]2;unterminated title",
    "\x9b2J",  # 8-bit CSI clear screen
    "nul\x00byte",
    "bell\x07",
    "right\u202eto-left",
    "\x1bPdcs payload\x1b\\",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_control_character_survives(text: str) -> None:
    clean = sanitize(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in clean), repr(clean)
    assert "\u202e" not in clean


def test_escape_is_shown_not_dropped() -> None:
    assert sanitize("\x1b[31mred") == "␛[31mred"
    assert sanitize("a\x00b") == "a␀b"
    assert sanitize("line\nnext") == "line⏎next"


def test_invalid_utf8() -> None:
    assert sanitize(b"ok \xff\xfe end") == "ok \ufffd\ufffd end"
    lone_surrogate = b"x\xffy".decode("utf-8", "surrogateescape")
    assert sanitize(lone_surrogate) == "x\ufffdy"


def test_plain_text_is_untouched() -> None:
    text = "Return the muscle's length — naïve café 日本語 😀"
    assert sanitize(text) == text


def test_long_token_is_cut() -> None:
    cut = sanitize_token("x" * 100_000)
    assert len(cut) == MAX_TOKEN_CHARS and cut.endswith("…")
