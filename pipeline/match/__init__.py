"""Matching the latents of two SAEs by the directions they read and write (`vista match`, `--also-sae`).

`cosine` (blocked top-k neighbours), `assign` (the one-to-one matching), `load` (two SAEs' directions by
name), `run` (`vista match`: the table in the store; `match_saes` for Python callers such as the demo).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.match.run import MatchConfig, MatchReport, match_saes

__all__ = ["MatchConfig", "MatchReport", "match_saes"]


def __getattr__(name: str) -> Any:
    # run imports numpy and the store's writers: only for a caller that matches.
    if name in __all__:
        from pipeline.match import run

        return getattr(run, name)
    raise AttributeError(name)
