"""`<map>/labels.jsonl`: the label step's answer cache, one JSON object per line.

Written by `vista label` (`pipeline.label`) as answers arrive: each valid answer is appended
and fsynced at once, so a run killed half-way keeps every answer it paid for and a rerun
asks only for what is missing. That is why this file is appended to, not rewritten
atomically: a kill can tear at most the last line, which the reader skips. Keyed by
`cache_key(node id, prompt, model)`, so a changed prompt or model asks again. Read only by
the label step; the tree carries the labels the explorer shows. The standard library only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from vista_tui.mapdata.atomic import append_line, jsonl_objects
from vista_tui.mapdata.errors import MapCorruptError

LABEL_CACHE_FILE = "labels.jsonl"


@dataclass(frozen=True)
class CachedLabel:
    """One validated answer of the LLM for one node."""

    node_id: str
    key: str
    """Which question it answers: a hash of the node id, the exact prompt and the model."""
    label: str
    explanation: str
    visual_prompt: str
    model: str = ""
    """The model that answered."""
    at: str = ""
    """ISO-8601 UTC time the answer arrived."""


def read_label_cache(map_dir: Path) -> dict[str, CachedLabel]:
    """Cached answers by key ({} when there is no cache); a torn or foreign line is skipped.

    MapCorruptError when the file is there but cannot be read at all.
    """
    path = Path(map_dir) / LABEL_CACHE_FILE
    found: dict[str, CachedLabel] = {}
    if not path.is_file():
        return found
    try:
        for raw in jsonl_objects(path):
            try:
                entry = CachedLabel(
                    node_id=str(raw["node_id"]),
                    key=str(raw["key"]),
                    label=str(raw["label"]),
                    explanation=str(raw["explanation"]),
                    visual_prompt=str(raw["visual_prompt"]),
                    model=str(raw.get("model", "")),
                    at=str(raw.get("at", "")),
                )
            except (KeyError, TypeError, AttributeError):
                continue
            found[entry.key] = entry
    except OSError as error:
        raise MapCorruptError(f"{path} is unreadable ({error}): move it aside to label from scratch") from None
    return found


class LabelCacheWriter:
    """Appends one line per answer, flushed and fsynced at once, from any worker thread."""

    def __init__(self, map_dir: Path) -> None:
        self.path = Path(map_dir) / LABEL_CACHE_FILE

    def append(self, entry: CachedLabel) -> None:
        """Add one answer; it is on disk when this returns."""
        append_line(self.path, json.dumps(asdict(entry), ensure_ascii=False))
