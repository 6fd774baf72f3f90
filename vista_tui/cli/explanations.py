"""`vista import-explanations`: a Neuronpedia explanations export, kept beside the map as explanations.json."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.cli.console import fail
from vista_tui.cli.opening import find_map
from vista_tui.mapdata import (
    EXPLANATIONS_FILE,
    MapError,
    PublishedExplanation,
    PublishedExplanations,
    read_manifest,
    read_published_explanations,
    utc_now,
    write_published_explanations,
)

if TYPE_CHECKING:
    from vista_tui.mapdata import Provenance


def add_explanations_parser(subparsers: Any) -> None:
    """Add `import-explanations` to `vista`'s subcommands (sets `run=cmd_import_explanations`)."""
    explanations = subparsers.add_parser(
        "import-explanations",
        help="import a Neuronpedia explanations export for the map's latent",
        description="Read a Neuronpedia explanations export (a JSON list or JSON lines of objects with "
        "'description' or 'explanation'), keep those for the map's latent (by 'index'; all when the file "
        f"has no index) and store them in the map directory as {EXPLANATIONS_FILE}.",
    )
    explanations.add_argument("map", help="map id in the store, or path to a map directory")
    explanations.add_argument("file", help="the export (.json or .jsonl)")
    explanations.add_argument("--cache", metavar="DIR", default=argparse.SUPPRESS, help="the map store")
    explanations.add_argument(
        "--force",
        action="store_true",
        help="import even when the explanations' model, layer or SAE width ('modelId', 'layer') is not the map's",
    )
    explanations.set_defaults(run=cmd_import_explanations)


def read_explanations(path: Path) -> list[dict[str, Any]]:
    """The objects of a Neuronpedia explanations export (JSON list, {'explanations': [...]}, or JSONL)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path} ({error})") from None
    try:
        parsed: Any = json.loads(text)
    except json.JSONDecodeError:
        parsed = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} line {number} is neither JSON nor JSON lines ({error.msg})") from None
    if isinstance(parsed, dict):
        parsed = parsed.get("explanations", [parsed])
    if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
        raise ValueError(f"{path} should hold a list of explanation objects")
    return parsed


def _explanation(item: dict[str, Any], number: int, path: Path) -> dict[str, Any]:
    """One export item as stored: its text, where it came from, its score (ValueError without text)."""
    text = item.get("description", item.get("explanation"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{path} item {number} has no 'description' or 'explanation' text")
    score = item.get("score")
    if isinstance(score, str):
        try:
            score = float(score)
        except ValueError:
            score = None
    return {
        "description": text.strip(),
        "model_id": item.get("modelId"),
        "layer": item.get("layer"),
        "index": item.get("index"),
        "explanation_model": item.get("explanationModelName"),
        "score": score if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
    }


def _index_of(item: dict[str, Any]) -> int | None:
    """The latent an item is about (Neuronpedia writes the index as a string), None when it has none."""
    index = item.get("index")
    if index is None:
        return None
    try:
        return int(str(index).strip())
    except ValueError:
        return None


def model_name(model: str) -> str:
    """A model as Neuronpedia names it: the last segment of its id or path, lower case
    ('google/gemma-2-2b' and 'gemma-2-2b' are the same model)."""
    return model.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def hook_layer(hook: str) -> int | None:
    """The layer a hook names ('20', 'model.layers.20', 'blocks.20.hook_resid_post'); None when it holds no
    number or several."""
    numbers = re.findall(r"\d+", hook)
    return int(numbers[0]) if len(numbers) == 1 else None


def published_layer(layer: str | int) -> int | None:
    """The layer of a Neuronpedia `layer` ('20-gemmascope-res-16k' → 20); None when it does not start with one."""
    found = re.match(r"\s*(\d+)(?!\d)", str(layer))
    return int(found.group(1)) if found else None


def published_width(layer: str | int) -> int | None:
    """The SAE width in a Neuronpedia `layer`, in thousands ('20-gemmascope-res-16k' → 16, '…-1m' → 1000)."""
    found = re.search(r"(?:^|[-_])(\d+)([km])(?:$|[-_])", str(layer).lower())
    if not found:
        return None
    return int(found.group(1)) * (1000 if found.group(2) == "m" else 1)


def mismatch(explanation: dict[str, Any], provenance: Provenance) -> str | None:
    """What of `explanation`'s origin (model, layer, SAE width) is not the map's, in words; None when nothing is.

    Only what both sides record is compared. Neuronpedia names widths by thousands rounded down
    (16,384 latents are '16k', 65,536 are '65k'), so the map's width is rounded the same way.
    """
    model, layer = explanation.get("model_id"), explanation.get("layer")
    if isinstance(model, str) and model.strip() and model_name(model) != model_name(provenance.model):
        return f"model {model}"
    if layer is None or isinstance(layer, bool):
        return None
    ours = hook_layer(provenance.hook)
    theirs = published_layer(layer)
    if ours is not None and theirs is not None and ours != theirs:
        return f"layer {layer}"
    width = published_width(layer)
    if width is not None and provenance.d_sae > 0 and provenance.d_sae // 1000 != width:
        return f"an SAE of width {layer} (the map's has {provenance.d_sae:,} latents)"
    return None


def cmd_import_explanations(args: argparse.Namespace) -> int:
    """Store the explanations of the map's latent in `<map>/explanations.json`; 0 done, 2 bad input."""
    try:
        map_dir = find_map(args)
        provenance = read_manifest(map_dir).provenance
        latent = provenance.latent
        path = Path(args.file)
        items = read_explanations(path)
        if not items:
            raise ValueError(f"{path} holds no explanations")
        has_index = any(item.get("index") is not None for item in items)
        kept = [
            _explanation(item, number, path)
            for number, item in enumerate(items, start=1)
            if not has_index or _index_of(item) == latent
        ]
        if not kept:
            indices = sorted({str(item.get("index")) for item in items})
            raise ValueError(
                f"no explanation in {path} is for latent {latent} of map {map_dir.name} "
                f"(its indices: {', '.join(indices[:5])}{' …' if len(indices) > 5 else ''})"
            )
        if not args.force:
            for explanation in kept:
                differs = mismatch(explanation, provenance)
                if differs is not None:
                    raise ValueError(
                        f"{path} explains {differs}, but map {map_dir.name} is of {provenance.model} at hook "
                        f"{provenance.hook} (SAE {provenance.sae}); --force imports it anyway"
                    )
        stored = read_published_explanations(map_dir)
        existing = list(stored.explanations) if stored is not None else []
        now = utc_now()
        keys = {e.key for e in existing}
        added = 0
        for explanation in kept:
            entry = PublishedExplanation(**explanation, source=str(path), imported=now)
            if entry.key not in keys:
                keys.add(entry.key)
                existing.append(entry)
                added += 1
        target = write_published_explanations(
            map_dir, PublishedExplanations(latent=latent, explanations=tuple(existing))
        )
    except (MapError, ValueError, OSError) as error:
        return fail(error)
    print(
        f"imported {added} explanation{'s' if added != 1 else ''} for latent {latent} into {target}"
        + (f" ({len(kept) - added} already there)" if len(kept) != added else "")
    )
    return 0
