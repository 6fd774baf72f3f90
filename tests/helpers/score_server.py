"""Answer policies for the loopback chat-completions server (tests/helpers/llm_server.py) when it plays the scorer.

`by_word` answers detection and fuzzing requests by a fixed rule a test can compute exactly:
an example fits when its text (detection) or its marked token (fuzzing) contains the
explanation's word. `parse_request` reads back what the prompt quoted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tests.helpers.llm_server import ChatRequest, Reply

EXAMPLE = re.compile(r"<example (\d+)>(.*?)</example \1>")
MARKED = re.compile(r"<<(.*?)>>")


@dataclass(frozen=True)
class ScoreRequest:
    """A scorer's request as the prompt shows it."""

    scorer: str
    """`detection` or `fuzzing` (told apart by the system prompt's marks)."""
    explanation: str
    examples: list[str]
    """Each example's text as quoted (fuzzing: with its << >> mark)."""


def parse_request(request: ChatRequest) -> ScoreRequest:
    """What a score request asks about."""
    system = request.body["messages"][0]["content"]
    prompt = request.prompt
    explanation = re.search(r"^Explanation: (.*)$", prompt, re.MULTILINE)
    return ScoreRequest(
        scorer="fuzzing" if "<<like this>>" in system else "detection",
        explanation=explanation.group(1) if explanation else "",
        examples=[text for _, text in EXAMPLE.findall(prompt)],
    )


def fits(scorer: str, explanation: str, example: str) -> bool:
    """The rule: the explanation's word is in the example's text (detection) or in its marked token (fuzzing)."""
    word = explanation.strip().lower()
    if scorer == "fuzzing":
        marked = MARKED.search(example)
        return bool(marked) and word in marked.group(1).lower()  # type: ignore[union-attr]
    return word in MARKED.sub(lambda m: m.group(1), example).lower()


def verdict_content(request: ChatRequest) -> str:
    """The rule's answer to a score request, as the JSON object the scorer asks for."""
    asked = parse_request(request)
    return json.dumps({"answers": [int(fits(asked.scorer, asked.explanation, text)) for text in asked.examples]})


def by_word(request: ChatRequest) -> Reply:
    """A server policy: every score request answered by the rule."""
    return Reply(verdict_content(request))


def except_when(bad: Reply, condition: Callable[[ScoreRequest], bool]) -> Callable[[ChatRequest], Reply]:
    """A server policy: `bad` for the requests that meet `condition`, the rule's answer for the rest."""

    def respond(request: ChatRequest) -> Reply:
        """`bad` or the rule's answer."""
        return bad if condition(parse_request(request)) else by_word(request)

    return respond
