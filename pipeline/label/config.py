"""The label step's config, and the errors its modules share.

`LabelConfig` is plain data validated without I/O: where the environment supplies a default
(endpoint, model, API key, prices), `vista label` (pipeline/cli.py) reads it and passes it in.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["openai", "transformers"]


class LabelError(ValueError):
    """Labelling cannot go on; the message is one line for the user."""


class EndpointError(LabelError):
    """The endpoint cannot be reached, or refuses in a way no retry changes: the run asked for nothing more."""

    def __init__(self, message: str, requests: int) -> None:
        """`message`: one line for the user; `requests`: the HTTP requests sent before the run stopped."""
        super().__init__(message)
        self.requests = requests
        """HTTP requests the run sent, retries included (1 when the first request was refused)."""


class NodeFailed(Exception):
    """This node gets no label; the message is the reason recorded in its label_status."""


@dataclass(frozen=True)
class LabelConfig:
    """How nodes are labelled: which LLM, how hard to push it, what to show it, what to accept."""

    backend: Backend = "openai"
    base_url: str | None = None
    """Root of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1 (…/chat/completions is appended)."""
    model: str | None = None
    """Model name sent to the endpoint (None sends 'default'); a local path for the transformers backend."""
    api_key: str | None = field(default=None, repr=False)
    """Sent as a bearer token; never written anywhere (kept out of repr and the manifest)."""
    concurrency: int = 4
    """Requests in flight (openai); prompts generated together in one batch (transformers)."""
    device: str = "auto"
    """Torch device of the transformers backend: 'auto' is cuda when there is one, else cpu."""
    max_new_tokens: int = 300
    """Longest reply asked for (max_tokens of the request; max_new_tokens of a local generate)."""
    temperature: float = 0.0
    """0 asks for greedy (reproducible) answers; above 0 the local backend samples, seeded with `seed`."""
    seed: int = 0
    price_in: float | None = None
    """USD per million prompt tokens, for the run's cost estimate (None: no estimate)."""
    price_out: float | None = None
    """USD per million completion tokens."""
    timeout_s: float = 60.0
    retries: int = 4
    """Extra tries after the first, on 429, 5xx other than 501, timeouts and dropped connections.

    A refused connection, an unknown host, any other 4xx and a 501 are not retried: asking again
    would get the same answer."""
    backoff_s: float = 1.0
    """Wait before the first retry; doubles each retry."""
    n_contexts: int = 12
    max_label_chars: int = 60
    max_prompt_chars: int = 300
    """Longest visual prompt kept (longer ones are cut)."""
    max_explanation_chars: int = 300
    max_context_chars: int = 240
    """Longest quoted context (cut around the focus token)."""
    max_requests: int | None = None
    """Stop asking after this many requests (the rest waits for a rerun); None asks for all."""

    def __post_init__(self) -> None:
        """Refuse a bad value with a ValueError naming it (no I/O: the model directory is checked by the run)."""
        if self.backend not in ("openai", "transformers"):
            raise ValueError(f"backend must be 'openai' or 'transformers', got {self.backend!r}")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("no LLM endpoint: give --base-url or set $VISTA_LLM_BASE_URL")
        if self.base_url and not re.match(r"https?://", self.base_url):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.backend == "transformers" and not self.model:
            raise ValueError("the transformers backend needs --model (a local chat model directory)")
        for name in ("concurrency", "n_contexts", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.device or not re.fullmatch(r"auto|cpu|mps|cuda(?::\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be between 0 and 2, got {self.temperature}")
        for name in ("price_in", "price_out"):
            price = getattr(self, name)
            if price is not None and not (math.isfinite(price) and price >= 0):
                raise ValueError(f"{name} must be a price >= 0 in USD per million tokens, got {price}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s}")
        for name in ("max_label_chars", "max_prompt_chars", "max_explanation_chars", "max_context_chars"):
            if getattr(self, name) < 8:
                raise ValueError(f"{name} must be at least 8, got {getattr(self, name)}")
        if self.max_requests is not None and self.max_requests < 0:
            raise ValueError(f"max_requests must be >= 0, got {self.max_requests}")

    @property
    def model_name(self) -> str:
        """The model named in requests, the cache key and the manifest."""
        return self.model or "default"

    def params(self) -> dict[str, Any]:
        """What shapes the labels, for the manifest (never the API key)."""
        return {
            "backend": self.backend,
            "base_url": self.base_url if self.backend == "openai" else None,
            "model": self.model_name,
            "temperature": self.temperature,
            "seed": self.seed,
            "max_new_tokens": self.max_new_tokens,
            "n_contexts": self.n_contexts,
            "max_label_chars": self.max_label_chars,
            "max_prompt_chars": self.max_prompt_chars,
            "max_explanation_chars": self.max_explanation_chars,
            "max_context_chars": self.max_context_chars,
        }
