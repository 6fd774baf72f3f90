"""No user config (triage statuses, author, editor) leaks into a test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def no_user_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and XDG_CONFIG_HOME in a fresh temp dir, VISTA_CONFIG unset, the author fixed."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("VISTA_CONFIG", raising=False)
    monkeypatch.setenv("USER", "tester")
    monkeypatch.delenv("VISUAL", raising=False)
    return home
