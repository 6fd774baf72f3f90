"""`<map>/scores_cache.jsonl`: the LLM scorers' answer cache, one JSON object per answered request.

Written by `vista score` (`pipeline.score`) as answers arrive, appended and fsynced at once as
`labels.jsonl` is (see `label_cache`): a run killed half-way keeps every answer it got, and a
rerun asks only for the requests that have no line. Keyed by a hash of the scorer, the model,
the system prompt and the exact prompt (which quotes the explanation and the items), so a
changed explanation, sample or model asks again. Read only by the score step. The standard
library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from vista_tui.mapdata.atomic import append_line, jsonl_objects
from vista_tui.mapdata.errors import MapCorruptError

SCORE_CACHE_FILE = "scores_cache.jsonl"


@dataclass(frozen=True)
class CachedAnswer:
    """One request's validated answer: one verdict per item shown, in the order shown."""

    key: str
    """Which request it answers: a hash of the scorer, the model, the system prompt and the prompt."""
    scorer: str
    answers: tuple[bool, ...]
    """True: the item fits the explanation (detection) or its highlighting is right (fuzzing)."""
    model: str = ""
    at: str = ""
    """ISO-8601 UTC time the answer arrived."""


def read_score_cache(map_dir: Path) -> dict[str, CachedAnswer]:
    """Cached answers by key ({} without a cache); a torn or foreign line is skipped, the later of two lines wins.

    MapCorruptError when the file is there but cannot be read at all.
    """
    path = Path(map_dir) / SCORE_CACHE_FILE
    found: dict[str, CachedAnswer] = {}
    if not path.is_file():
        return found
    try:
        for raw in jsonl_objects(path):
            try:
                answers = raw["answers"]
                if not isinstance(answers, list) or not all(isinstance(a, bool) for a in answers):
                    continue
                entry = CachedAnswer(
                    key=str(raw["key"]),
                    scorer=str(raw["scorer"]),
                    answers=tuple(answers),
                    model=str(raw.get("model", "")),
                    at=str(raw.get("at", "")),
                )
            except (KeyError, TypeError, AttributeError):
                continue
            found[entry.key] = entry
    except OSError as error:
        raise MapCorruptError(f"{path} is unreadable ({error}): move it aside to score from scratch") from None
    return found


class ScoreCacheWriter:
    """Appends one line per answer, flushed and fsynced at once, from any worker thread."""

    def __init__(self, map_dir: Path) -> None:
        self.path = Path(map_dir) / SCORE_CACHE_FILE

    def append(self, entry: CachedAnswer) -> None:
        """Add one answer; it is on disk when this returns."""
        raw = asdict(entry)
        raw["answers"] = list(entry.answers)
        append_line(self.path, json.dumps(raw, ensure_ascii=False))
