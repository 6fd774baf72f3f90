"""TUI test isolation (no user config, triage statuses or author, leaks into a test) and the one big map
the TUI tests share."""

from pathlib import Path

import pytest

from tests.helpers.isolation import no_user_config
from tests.helpers.synthetic_map import build_synthetic_map

__all__ = ["big_map", "no_user_config"]


@pytest.fixture(scope="session")
def big_map(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic map of 100,000 contexts (about 30 s to build: once per session). Read-only: copy it to write."""
    return build_synthetic_map(tmp_path_factory.mktemp("big") / "big", n=100_000)
