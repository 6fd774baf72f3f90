"""Match tables: which latents of one SAE correspond to which of another, by decoder (and encoder) direction.

```
<store>/matches/<match_id>/
  manifest.json      the two SAEs, the parameters, the one-to-one summary (written last)
  matches.parquet    one row per latent of SAE A: its top-k neighbours in B by decoder cosine
                     and by encoder cosine, and its partner in the one-to-one (Hungarian) matching
```

`vista match SAE_A SAE_B` writes a table; the explorer reads it to list a latent's matches
(from A to B by the rows, from B to A by `MatchTable.reverse`) and to open the matched latent's
map. SAEs are named as the maps' provenance names them (`Provenance.sae`: a release/id or a
local path); `sae_key` makes both spellings of one local path compare equal.

Both files are written to a temporary name, fsynced and renamed, the manifest last. Readers
refuse an unknown `schema_version`, ignore unknown manifest keys and columns, and raise one-line
MapErrors. Manifest-level names need only the standard library; pyarrow loads with the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.mapdata.atomic import atomic_write, atomic_write_json, read_json_manifest
from vista_tui.mapdata.errors import MapCorruptError, MapError

if TYPE_CHECKING:
    import pyarrow as pa

MATCHES_DIR = "matches"
"""The folder of a store that holds its match tables."""
MATCH_MANIFEST = "manifest.json"
MATCH_TABLE_FILE = "matches.parquet"
MATCH_SCHEMA_VERSION = 1
MATCH_HINT = "recompute it with `vista match SAE_A SAE_B`"
"""What a match-table error tells a person to do."""


def sae_key(sae: str) -> str:
    """How two names of one SAE compare: a local path resolved (so `./saes/x` equals `/abs/saes/x`), a
    release/id as written."""
    text = str(sae).strip()
    path = Path(text).expanduser()
    if text and path.exists():
        return str(path.resolve())
    return text


def match_id_for(sae_a: str, sae_b: str) -> str:
    """A readable directory name for the table of A against B: both SAEs' last path parts, slugged, plus a
    short hash of their full keys so that two SAEs named alike in different folders do not collide."""
    import hashlib

    def short(sae: str) -> str:
        parts = [p for p in re.split(r"[/\\]+", sae.strip()) if p]
        tail = "-".join(parts[-2:]) if parts else "sae"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-")[:48] or "sae"

    digest = hashlib.sha256(f"{sae_key(sae_a)}\n{sae_key(sae_b)}".encode()).hexdigest()[:8]
    return f"{short(sae_a)}__vs__{short(sae_b)}_{digest}"


@dataclass(frozen=True)
class SaeRef:
    """One side of a match: the SAE as the maps name it, and its shape."""

    sae: str
    """Release/id or local path, as `vista build --sae` takes it and a map's provenance records it."""
    d_in: int
    d_sae: int
    hook: str = ""
    """The hook the SAE reads (from its cfg), "" when unknown."""
    model: str = ""
    """The model it was trained on (from its cfg), "" when unknown."""

    @property
    def key(self) -> str:
        """`sae_key` of the name: what comparisons use."""
        return sae_key(self.sae)

    def to_dict(self) -> dict[str, Any]:
        return {"sae": self.sae, "d_in": self.d_in, "d_sae": self.d_sae, "hook": self.hook, "model": self.model}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SaeRef:
        return cls(
            sae=str(raw["sae"]),
            d_in=int(raw["d_in"]),
            d_sae=int(raw["d_sae"]),
            hook=str(raw.get("hook", "")),
            model=str(raw.get("model", "")),
        )


@dataclass(frozen=True)
class MatchManifest:
    """What a match table compares and how, with the one-to-one matching's summary."""

    match_id: str
    created: str
    """UTC ISO-8601 time the table was written."""
    sae_a: SaeRef
    sae_b: SaeRef
    k: int
    """Neighbours kept per latent of A, by decoder and by encoder cosine."""
    threshold: float
    """A matched pair counts as shared at or above this decoder cosine."""
    method: str
    """How the one-to-one matching was solved, e.g. "dense" or "top-k candidates"."""
    exact: bool
    """Whether the matching is the exact maximum-weight assignment over the full cosine matrix."""
    mean_matched_cosine: float
    """Mean decoder cosine over matched pairs (NaN when none)."""
    share_above: float
    """Share of A's latents whose matched partner has decoder cosine >= threshold."""
    n_matched: int
    note: str = ""
    """One line on the method's limits, e.g. how far from exact a sparsified matching can be."""
    seconds: float = 0.0
    schema_version: int = MATCH_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys this version does not know, kept so that a rewrite does not drop them."""

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "schema_version": self.schema_version,
            "match_id": self.match_id,
            "created": self.created,
            "sae_a": self.sae_a.to_dict(),
            "sae_b": self.sae_b.to_dict(),
            "k": self.k,
            "threshold": self.threshold,
            "method": self.method,
            "exact": self.exact,
            "mean_matched_cosine": None if math.isnan(self.mean_matched_cosine) else self.mean_matched_cosine,
            "share_above": self.share_above,
            "n_matched": self.n_matched,
            "note": self.note,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MatchManifest:
        known = {
            "schema_version", "match_id", "created", "sae_a", "sae_b", "k", "threshold", "method", "exact",
            "mean_matched_cosine", "share_above", "n_matched", "note", "seconds",
        }  # fmt: skip
        mean = raw.get("mean_matched_cosine")
        return cls(
            match_id=str(raw["match_id"]),
            created=str(raw["created"]),
            sae_a=SaeRef.from_dict(raw["sae_a"]),
            sae_b=SaeRef.from_dict(raw["sae_b"]),
            k=int(raw["k"]),
            threshold=float(raw["threshold"]),
            method=str(raw["method"]),
            exact=bool(raw["exact"]),
            mean_matched_cosine=float("nan") if mean is None else float(mean),
            share_above=float(raw["share_above"]),
            n_matched=int(raw["n_matched"]),
            note=str(raw.get("note", "")),
            seconds=float(raw.get("seconds", 0.0)),
            schema_version=int(raw["schema_version"]),
            extra={key: value for key, value in raw.items() if key not in known},
        )


@dataclass(frozen=True)
class LatentMatches:
    """One latent of A: its neighbours in B, best first, and its one-to-one partner."""

    latent: int
    decoder_neighbours: tuple[int, ...]
    decoder_cosines: tuple[float, ...]
    encoder_neighbours: tuple[int, ...]
    encoder_cosines: tuple[float, ...]
    matched: int
    """Its partner in B under the one-to-one matching, -1 when it has none."""
    matched_cosine: float
    """The partner's decoder cosine, NaN when none."""

    def __post_init__(self) -> None:
        if len(self.decoder_neighbours) != len(self.decoder_cosines):
            raise ValueError("decoder_neighbours and decoder_cosines differ in length")
        if len(self.encoder_neighbours) != len(self.encoder_cosines):
            raise ValueError("encoder_neighbours and encoder_cosines differ in length")


def matches_schema() -> pa.Schema:
    """The columns of matches.parquet."""
    import pyarrow as pa

    return pa.schema(
        [
            ("latent", pa.int32()),
            ("decoder_neighbours", pa.list_(pa.int32())),
            ("decoder_cosines", pa.list_(pa.float32())),
            ("encoder_neighbours", pa.list_(pa.int32())),
            ("encoder_cosines", pa.list_(pa.float32())),
            ("matched", pa.int32()),
            ("matched_cosine", pa.float32()),
        ]
    )


def matches_table(rows: Iterable[LatentMatches]) -> pa.Table:
    """matches.parquet's table from rows, sorted by latent; a latent given twice is refused (ValueError)."""
    import pyarrow as pa

    rows = sorted(rows, key=lambda row: row.latent)
    latents = [row.latent for row in rows]
    if len(set(latents)) != len(latents):
        raise ValueError("a latent appears twice in the match rows")
    return pa.table(
        {
            "latent": latents,
            "decoder_neighbours": [list(row.decoder_neighbours) for row in rows],
            "decoder_cosines": [list(row.decoder_cosines) for row in rows],
            "encoder_neighbours": [list(row.encoder_neighbours) for row in rows],
            "encoder_cosines": [list(row.encoder_cosines) for row in rows],
            "matched": [row.matched for row in rows],
            "matched_cosine": [row.matched_cosine for row in rows],
        },
        schema=matches_schema(),
    )


@dataclass
class MatchTable:
    """A match table as read: its manifest and rows (pyarrow), with lookups both ways."""

    path: Path
    manifest: MatchManifest
    table: pa.Table
    _rows: dict[int, int] | None = None

    def _index(self) -> dict[int, int]:
        if self._rows is None:
            self._rows = {int(latent): i for i, latent in enumerate(self.table.column("latent").to_pylist())}
        return self._rows

    def row(self, latent: int) -> LatentMatches | None:
        """Latent `latent` of A, or None when the table has no row for it."""
        i = self._index().get(int(latent))
        if i is None:
            return None
        raw = self.table.slice(i, 1).to_pylist()[0]
        cosine = raw["matched_cosine"]
        return LatentMatches(
            latent=int(raw["latent"]),
            decoder_neighbours=tuple(int(v) for v in raw["decoder_neighbours"]),
            decoder_cosines=tuple(float(v) for v in raw["decoder_cosines"]),
            encoder_neighbours=tuple(int(v) for v in raw["encoder_neighbours"]),
            encoder_cosines=tuple(float(v) for v in raw["encoder_cosines"]),
            matched=int(raw["matched"]),
            matched_cosine=float("nan") if cosine is None else float(cosine),
        )

    def reverse(self, latent_b: int) -> list[tuple[int, float]]:
        """The latents of A that have `latent_b` of B among their decoder neighbours, or as their one-to-one
        partner, with the decoder cosine, best first (ties by latent)."""
        import numpy as np

        found: dict[int, float] = {}
        latents = self.table.column("latent").to_numpy()
        neighbours = self.table.column("decoder_neighbours").combine_chunks()
        flat = neighbours.values.to_numpy()
        cosines = self.table.column("decoder_cosines").combine_chunks().values.to_numpy()
        owner = np.repeat(np.arange(len(latents)), np.diff(neighbours.offsets.to_numpy()))
        for hit in np.flatnonzero(flat == int(latent_b)):
            found[int(latents[owner[hit]])] = float(cosines[hit])
        matched = self.table.column("matched").to_numpy()
        matched_cosine = self.table.column("matched_cosine").to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(matched == int(latent_b)):
            found.setdefault(int(latents[i]), float(matched_cosine[i]))
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))


def read_match_manifest(match_dir: Path) -> MatchManifest:
    """The manifest of a match-table directory, validated; raises a one-line MapError."""
    return read_json_manifest(
        match_dir,
        MATCH_MANIFEST,
        noun="match table",
        unfinished="an interrupted `vista match`?",
        id_field="match_id",
        version=MATCH_SCHEMA_VERSION,
        hint=MATCH_HINT,
        parse=MatchManifest.from_dict,
    )


def read_match_table(match_dir: Path | str) -> MatchTable:
    """A match table: manifest and matches.parquet; raises a one-line MapError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    match_dir = Path(match_dir)
    manifest = read_match_manifest(match_dir)
    path = match_dir / MATCH_TABLE_FILE
    if not path.is_file():
        raise MapCorruptError(f"match table {match_dir.name} has no {MATCH_TABLE_FILE}: {MATCH_HINT}")
    schema = matches_schema()
    try:
        table = pq.ParquetFile(pa.BufferReader(path.read_bytes())).read()
        missing = [name for name in schema.names if name not in table.column_names]
        if missing:
            raise MapCorruptError(
                f"{MATCH_TABLE_FILE} of match table {match_dir.name} lacks the columns {', '.join(missing)}:"
                f" {MATCH_HINT}"
            )
        table = table.select(schema.names).cast(schema)
    except (pa.ArrowException, OSError, ValueError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(
            f"{MATCH_TABLE_FILE} of match table {match_dir.name} is unreadable, truncated or damaged ({why}):"
            f" {MATCH_HINT}"
        ) from None
    return MatchTable(path=match_dir, manifest=manifest, table=table)


def write_match_table(match_dir: Path | str, manifest: MatchManifest, rows: Iterable[LatentMatches] | pa.Table) -> Path:
    """Write matches.parquet, then manifest.json (each atomically); returns the directory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    match_dir = Path(match_dir)
    if manifest.schema_version != MATCH_SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {MATCH_SCHEMA_VERSION}, got {manifest.schema_version}")
    table = rows.cast(matches_schema()) if isinstance(rows, pa.Table) else matches_table(rows)
    match_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(
        match_dir / MATCH_TABLE_FILE,
        lambda handle: pq.write_table(table, handle, row_group_size=4096, compression="zstd"),
    )
    atomic_write_json(match_dir / MATCH_MANIFEST, manifest.to_dict())
    return match_dir


@dataclass(frozen=True)
class MatchEntry:
    """A match-table directory, with its manifest or the reason it cannot be read."""

    match_id: str
    path: Path
    manifest: MatchManifest | None
    error: str | None


def list_match_tables(matches_dir: Path) -> list[MatchEntry]:
    """Every match table under `matches_dir`, newest first, from manifests alone; unreadable ones carry
    their error instead."""
    matches_dir = Path(matches_dir)
    if not matches_dir.is_dir():
        return []
    entries: list[MatchEntry] = []
    for path in matches_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            entries.append(MatchEntry(path.name, path, read_match_manifest(path), None))
        except MapError as error:
            entries.append(MatchEntry(path.name, path, None, str(error)))
    entries.sort(key=lambda e: (e.manifest.created if e.manifest else "", e.match_id), reverse=True)
    return entries


def tables_for_sae(matches_dir: Path, sae: str) -> list[MatchEntry]:
    """The readable match tables with `sae` on either side (newest first)."""
    key = sae_key(sae)
    return [
        entry
        for entry in list_match_tables(matches_dir)
        if entry.manifest is not None and key in (entry.manifest.sae_a.key, entry.manifest.sae_b.key)
    ]
