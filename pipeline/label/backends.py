"""Who answers the prompts: an OpenAI-compatible HTTP endpoint, or a local transformers chat model.

The endpoint is asked with the standard library (urllib), with retries and exponential backoff
on 429, 5xx, timeouts and dropped connections: those pass. What would only get the same answer
again is not retried: a refused connection or an unknown host (`Unreachable`), and any other 4xx
or a 501 Not Implemented (`Rejected`, with a one-line message naming the URL and what to check),
so that a wrong base URL, API key or model is one clear error at once rather than N failed nodes
after minutes of backoff.

The local model is loaded once, on the first prompt, from local files only; the worker threads
queue their prompts and whichever holds the model generates for the queue's head in one
left-padded batch. torch and transformers are imported only then (they take seconds).
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.label.config import LabelConfig, LabelError, NodeFailed
from pipeline.label.prompts import SYSTEM_PROMPT
from pipeline.label.replies import MAX_REPLY_CHARS
from vista_tui.core.sanitize import sanitize

NODE_HEADER = "X-Vista-Node"
"""Request header naming the node asked about (for logs and test servers; LLMs never see it)."""


REQUEST_STATUSES = frozenset({400, 413, 422})
"""4xx statuses that may concern one prompt alone (too long for the model, a value it refuses).

Every other 4xx (401, 403, 404, 405, …) and a 501 concern the endpoint, its URL or the key."""


class Unreachable(Exception):
    """Nothing answers at the endpoint (connection refused, unknown host, no route); the message is the reason."""


class Rejected(Exception):
    """The endpoint answered with a status that no retry changes (a 4xx other than 429, or 501)."""

    def __init__(self, status: int, phrase: str, message: str, detail: str = "") -> None:
        """`phrase`: the status's reason phrase; `message`: one line for the user; `detail`: what the server said."""
        super().__init__(message)
        self.status = status
        self.status_line = f"HTTP {status} {phrase}"
        """The status alone, e.g. 'HTTP 404 Not Found' (kept in label_status; what the server said may not be)."""
        self.reason = f"{self.status_line} ({detail})" if detail else self.status_line
        """The status and what the server said (e.g. why a prompt is refused), for a node that fails alone."""

    @property
    def per_request(self) -> bool:
        """Whether the status may concern this one prompt rather than the endpoint (see REQUEST_STATUSES)."""
        return self.status in REQUEST_STATUSES


@dataclass
class UsageCounter:
    """Requests and tokens of a run, added to from every worker thread."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, usage: Any) -> None:
        """Add a reply's `usage` (OpenAI's prompt/completion token counts); anything else is ignored."""
        if not isinstance(usage, dict):
            return
        with self.lock:
            self.prompt_tokens += _int(usage.get("prompt_tokens"))
            self.completion_tokens += _int(usage.get("completion_tokens"))

    def request(self, retry: bool = False) -> None:
        """Count one request sent (a retry, too, when `retry`)."""
        with self.lock:
            self.requests += 1
            self.retries += int(retry)


def _int(value: Any) -> int:
    """A token count from a reply, 0 unless it is a non-negative int (a server may send anything)."""
    return value if isinstance(value, int) and value >= 0 else 0


def _unreachable_reason(error: BaseException) -> str | None:
    """Why nothing can answer there (refused, unknown host, no route), or None for a slow or dropped server."""
    inner = getattr(error, "reason", error)
    if isinstance(inner, socket.gaierror):
        return "unknown host"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if getattr(inner, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to host"
    return None


def _server_detail(error: urllib.error.HTTPError) -> str:
    """The error message an OpenAI-compatible server put in its body (`error.message`, …), cut short; '' if none."""
    try:
        body = json.loads(error.read(4096).decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return ""
    detail = body.get("error", body.get("detail", body.get("message"))) if isinstance(body, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message")
    return sanitize(detail, 120) if isinstance(detail, str) else ""


def _api_root(base_url: str) -> str:
    """The base URL as an OpenAI-compatible API root: cut after its /v1 (a full …/chat/completions URL), else + /v1."""
    head, v1, _ = base_url.partition("/v1/")
    return head + "/v1" if v1 else base_url + "/v1"


def rejection(cfg: LabelConfig, url: str, error: urllib.error.HTTPError) -> Rejected:
    """What to tell the user about an answer no retry changes: the status, the URL asked and what to check."""
    status, phrase = error.code, sanitize(str(error.reason), 60)
    detail = _server_detail(error)
    if detail.lower() == phrase.lower():
        detail = ""
    what = f"the LLM endpoint answered HTTP {status} {phrase} to POST {url}" + (f" ({detail})" if detail else "")
    base = (cfg.base_url or "").rstrip("/")
    if status == 404 and not base.endswith("/v1"):
        hint = f"does the base URL end in /v1? (e.g. --base-url {_api_root(base)})"
    elif status == 404:
        hint = f"check --base-url and that the endpoint serves the model {cfg.model_name!r} (--model)"
    elif status in (401, 403) and not cfg.api_key:
        hint = "no API key was sent: set $VISTA_LLM_API_KEY or $OPENAI_API_KEY, or name one with --api-key-env"
    elif status in (401, 403):
        hint = "check the API key ($VISTA_LLM_API_KEY or $OPENAI_API_KEY, or the one --api-key-env names)"
    elif status in (405, 501):
        hint = "it does not take chat completions there: --base-url must be an OpenAI-compatible API root (…/v1)"
    else:
        hint = "check --base-url, --model and the endpoint's log"
    return Rejected(status, phrase, f"{what}; {hint}", detail)


def chat_completion(
    cfg: LabelConfig, node_id: str, prompt: str, counter: UsageCounter, system: str = SYSTEM_PROMPT
) -> str:
    """The reply text for one prompt (under the `system` prompt: the label step's unless given), with retries
    where they can help; raises NodeFailed, Unreachable or Rejected."""
    url = cfg.base_url.rstrip("/") + "/chat/completions"  # type: ignore[union-attr]
    body = json.dumps(
        {
            "model": cfg.model_name,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
            "temperature": cfg.temperature,
            "seed": cfg.seed,
            "max_tokens": cfg.max_new_tokens,
            "response_format": {"type": "json_object"},
        }
    ).encode("utf-8")
    headers = {"Content-Type": "application/json", NODE_HEADER: node_id}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    reason = "no answer"
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        counter.request(retry=attempt > 0)
        try:
            with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
                raw = response.read(MAX_REPLY_CHARS * 4 + 4096)
        except urllib.error.HTTPError as error:
            if error.code == 429 or (error.code >= 500 and error.code != 501):
                reason = f"HTTP {error.code}"
                continue
            raise rejection(cfg, url, error) from None
        except TimeoutError:
            reason = f"timed out after {cfg.timeout_s:g} s"
            continue
        except (urllib.error.URLError, OSError) as error:
            unreachable = _unreachable_reason(error)
            if unreachable is not None:
                raise Unreachable(unreachable) from None
            inner = getattr(error, "reason", error)
            if isinstance(inner, TimeoutError):
                reason = f"timed out after {cfg.timeout_s:g} s"
            else:
                reason = sanitize(f"{type(inner).__name__}: {inner}", 80)
            continue
        try:
            reply = json.loads(raw.decode("utf-8", errors="replace"))
        except json.JSONDecodeError:
            raise NodeFailed("response is not JSON") from None
        if not isinstance(reply, dict):
            raise NodeFailed("response is not a chat completion")
        counter.add(reply.get("usage"))
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise NodeFailed("response has no choices[0].message.content") from None
    raise NodeFailed(f"{reason} after {cfg.retries + 1} tries")


# -- a local chat model ---------------------------------------------------------------------------


PLAIN_CHAT_FORMAT = "System: {system}\n\nUser: {user}\n\nAssistant:"
"""How a prompt is laid out for a tokenizer that has no chat template."""


def _first_line(error: BaseException) -> str:
    """An exception as one sanitised line (transformers' messages run to paragraphs)."""
    text = str(error).strip()
    return sanitize(text.splitlines()[0] if text else type(error).__name__, 160)


@dataclass
class _LoadedChatModel:
    """A loaded tokenizer and causal LM, with what generation needs to know about them."""

    tokenizer: Any
    model: Any
    device: str
    pad_id: int
    stop_ids: frozenset[int]
    max_positions: int | None


def check_local_model(cfg: LabelConfig) -> None:
    """For the transformers backend: LabelError unless `cfg.model` is a directory with a config.json (cheap)."""
    if cfg.backend != "transformers":
        return
    path = Path(cfg.model or "").expanduser()
    if not path.is_dir():
        raise LabelError(
            f"chat model directory {path} does not exist; pass --model with a local directory holding a "
            "transformers chat model (config.json, weights, tokenizer files)"
        )
    if not (path / "config.json").is_file():
        raise LabelError(
            f"{path} is not a transformers model (no config.json); pass the directory that save_pretrained "
            "or `hf download` wrote"
        )


def load_chat_model(cfg: LabelConfig) -> _LoadedChatModel:
    """The tokenizer and causal LM in the directory `cfg.model`; LabelError otherwise."""
    check_local_model(cfg)
    path = Path(cfg.model or "").expanduser()
    # torch/transformers take seconds to import: only when a local model is really used.
    from pipeline.models import ModelError, hub_offline, resolve_device

    local_only = hub_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        device = resolve_device(cfg.device)
    except ModelError as error:
        raise LabelError(str(error)) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local_only)
        # float32 on the CPU (bfloat16 matmuls are slow there); the checkpoint's dtype on a GPU.
        dtype = torch.float32 if device == "cpu" else "auto"
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=local_only, dtype=dtype)
        model.eval()
        model.to(device)
    except Exception as error:  # transformers raises many kinds here; the user needs one line
        raise LabelError(
            f"chat model at {path} could not be loaded ({type(error).__name__}: {_first_line(error)}); it must "
            "hold a causal language model and its tokenizer, as save_pretrained writes them"
        ) from None
    stop = model.generation_config.eos_token_id
    stop_ids = {stop} if isinstance(stop, int) else set(stop or ())
    if tokenizer.eos_token_id is not None:
        stop_ids.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = min(stop_ids) if stop_ids else 0
    positions = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)
    return _LoadedChatModel(tokenizer, model, device, int(pad), frozenset(stop_ids), positions)


@dataclass
class _Waiting:
    """One prompt in the local model's queue, and what became of it."""

    prompt: str
    system: str = SYSTEM_PROMPT
    done: threading.Event = field(default_factory=threading.Event)
    reply: str = ""
    error: BaseException | None = None

    def settle(self, reply: str = "", error: BaseException | None = None) -> None:
        """Record the reply (or why there is none) and wake the worker waiting for it."""
        self.reply, self.error = reply, error
        self.done.set()


class LocalChatModel:
    """One local chat model shared by every worker thread, loaded on the first prompt.

    Workers queue their prompts; whichever worker holds the model generates for the head of
    the queue (up to `concurrency` prompts, one left-padded batch) while the rest wait, so N
    workers keep one model busy instead of loading N copies.
    """

    def __init__(self, cfg: LabelConfig) -> None:
        self.cfg = cfg
        self._loaded: _LoadedChatModel | None = None
        self._load_error: LabelError | None = None
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()

    def chat(self, prompt: str, counter: UsageCounter, system: str = SYSTEM_PROMPT) -> str:
        """The model's reply to one prompt (under `system`); raises NodeFailed (or LabelError when the model cannot load)."""
        waiting = _Waiting(prompt, system)
        with self._queue_lock:
            self._queue.append(waiting)
        while not waiting.done.is_set():
            with self._model_lock:
                if waiting.done.is_set():
                    break
                with self._queue_lock:
                    batch = self._queue[: self.cfg.concurrency]
                    del self._queue[: len(batch)]
                try:
                    self._generate(batch, counter)
                finally:
                    # Out of the queue means answered: else its worker would wait for ever.
                    for taken in batch:
                        if not taken.done.is_set():
                            taken.settle(error=NodeFailed("generation was interrupted"))
        if waiting.error is not None:
            raise waiting.error
        return waiting.reply

    def _model(self) -> _LoadedChatModel:
        """The model, loaded on first use; a failed load is remembered, so it is tried once per run."""
        if self._load_error is not None:
            raise self._load_error
        if self._loaded is None:
            try:
                self._loaded = load_chat_model(self.cfg)
            except LabelError as error:
                self._load_error = error
                raise
        return self._loaded

    def chat_text(self, prompt: str, system: str = SYSTEM_PROMPT) -> tuple[str, bool]:
        """The prompt laid out for the model, and whether the tokenizer should add its special tokens."""
        tokenizer = self._model().tokenizer
        if not getattr(tokenizer, "chat_template", None):
            return PLAIN_CHAT_FORMAT.format(system=system, user=prompt), True
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        try:
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception:  # jinja raises from inside the template
            # Some templates (Gemma's) refuse a system turn: the instructions go first in the user turn.
            merged = [{"role": "user", "content": f"{system}\n\n{prompt}"}]
            text = tokenizer.apply_chat_template(merged, add_generation_prompt=True, tokenize=False)
        return text, False

    def _generate(self, batch: list[_Waiting], counter: UsageCounter) -> None:
        """Answer a batch of queued prompts; every prompt in it is settled, with a reply or a reason."""
        try:
            loaded = self._model()
            inputs: list[tuple[_Waiting, list[int]]] = []
            for waiting in batch:
                text, special = self.chat_text(waiting.prompt, waiting.system)
                ids = list(loaded.tokenizer(text, add_special_tokens=special)["input_ids"])
                room = loaded.max_positions
                if room is not None and len(ids) + self.cfg.max_new_tokens > room:
                    waiting.settle(
                        error=NodeFailed(
                            f"prompt of {len(ids)} tokens + {self.cfg.max_new_tokens} new ones does not fit the "
                            f"model's {room} positions; lower --n-contexts or --max-new-tokens"
                        )
                    )
                    continue
                inputs.append((waiting, ids))
            if inputs:
                replies = self._run_generate(loaded, [ids for _, ids in inputs], counter)
                for (waiting, _), reply in zip(inputs, replies, strict=True):
                    waiting.settle(reply)
        except (LabelError, NodeFailed) as error:
            for waiting in batch:
                if not waiting.done.is_set():
                    waiting.settle(error=error)
        except Exception as error:  # a failed generate fails these nodes, not the run
            reason = NodeFailed(f"generation failed ({type(error).__name__}: {_first_line(error)})")
            if "out of memory" in str(error).lower():
                reason = NodeFailed(f"out of memory generating {len(batch)} prompts at once; lower --concurrency")
            for waiting in batch:
                if not waiting.done.is_set():
                    waiting.settle(error=reason)

    def _run_generate(self, loaded: _LoadedChatModel, prompts: list[list[int]], counter: UsageCounter) -> list[str]:
        """One left-padded generate over token-id prompts; the reply texts, cut at the first stop token."""
        # Already imported by load_chat_model; cheap here.
        import torch
        from transformers import GenerationConfig

        width = max(len(ids) for ids in prompts)
        # Left padding: every prompt ends where generation starts.
        input_ids = torch.tensor([[loaded.pad_id] * (width - len(ids)) + ids for ids in prompts], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], dtype=torch.long)
        sample = self.cfg.temperature > 0
        # A fresh GenerationConfig: a checkpoint's own defaults (often sampling) must not override ours.
        generation = GenerationConfig(
            max_new_tokens=self.cfg.max_new_tokens,
            do_sample=sample,
            temperature=self.cfg.temperature if sample else None,
            top_p=None,
            top_k=None,
            pad_token_id=loaded.pad_id,
            eos_token_id=sorted(loaded.stop_ids) or None,
        )
        if sample:
            torch.manual_seed(self.cfg.seed)
        with torch.inference_mode():
            output = loaded.model.generate(
                input_ids=input_ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                generation_config=generation,
            )
        replies = []
        for ids, row in zip(prompts, output[:, width:].tolist(), strict=True):
            stop = next((i for i, token in enumerate(row) if token in loaded.stop_ids), None)
            answer = row if stop is None else row[:stop]
            counter.request()
            counter.add({"prompt_tokens": len(ids), "completion_tokens": len(row) if stop is None else stop + 1})
            replies.append(loaded.tokenizer.decode(answer, skip_special_tokens=True))
        return replies
