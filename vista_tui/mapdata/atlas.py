"""An atlas: every requested latent of one SAE, one row each, with the latents' maps beside it.

```
<store>/atlases/<atlas_id>/
  manifest.json      what was harvested: model, hook, SAE, corpus, parameters (written last)
  latents.parquet    one row per latent: density, max activation, contexts, top focus tokens,
                     published explanation, LLM label, fidelity, its map id, built or why not
  maps/<map_id>/     the latents' maps, in the normal map format
```

The atlas directory is itself a store root for its maps: `Store(atlas_dir).map_path(map_id)` is
where a latent's map goes. Both files are written to a temporary name, fsynced and renamed, the
manifest last; `update_latent_rows` rewrites the table under a lock file, so the builds of
several latents that finish at once never lose one another's rows. Readers refuse an unknown
`schema_version`, ignore unknown manifest keys and columns, and raise one-line MapErrors.

Manifest-level names need only the standard library: listing the atlases of a store (the
picker, `vista explore ATLAS`) reads manifests alone. pyarrow loads with the first table read.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vista_tui.mapdata.atomic import atomic_write, atomic_write_json, read_json_manifest
from vista_tui.mapdata.errors import MapCorruptError, MapError, MapNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa

ATLASES_DIR = "atlases"
"""The folder of a store that holds its atlases."""
ATLAS_MANIFEST = "manifest.json"
LATENTS_FILE = "latents.parquet"
ATLAS_SCHEMA_VERSION = 1
ATLAS_HINT = "rebuild it with `vista atlas build`"
"""What an atlas error tells a person to do."""
TOP_TOKENS = 8
"""At most this many top focus tokens per latent."""
_LOCK_FILE = ".latents.lock"


@dataclass(frozen=True)
class AtlasManifest:
    """What an atlas was harvested from and with: written last, so a folder without one is not an atlas."""

    atlas_id: str
    created: str
    """UTC ISO-8601 time the atlas was first written."""
    model: str
    hook: str
    sae: str
    d_sae: int
    d_model: int
    corpus: str
    n_tokens_seen: int
    n_documents: int
    latents: tuple[int, ...]
    """The latents requested, ascending."""
    params: dict[str, Any] = field(default_factory=dict)
    """Harvest parameters (top_n, window, max_length, batch_size, …), JSON-able."""
    schema_version: int = ATLAS_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of manifest.json."""
        return {
            "schema_version": self.schema_version,
            "atlas_id": self.atlas_id,
            "created": self.created,
            "model": self.model,
            "hook": self.hook,
            "sae": self.sae,
            "d_sae": self.d_sae,
            "d_model": self.d_model,
            "corpus": self.corpus,
            "n_tokens_seen": self.n_tokens_seen,
            "n_documents": self.n_documents,
            "latents": list(self.latents),
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AtlasManifest:
        """Read `to_dict`'s object (unknown keys ignored); KeyError, TypeError or ValueError on a bad field."""
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be an object, got {type(params).__name__}")
        return cls(
            schema_version=int(raw["schema_version"]),
            atlas_id=str(raw["atlas_id"]),
            created=str(raw.get("created", "")),
            model=str(raw["model"]),
            hook=str(raw["hook"]),
            sae=str(raw["sae"]),
            d_sae=int(raw["d_sae"]),
            d_model=int(raw["d_model"]),
            corpus=str(raw["corpus"]),
            n_tokens_seen=int(raw["n_tokens_seen"]),
            n_documents=int(raw["n_documents"]),
            latents=tuple(int(latent) for latent in raw["latents"]),
            params=dict(params),
        )


@dataclass(frozen=True)
class LatentRow:
    """One latent of an atlas: its statistics, what names it, and its map (or why it has none)."""

    latent: int
    density: float
    """Share of the corpus's real tokens on which the latent fired."""
    n_fired: int
    max_activation: float
    n_contexts: int
    top_tokens: tuple[str, ...] = ()
    """Top focus tokens by count (up to `TOP_TOKENS`), display tokens as stored, leading space kept."""
    top_counts: tuple[int, ...] = ()
    explanation: str = ""
    """The published explanation ("" when none)."""
    llm_label: str = ""
    fidelity_k: int = -1
    """The fidelity curve's argmax k (-1 when none)."""
    fidelity_gain: float = math.nan
    """The gain at that k (NaN when none)."""
    map_id: str = ""
    """The latent's map under `<atlas>/maps/` ("" until built)."""
    built: bool = False
    error: str = ""
    """"" or one line: why the latent has no map (never fired, too few contexts, …)."""
    order: int = -1
    """The latent's position in the order the atlas was asked for (the demo: most varied first); -1 when
    the atlas was given no order, or not this latent's."""

    def __post_init__(self) -> None:
        if len(self.top_tokens) != len(self.top_counts):
            raise ValueError(
                f"latent {self.latent}: {len(self.top_tokens)} top tokens but {len(self.top_counts)} counts"
            )


def latents_schema() -> pa.Schema:
    """The columns of latents.parquet, in order."""
    import pyarrow as pa

    return pa.schema(
        [
            ("latent", pa.int32()),
            ("density", pa.float64()),
            ("n_fired", pa.int64()),
            ("max_activation", pa.float32()),
            ("n_contexts", pa.int32()),
            ("top_tokens", pa.list_(pa.string())),
            ("top_counts", pa.list_(pa.int32())),
            ("explanation", pa.string()),
            ("llm_label", pa.string()),
            ("fidelity_k", pa.int32()),
            ("fidelity_gain", pa.float32()),
            ("map_id", pa.string()),
            ("built", pa.bool_()),
            ("error", pa.string()),
            ("order", pa.int32()),
        ]
    )


OPTIONAL_COLUMNS = {"order": -1}
"""Columns an older latents.parquet may lack, with the value each row then gets."""


def latents_table(rows: Iterable[LatentRow]) -> pa.Table:
    """The rows in latents.parquet's schema, ascending by latent; a latent given twice is refused (ValueError)."""
    import pyarrow as pa

    ordered = sorted(rows, key=lambda row: row.latent)
    for before, after in itertools.pairwise(ordered):
        if before.latent == after.latent:
            raise ValueError(f"latent {after.latent} is given twice")
    schema = latents_schema()
    columns = {
        "latent": [row.latent for row in ordered],
        "density": [float(row.density) for row in ordered],
        "n_fired": [row.n_fired for row in ordered],
        "max_activation": [float(row.max_activation) for row in ordered],
        "n_contexts": [row.n_contexts for row in ordered],
        "top_tokens": [list(row.top_tokens[:TOP_TOKENS]) for row in ordered],
        "top_counts": [list(row.top_counts[:TOP_TOKENS]) for row in ordered],
        "explanation": [row.explanation for row in ordered],
        "llm_label": [row.llm_label for row in ordered],
        "fidelity_k": [row.fidelity_k for row in ordered],
        "fidelity_gain": [float(row.fidelity_gain) for row in ordered],
        "map_id": [row.map_id for row in ordered],
        "built": [bool(row.built) for row in ordered],
        "error": [" ".join(row.error.split()) for row in ordered],  # one line, whatever the writer gave
        "order": [row.order for row in ordered],
    }
    return pa.table(columns, schema=schema)


def rows_from_table(table: pa.Table) -> list[LatentRow]:
    """Every row of a latents table as a LatentRow (for small uses: 16k rows cost a few hundred ms)."""
    return [
        LatentRow(
            latent=int(row["latent"]),
            density=float(row["density"]),
            n_fired=int(row["n_fired"]),
            max_activation=float(row["max_activation"]),
            n_contexts=int(row["n_contexts"]),
            top_tokens=tuple(row["top_tokens"] or ()),
            top_counts=tuple(int(c) for c in row["top_counts"] or ()),
            explanation=row["explanation"] or "",
            llm_label=row["llm_label"] or "",
            fidelity_k=int(row["fidelity_k"]),
            fidelity_gain=math.nan if row["fidelity_gain"] is None else float(row["fidelity_gain"]),
            map_id=row["map_id"] or "",
            built=bool(row["built"]),
            error=row["error"] or "",
            order=-1 if row["order"] is None else int(row["order"]),
        )
        for row in table.to_pylist()
    ]


@dataclass(frozen=True)
class Atlas:
    """An atlas read from disk: its manifest and its latents table (one row per latent, ascending)."""

    path: Path
    manifest: AtlasManifest
    table: pa.Table

    def rows(self) -> list[LatentRow]:
        """The latents as LatentRows (for small uses; the explorer reads the columns)."""
        return rows_from_table(self.table)


@dataclass(frozen=True)
class AtlasEntry:
    """An atlas directory in the store, with its manifest or the reason it cannot be read."""

    atlas_id: str
    path: Path
    manifest: AtlasManifest | None
    error: str | None


def read_atlas_manifest(atlas_dir: Path) -> AtlasManifest:
    """The manifest of an atlas directory, validated; raises a MapError with a one-line message."""
    return read_json_manifest(
        atlas_dir,
        ATLAS_MANIFEST,
        noun="atlas",
        unfinished="an unfinished atlas build?",
        id_field="atlas_id",
        version=ATLAS_SCHEMA_VERSION,
        hint=ATLAS_HINT,
        parse=AtlasManifest.from_dict,
    )


def is_atlas_dir(path: Path) -> bool:
    """Whether `path` looks like an atlas directory (its latents file, or a folder of a store's atlases/)."""
    path = Path(path)
    return (path / LATENTS_FILE).is_file() or (path.is_dir() and path.parent.name == ATLASES_DIR)


def read_latents(atlas_dir: Path) -> pa.Table:
    """latents.parquet of an atlas, in the current schema (unknown columns dropped); one-line MapCorruptError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    atlas_dir = Path(atlas_dir)
    path = atlas_dir / LATENTS_FILE
    if not path.is_file():
        raise MapCorruptError(
            f"atlas {atlas_dir.name} has no {LATENTS_FILE} (an unfinished atlas build?): {ATLAS_HINT}"
        )
    schema = latents_schema()
    try:
        # One read of the whole file: a path lets pyarrow open it more than once, and a writer's
        # rename between two opens would mix the footer of one version with the pages of another.
        # ParquetFile, not read_table: read_table imports pandas when it is installed (~300 ms).
        table = pq.ParquetFile(pa.BufferReader(path.read_bytes())).read()
    except (pa.ArrowException, OSError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(
            f"{LATENTS_FILE} of atlas {atlas_dir.name} is unreadable, truncated or damaged ({why}): {ATLAS_HINT}"
        ) from None
    for name, value in OPTIONAL_COLUMNS.items():
        if name not in table.column_names:  # written before the column existed
            table = table.append_column(name, pa.array([value] * table.num_rows, schema.field(name).type))
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        raise MapCorruptError(
            f"{LATENTS_FILE} of atlas {atlas_dir.name} lacks the columns {', '.join(missing)}: {ATLAS_HINT}"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError) as error:
        why = " ".join(str(error).split())
        raise MapCorruptError(
            f"{LATENTS_FILE} of atlas {atlas_dir.name} has a column of a bad type ({why}): {ATLAS_HINT}"
        ) from None


def read_atlas(atlas_dir: Path | str) -> Atlas:
    """The atlas in `atlas_dir`: its manifest and latents table; raises a one-line MapError."""
    atlas_dir = Path(atlas_dir)
    manifest = read_atlas_manifest(atlas_dir)
    return Atlas(path=atlas_dir, manifest=manifest, table=read_latents(atlas_dir))


def _write_table(atlas_dir: Path, table: pa.Table) -> None:
    """latents.parquet, atomically."""
    import pyarrow.parquet as pq

    # Row groups of 4k rows: a reader that wants a few columns of a 16k-latent atlas pages through it.
    atomic_write(
        atlas_dir / LATENTS_FILE,
        lambda handle: pq.write_table(table, handle, row_group_size=4096, compression="zstd"),
    )


@contextmanager
def _locked(atlas_dir: Path) -> Iterator[None]:
    """Hold the atlas's lock file (POSIX advisory lock) while its table is read and rewritten."""
    atlas_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): writers must not overlap
        yield
        return
    fd = os.open(atlas_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_atlas(atlas_dir: Path | str, manifest: AtlasManifest, rows: Iterable[LatentRow]) -> Path:
    """Write an atlas: latents.parquet, then manifest.json (each atomically); returns the directory.

    A latent given twice is refused (ValueError), as is a manifest of another schema version.
    The latents' maps (`maps/`) are left as they are.
    """
    atlas_dir = Path(atlas_dir)
    if manifest.schema_version != ATLAS_SCHEMA_VERSION:
        raise ValueError(f"schema_version must be {ATLAS_SCHEMA_VERSION}, got {manifest.schema_version}")
    table = latents_table(rows)
    with _locked(atlas_dir):
        _write_table(atlas_dir, table)
        atomic_write_json(atlas_dir / ATLAS_MANIFEST, manifest.to_dict())
    return atlas_dir


def update_latent_rows(atlas_dir: Path | str, rows: Iterable[LatentRow]) -> pa.Table:
    """Replace the rows of these latents (adding any the table lacks) and rewrite latents.parquet atomically.

    Under the atlas's lock: two processes updating at once both keep their rows. Raises a
    one-line MapError when the atlas cannot be read. Returns the table written.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    atlas_dir = Path(atlas_dir)
    replacement = latents_table(rows)
    with _locked(atlas_dir):
        read_atlas_manifest(atlas_dir)
        table = read_latents(atlas_dir)
        keep = pc.invert(pc.is_in(table.column("latent"), value_set=replacement.column("latent")))
        merged = pa.concat_tables([table.filter(keep), replacement])
        merged = merged.take(pc.sort_indices(merged, sort_keys=[("latent", "ascending")]))
        _write_table(atlas_dir, merged)
    return merged


def list_atlases(atlases_dir: Path) -> list[AtlasEntry]:
    """Every atlas directory under `atlases_dir`, newest first; unreadable ones carry their error instead."""
    atlases_dir = Path(atlases_dir)
    if not atlases_dir.is_dir():
        return []
    entries: list[AtlasEntry] = []
    for path in atlases_dir.iterdir():
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            entries.append(AtlasEntry(path.name, path, read_atlas_manifest(path), None))
        except MapError as error:
            entries.append(AtlasEntry(path.name, path, None, str(error)))
    entries.sort(key=lambda e: (e.manifest.created if e.manifest else "", e.atlas_id), reverse=True)
    return entries


SHOWN_ATLASES = 5
"""How many atlases an error names."""


def find_atlas(atlases_dir: Path, name: str) -> Path:
    """An atlas by path to its directory, or under `atlases_dir` by its id or a unique prefix or suffix of
    it (any case); a name that fits none or several is refused with one line (MapNotFoundError)."""
    atlases_dir = Path(atlases_dir)
    as_path = Path(name).expanduser()
    if name and is_atlas_dir(as_path):
        return as_path
    candidate = atlases_dir / name
    if name and candidate.is_dir():
        return candidate
    entries = list_atlases(atlases_dir)
    needle = name.lower()
    matches = (
        [e for e in entries if e.atlas_id.lower().startswith(needle) or e.atlas_id.lower().endswith(needle)]
        if name
        else []
    )
    if len(matches) == 1:
        return matches[0].path
    if matches:
        shown = ", ".join(e.atlas_id for e in matches[:SHOWN_ATLASES])
        more = f" and {len(matches) - SHOWN_ATLASES} more" if len(matches) > SHOWN_ATLASES else ""
        raise MapNotFoundError(f"atlas name {name!r} is ambiguous in {atlases_dir}: {shown}{more}; give more of the id")
    known = [e.atlas_id for e in entries]
    hint = (
        f"known atlases: {', '.join(known[:SHOWN_ATLASES])}"
        if known
        else "the store has no atlases; run `vista atlas build`"
    )
    raise MapNotFoundError(f"no atlas {name!r} in {atlases_dir} ({hint})")
