"""The pipeline's model and SAE loaders, replaced for a test: each call is recorded, then refused or answered.

`refuse_loading` proves that an error arrived before any weights loaded: every loader the
pipeline can reach (pipeline.models' `load_model` and `load_sae` wherever a module bound them,
transformers' and sae-lens's own `from_pretrained`/`load_from_disk`) records its name and
raises `LoaderCalled`, which no CLI catches. `answer_loading` hands back objects already loaded
(the session's MiniLM, a test SAE) and records the order of the calls.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest


class LoaderCalled(Exception):
    """A model or SAE loader ran where the test says none may (not a ValueError: the CLI lets it through)."""


def _patch(monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], Any]) -> None:
    """Every pipeline loader (and the libraries' own) calls `answer(its name)` instead of loading."""
    import sae_lens
    import transformers

    import pipeline.models as models

    for name in ("load_model", "load_sae"):
        original = getattr(models, name)

        def loader(*_args: Any, _name: str = name, **_kwargs: Any) -> Any:
            """The stand-in: whatever `answer` says for this loader."""
            return answer(_name)

        # Modules that did `from pipeline.models import load_model` hold their own reference.
        for module in [m for key, m in list(sys.modules.items()) if key.split(".")[0] == "pipeline"]:
            if getattr(module, name, None) is original:
                monkeypatch.setattr(module, name, loader)

    def library(owner: str) -> classmethod:  # type: ignore[type-arg]
        """A classmethod stand-in for a library's own loader."""
        return classmethod(lambda _cls, *_args, **_kwargs: answer(owner))

    for cls in (transformers.PreTrainedModel, transformers.AutoModel):
        monkeypatch.setattr(cls, "from_pretrained", library(f"{cls.__name__}.from_pretrained"))
    for method in ("from_pretrained", "load_from_disk"):
        monkeypatch.setattr(sae_lens.SAE, method, library(f"SAE.{method}"))


def refuse_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every loader record its name and raise LoaderCalled; the list of names called."""
    calls: list[str] = []

    def refuse(name: str) -> Any:
        """Record the call, then refuse it."""
        calls.append(name)
        raise LoaderCalled(f"{name} was called")

    _patch(monkeypatch, refuse)
    return calls


def answer_loading(
    monkeypatch: pytest.MonkeyPatch,
    answers: dict[str, Any],
    events: list[tuple[Any, ...]],
    on_call: Callable[[str], None] | None = None,
) -> None:
    """Make `load_model` / `load_sae` return `answers[name]`, appending ("call", name) to `events` and calling
    `on_call(name)` (e.g. to move a fake clock); any other loader refuses."""

    def answer(name: str) -> Any:
        """Record the call and hand back the object already loaded."""
        events.append(("call", name))
        if on_call is not None:
            on_call(name)
        if name not in answers:
            raise LoaderCalled(f"{name} was called")
        return answers[name]

    _patch(monkeypatch, answer)
