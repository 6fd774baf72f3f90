"""`<map>/negatives.parquet`: windows of the corpus on which the latent never fired, for scoring.

Drawn by the harvest in its single pass (`pipeline.harvest.negatives`): a bounded uniform sample
of windows whose every token has the latent at 0, written by the build with the map. The
explanation scorers (`pipeline.score`) show them beside a node's contexts as the non-activating
examples. A side file: not in the manifest (a map built before it existed opens without it), and
a build whose harvest drew none removes a stale one.

Columns, where they apply those of `contexts.parquet`: `context_id` (hash of corpus source,
document id and token position, as for contexts), `doc_id`, `text`, `tokens`, `focus` (the token
drawn: a random token of the window), `token_activations` (all 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vista_tui.mapdata.atomic import atomic_write
from vista_tui.mapdata.errors import MapCorruptError

if TYPE_CHECKING:
    import pyarrow as pa

NEGATIVES_FILE = "negatives.parquet"
"""Written by `pipeline.build` with the map: windows where the latent is 0 on every token."""


def negatives_schema() -> pa.Schema:
    """The file's columns (pyarrow loaded on first use)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("context_id", pa.string()),
            ("doc_id", pa.string()),
            ("text", pa.string()),
            ("tokens", pa.list_(pa.string())),
            ("focus", pa.int32()),
            ("token_activations", pa.list_(pa.float32())),
        ]
    )


def negatives_table(
    *,
    context_ids: list[str],
    doc_ids: list[str],
    tokens: list[list[str]],
    focus: list[int],
) -> pa.Table:
    """The negatives in the file's schema; `text` is the tokens joined, every activation 0."""
    import pyarrow as pa

    return pa.table(
        {
            "context_id": pa.array(context_ids, pa.string()),
            "doc_id": pa.array(doc_ids, pa.string()),
            "text": pa.array(["".join(window) for window in tokens], pa.string()),
            "tokens": pa.array([list(window) for window in tokens], pa.list_(pa.string())),
            "focus": pa.array(focus, pa.int32()),
            "token_activations": pa.array([[0.0] * len(window) for window in tokens], pa.list_(pa.float32())),
        },
        schema=negatives_schema(),
    )


def read_negatives(map_dir: Path) -> pa.Table | None:
    """The map's non-activating windows; None when it has none; MapCorruptError (one line) when unreadable."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(map_dir) / NEGATIVES_FILE
    if not path.is_file():
        return None
    try:
        table = pq.read_table(path)
        return table.select(negatives_schema().names).cast(negatives_schema())
    except (pa.ArrowException, OSError, KeyError, ValueError) as error:
        line = " ".join(str(error).split()) or type(error).__name__
        raise MapCorruptError(f"{path} is unreadable ({line}): rebuild the map, or delete it") from None


def write_negatives(map_dir: Path, table: pa.Table) -> Path:
    """Write `<map>/negatives.parquet` atomically; returns its path."""
    import pyarrow.parquet as pq

    path = Path(map_dir) / NEGATIVES_FILE
    cast = table.select(negatives_schema().names).cast(negatives_schema())
    atomic_write(path, lambda handle: pq.write_table(cast, handle, compression="zstd"))
    return path
