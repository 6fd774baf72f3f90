"""LLM labels for the cluster tree: a short name, a one-sentence explanation and a visual prompt per node.

Each node's most representative contexts (high activation, close to the node's centroid on the
layout, de-duplicated) are quoted to an OpenAI-compatible chat-completions endpoint. Leaves go
first; a parent's prompt then carries its children's labels and asks for a label that covers
them while its siblings stay distinct. Every valid answer is appended to `<map>/labels.jsonl`
the moment it arrives (keyed by node id, prompt hash and model), so a rerun after a kill asks only
for what is missing. The tree is rewritten once, at the end.

The same prompts can go to a local transformers chat model instead (`backend="transformers"`,
`model=<directory>`): loaded once, on the first prompt, from local files only; the worker threads
queue their prompts and whichever holds the model generates for the queue's head in one
left-padded batch.

An endpoint that cannot be reached, or that answers with a status no retry changes (a 4xx other
than 429, or 501 Not Implemented: a wrong URL, key or model), stops the run at once with one line
naming the URL and what to check (`EndpointError` when that happens on the first request).

Replies are untrusted text: they are checked for shape, stripped of control characters, cut to
limits, and refused when they carry prompt-injection markers or links; such a node is marked
`failed: <reason>` and the run goes on.

The modules, in the order a label is made:
- `config`: `LabelConfig` (validated without I/O; `vista label` fills it from its arguments
  and the environment) and the errors;
- `prompts`: which contexts a node quotes and how the prompt is laid out;
- `backends`: who answers (the HTTP endpoint, or the local model);
- `replies`: what of an answer is kept;
- `run`: the resumable, concurrent run over the tree.
"""

from __future__ import annotations

from pipeline.label.backends import NODE_HEADER, LocalChatModel, check_local_model, load_chat_model
from pipeline.label.config import Backend, EndpointError, LabelConfig, LabelError
from pipeline.label.prompts import SYSTEM_PROMPT, build_prompt, cache_key, format_context, representative_rows
from pipeline.label.replies import MAX_REPLY_CHARS, parse_reply
from pipeline.label.runner import DISTRIBUTIONS, STEP, VERSION, LabelReport, run
from vista_tui.mapdata import LABEL_CACHE_FILE as CACHE_FILE

Config = LabelConfig
"""The step's config under the name every step uses."""

__all__ = [
    "CACHE_FILE",
    "DISTRIBUTIONS",
    "MAX_REPLY_CHARS",
    "NODE_HEADER",
    "STEP",
    "SYSTEM_PROMPT",
    "VERSION",
    "Backend",
    "Config",
    "EndpointError",
    "LabelConfig",
    "LabelError",
    "LabelReport",
    "LocalChatModel",
    "build_prompt",
    "cache_key",
    "check_local_model",
    "format_context",
    "load_chat_model",
    "parse_reply",
    "representative_rows",
    "run",
]
