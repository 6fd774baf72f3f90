"""`<map>/explanations.json`: the latent's published explanations (e.g. Neuronpedia's), as imported.

Written only by `vista import-explanations`, which merges what it imports into what is there;
read by the explorer (shown at the root) and by the agreement step (scored against the
top-level clusters). The standard library only: the CLI writes it without numpy or pyarrow.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vista_tui.mapdata.atomic import atomic_write
from vista_tui.mapdata.errors import MapCorruptError

EXPLANATIONS_FILE = "explanations.json"
"""A map's published explanations (`vista import-explanations`, e.g. from Neuronpedia)."""
EXPLANATIONS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class PublishedExplanation:
    """One published explanation of the map's latent, with where it came from.

    The Neuronpedia fields keep the types the export gave them (its `index` is often a string).
    """

    description: str
    model_id: str | None = None
    """Neuronpedia's `modelId`, e.g. gemma-2-2b."""
    layer: str | int | None = None
    """Neuronpedia's `layer`, e.g. 20-gemmascope-res-16k."""
    index: str | int | None = None
    """The latent the export says this is for."""
    explanation_model: str | None = None
    """The model that wrote the explanation (Neuronpedia's `explanationModelName`)."""
    score: float | None = None
    source: str = ""
    """The file it was imported from."""
    imported: str = ""
    """ISO-8601 UTC time of the import."""

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        """What makes two explanations the same one (an import adds each key once)."""
        return (self.description, self.model_id, self.explanation_model)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PublishedExplanation:
        """One entry of the file; unknown keys are ignored, a missing description reads as ''."""
        description = raw.get("description")
        return cls(
            description=str(description) if description else "",
            model_id=raw.get("model_id"),
            layer=raw.get("layer"),
            index=raw.get("index"),
            explanation_model=raw.get("explanation_model"),
            score=raw.get("score"),
            source=str(raw.get("source") or ""),
            imported=str(raw.get("imported") or ""),
        )


@dataclass(frozen=True)
class PublishedExplanations:
    """The whole file: which latent, and its explanations in the order they were imported."""

    latent: int | None
    explanations: tuple[PublishedExplanation, ...] = ()
    schema_version: int = EXPLANATIONS_SCHEMA_VERSION

    @property
    def descriptions(self) -> list[str]:
        """The non-empty descriptions, in order."""
        return [e.description for e in self.explanations if e.description]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to the file."""
        return {
            "schema_version": self.schema_version,
            "latent": self.latent,
            "explanations": [asdict(e) for e in self.explanations],
        }


def read_published_explanations(map_dir: Path) -> PublishedExplanations | None:
    """The map's published explanations; None when it has none; MapCorruptError when the file is unreadable."""
    path = Path(map_dir) / EXPLANATIONS_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = raw.get("explanations", [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("'explanations' is not a list of objects")
        latent = raw.get("latent")
        return PublishedExplanations(
            latent=None if latent is None else int(latent),
            explanations=tuple(PublishedExplanation.from_dict(e) for e in entries),
            schema_version=int(raw.get("schema_version", EXPLANATIONS_SCHEMA_VERSION)),
        )
    except (OSError, ValueError, AttributeError, TypeError):
        # The one line `vista import-explanations` has always shown: the fix is the same for every cause.
        raise MapCorruptError(f"{path} is unreadable; move it aside and import again") from None


def write_published_explanations(map_dir: Path, explanations: PublishedExplanations) -> Path:
    """Write `<map>/explanations.json` atomically; returns its path."""
    path = Path(map_dir) / EXPLANATIONS_FILE
    # ensure_ascii=False: descriptions stay readable in the file (and byte-identical to earlier imports).
    data = json.dumps(explanations.to_dict(), indent=2, ensure_ascii=False).encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))
    return path


def published_descriptions(map_dir: Path) -> list[str]:
    """The published descriptions of the map's latent; [] when there are none or the file is unreadable.

    For readers that only show or score them: a broken side file must not stop a map from opening.
    """
    try:
        explanations = read_published_explanations(map_dir)
    except MapCorruptError:
        return []
    return [] if explanations is None else explanations.descriptions
