"""Who triages and with which statuses: `[triage]` in the user's TOML config.

Read from `--config`, else `$VISTA_CONFIG`, else the user config file when it exists, else
the defaults. Headless: the standard library and platformdirs only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vista_tui.core.errors import AnnotationError

DEFAULT_STATUSES = ("unreviewed", "interpretable", "polysemantic", "morphology", "junk", "split", "merge")
"""Triage statuses; the first one means "not yet reviewed"."""

ENV_CONFIG = "VISTA_CONFIG"


def _default_author() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


@dataclass(frozen=True)
class TriageConfig:
    """The statuses a person triages with (the first is "not yet reviewed") and who they are."""

    statuses: tuple[str, ...] = DEFAULT_STATUSES
    author: str = field(default_factory=_default_author)

    def __post_init__(self) -> None:
        if not self.statuses:
            raise ValueError("statuses must name at least one status")
        if any(not isinstance(s, str) or not s.strip() for s in self.statuses):
            raise ValueError(f"statuses must be non-empty strings, got {list(self.statuses)!r}")
        if len(set(self.statuses)) != len(self.statuses):
            raise ValueError(f"statuses must be distinct, got {list(self.statuses)!r}")
        if not isinstance(self.author, str) or not self.author.strip():
            raise ValueError(f"author must be a non-empty string, got {self.author!r}")


def config_path() -> Path:
    """Where the user's config lives by default (it may not exist)."""
    import platformdirs  # only needed when no explicit config is given

    return Path(platformdirs.user_config_dir("vista-tui")) / "config.toml"


def load_config(path: Path | None = None) -> TriageConfig:
    """The triage config from `path`, else `$VISTA_CONFIG`, else the user config file if present, else defaults.

    Raises AnnotationError (one line naming the file) when the file is missing (if named
    explicitly), not TOML, or has bad `[triage]` values.
    """
    explicit = path is not None or bool(os.environ.get(ENV_CONFIG))
    target = Path(path) if path is not None else Path(os.environ[ENV_CONFIG]) if explicit else config_path()
    if not target.is_file():
        if explicit:
            raise AnnotationError(f"config file {target} does not exist")
        return TriageConfig()
    import tomllib  # only with a config file: `vista explore` reads it before its first screen

    try:
        raw = tomllib.loads(target.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"config file {target} cannot be read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise AnnotationError(f"config file {target} is not valid TOML ({error})") from None
    triage = raw.get("triage", {})
    if not isinstance(triage, dict):
        raise AnnotationError(f"config file {target}: [triage] must be a table")
    kwargs: dict[str, Any] = {}
    if "statuses" in triage:
        statuses = triage["statuses"]
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise AnnotationError(f"config file {target}: triage.statuses must be a list of strings")
        kwargs["statuses"] = tuple(s.strip() for s in statuses)
    if "author" in triage:
        kwargs["author"] = triage["author"].strip() if isinstance(triage["author"], str) else triage["author"]
    try:
        return TriageConfig(**kwargs)
    except ValueError as error:
        raise AnnotationError(f"config file {target}: triage.{error}") from None
