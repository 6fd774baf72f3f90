"""The latent browser's view model: an atlas's latents as numpy columns, sorted, filtered and searched.

`latents.parquet` is read once with pyarrow. The figures become numpy arrays; sorting is one
`np.lexsort` over them, and filtering and search are numpy's vectorised substring search
(`np.strings.find`) over one lowercase haystack per latent, a StringDType array built at load.
The haystacks and the agreement scores are built on first use, or by `prepare_text` in a worker
after the first frame: the first screen needs only the figures. Otherwise no Python object is
made per latent except the cells of the rows on screen (`cells`), which are sanitised and cached.

Triage comes from the latents' maps: a latent counts as triaged when its map's root has a status
other than the first configured one. `read_root_statuses` reads them, one annotations file at a
time, for a worker thread; the browser fills the column as they arrive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vista_tui.core.annotations import DB_NAME, AnnotationStore
from vista_tui.core.errors import AnnotationError
from vista_tui.core.sanitize import sanitize
from vista_tui.core.titles import quote_token
from vista_tui.mapdata import Atlas, AtlasManifest, MapError, Store, map_root_id, read_atlas

if TYPE_CHECKING:
    import pyarrow as pa

NOT_BUILT = -3
"""Triage rank of a latent without a map."""
UNREAD = -2
"""Triage rank of a latent whose map's annotations are not read yet."""
UNREADABLE = -1
"""Triage rank of a latent whose annotations could not be read."""
UNREVIEWED = 0
"""Triage rank of a latent whose root has the first status (or no annotation at all)."""

SORTS: tuple[tuple[str, str], ...] = (
    ("atlas", "atlas order"),
    ("latent", "latent"),
    ("density", "density, densest first"),
    ("max_activation", "max activation, highest first"),
    ("fidelity", "fidelity gain, highest first"),
    ("triage", "triage status, triaged first"),
    ("agreement", "label agreement, most agreeing first"),
)
"""(key, what the browser says) of each order, in the order `o` cycles through them; "atlas" (the order the
atlas was asked for, latents.parquet's `order`) only for an atlas that has one (`AtlasView.sorts`)."""

TOKEN_CELL_CHARS = 12
"""A top token in the table is cut to this many characters."""
_CELL_CACHE = 4096
_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "with",
        "words",
        "word",
        "token",
        "tokens",
        "about",
        "related",
        "relating",
    ]
)


def label_agreement(label: str, explanation: str) -> float:
    """How much the LLM label and the published explanation share: Jaccard of their content words, NaN
    without both.

    A cheap agreement of the two readings of a latent, computed for every latent at load: the
    maps' own agreement scores (sentence-encoder cosines) live in their trees, one file per map.
    """
    words_label = {w for w in _WORD.findall(label.lower()) if w not in _STOP_WORDS}
    words_explanation = {w for w in _WORD.findall(explanation.lower()) if w not in _STOP_WORDS}
    if not words_label or not words_explanation:
        return math.nan
    return len(words_label & words_explanation) / len(words_label | words_explanation)


def _numpy(column: pa.ChunkedArray | pa.Array, dtype: type | np.dtype, fill: float | bool) -> np.ndarray:
    """A numeric or boolean column as a numpy array of `dtype`, nulls as `fill`, straight from Arrow's buffers.

    Not pyarrow's `to_numpy`: it imports pandas whenever pandas is installed (~300 ms at start-up).
    """
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_boolean(array.type):
        bits = np.frombuffer(array.buffers()[1], np.uint8)
        values = np.unpackbits(bits, bitorder="little")[array.offset : array.offset + len(array)].astype(dtype)
    else:
        item = np.dtype(_ARROW_NUMPY[str(array.type)])
        values = np.frombuffer(array.buffers()[1], item, count=len(array), offset=array.offset * item.itemsize)
        values = values.astype(dtype)
    if array.null_count:
        valid = np.unpackbits(np.frombuffer(array.buffers()[0], np.uint8), bitorder="little")
        values[~valid[array.offset : array.offset + len(array)].astype(bool)] = fill
    return values


_ARROW_NUMPY = {
    "int32": np.int32,
    "int64": np.int64,
    "float": np.float32,
    "double": np.float64,
}
"""numpy types of the Arrow types of latents.parquet's figures."""


@dataclass(frozen=True)
class LatentCells:
    """What one row of the browser shows, every string sanitised."""

    latent: str
    density: str
    max_activation: str
    contexts: str
    top_tokens: str
    label: str
    label_is_explanation: bool
    """The label column shows the published explanation (the latent has no LLM label)."""
    fidelity: str


class AtlasView:
    """An atlas's latents: figures as numpy arrays, the order and the filter as index arrays."""

    def __init__(self, atlas: Atlas) -> None:
        self.atlas = atlas
        table = atlas.table
        self.n = table.num_rows
        self.latent = _numpy(table.column("latent"), np.int64, 0)
        self.density = _numpy(table.column("density"), np.float64, math.nan)
        self.max_activation = _numpy(table.column("max_activation"), np.float32, math.nan)
        self.n_contexts = _numpy(table.column("n_contexts"), np.int64, 0)
        self.fidelity_gain = _numpy(table.column("fidelity_gain"), np.float32, math.nan)
        self.built = _numpy(table.column("built"), np.bool_, False)
        self.atlas_rank = _numpy(table.column("order"), np.int64, -1)
        """Per latent: its position in the atlas's order, -1 when none."""
        self.triage_rank = np.where(self.built, UNREAD, NOT_BUILT).astype(np.int16)
        """Per latent: NOT_BUILT, UNREAD, UNREADABLE, UNREVIEWED, or 1 + the status's index past the first."""
        self.triage_status: dict[int, str] = {}
        """Row → its root's status, for rows whose root has one other than the first."""
        self._top_tokens = table.column("top_tokens").combine_chunks()
        self._llm_label = table.column("llm_label").combine_chunks()
        self._explanation = table.column("explanation").combine_chunks()
        self._map_id = table.column("map_id").combine_chunks()
        self._error = table.column("error").combine_chunks()
        self._cells: dict[int, LatentCells] = {}
        self.has_atlas_order = bool(np.any(self.atlas_rank >= 0))
        self.sort_key = "atlas" if self.has_atlas_order else "latent"
        self.filter_text = ""
        self.order = self._sorted() if self.has_atlas_order else np.arange(self.n, dtype=np.int64)
        """Rows shown, in display order (sorted, then filtered)."""

    # -- text: built on first use (`prepare_text` builds it in a worker) ------------------------------

    @cached_property
    def _texts(self) -> tuple[list[str], list[str], list[str]]:
        """Top tokens (joined), LLM labels and explanations as Python strings.

        Lists, not Arrow compute: a Python-to-Arrow conversion makes pyarrow import pandas
        whenever pandas is installed (~300 ms).
        """
        tokens = [" ".join(row) if row else "" for row in self._top_tokens.to_pylist()]
        labels = [label or "" for label in self._llm_label.to_pylist()]
        explanations = [text or "" for text in self._explanation.to_pylist()]
        return tokens, labels, explanations

    @cached_property
    def agreement(self) -> np.ndarray:
        """Per latent: `label_agreement` of its LLM label and its published explanation (NaN without both)."""
        _, labels, explanations = self._texts
        return np.array(
            [label_agreement(a, b) if a and b else math.nan for a, b in zip(labels, explanations, strict=True)],
            dtype=np.float32,
        )

    @cached_property
    def _search_text(self) -> np.ndarray:
        """Per latent: its top tokens, label and explanation, lowercase (what `/` searches)."""
        tokens, labels, explanations = self._texts
        searchable = [f"{t}\x1f{a}\x1f{b}".lower() for t, a, b in zip(tokens, labels, explanations, strict=True)]
        return np.array(searchable, dtype=np.dtypes.StringDType())

    @cached_property
    def _filter_text(self) -> np.ndarray:
        """Per latent: `l<latent>` and the searchable text (what typing filters on)."""
        return np.array(
            [f"l{latent}\x1f{text}" for latent, text in zip(self.latent.tolist(), self._search_text, strict=True)],
            dtype=np.dtypes.StringDType(),
        )

    def prepare_text(self) -> None:
        """Build what filtering, search and the agreement order need (a worker calls this after the first frame)."""
        _ = self.agreement, self._filter_text

    @classmethod
    def open(cls, atlas_dir: Path) -> AtlasView:
        """Read an atlas (one-line MapError when it cannot be read) into a view."""
        return cls(read_atlas(atlas_dir))

    @property
    def manifest(self) -> AtlasManifest:
        """The atlas's manifest."""
        return self.atlas.manifest

    @property
    def path(self) -> Path:
        """The atlas directory."""
        return self.atlas.path

    # -- a row -------------------------------------------------------------------------------

    def map_id(self, row: int) -> str:
        """The latent's map id ("" until built)."""
        return str(self._map_id[row].as_py() or "")

    def map_dir(self, row: int) -> Path | None:
        """The latent's map directory, None when it has none."""
        map_id = self.map_id(row)
        return Store(self.path).map_path(map_id) if self.built[row] and map_id else None

    def why_no_map(self, row: int) -> str | None:
        """One sanitised line saying why the latent has no map to open, None when it has one."""
        map_dir = self.map_dir(row)
        if map_dir is not None and map_dir.is_dir():
            return None
        error = str(self._error[row].as_py() or "")
        latent = int(self.latent[row])
        if error:
            return f"latent {latent} has no map: {sanitize(error, 200)}"
        if map_dir is not None:
            return f"latent {latent}'s map {sanitize(map_dir.name)} is missing from {sanitize(str(map_dir.parent))}"
        return f"latent {latent} has no map: not built yet"

    def cells(self, row: int) -> LatentCells:
        """The row's cells, sanitised (cached: only rows on screen are ever made)."""
        cells = self._cells.get(row)
        if cells is None:
            if len(self._cells) >= _CELL_CACHE:
                self._cells.clear()
            cells = self._cells[row] = self._make_cells(row)
        return cells

    def _make_cells(self, row: int) -> LatentCells:
        tokens = self._top_tokens[row].as_py() or []
        label = str(self._llm_label[row].as_py() or "")
        from_explanation = not label
        if from_explanation:
            label = str(self._explanation[row].as_py() or "")
        density = float(self.density[row])
        max_activation = float(self.max_activation[row])
        gain = float(self.fidelity_gain[row])
        return LatentCells(
            latent=str(int(self.latent[row])),
            density="" if math.isnan(density) else f"{density:.1e}",
            max_activation="" if math.isnan(max_activation) else f"{max_activation:.3g}",
            contexts=f"{int(self.n_contexts[row]):,}",
            top_tokens=" ".join(quote_token(token, TOKEN_CELL_CHARS) for token in tokens[:4]),
            label=sanitize(label[:400], 200),
            label_is_explanation=from_explanation and bool(label),
            fidelity="" if math.isnan(gain) else f"{gain:.2f}",
        )

    def triage_text(self, row: int) -> str:
        """The triage cell: the root's status, "—" unreviewed, "…" not read yet, "?" unreadable, "" no map."""
        rank = int(self.triage_rank[row])
        if rank > UNREVIEWED:
            return sanitize(self.triage_status.get(row, "?"), 40)
        return {NOT_BUILT: "", UNREAD: "…", UNREADABLE: "?", UNREVIEWED: "—"}[rank]

    # -- order and filter --------------------------------------------------------------------

    @property
    def sorts(self) -> list[str]:
        """The keys of SORTS this atlas can be ordered by, in `o`'s order ("atlas" only when it has an order)."""
        return [key for key, _ in SORTS if key != "atlas" or self.has_atlas_order]

    def set_sort(self, key: str) -> None:
        """Order the rows by `key` (one of `sorts`), ties by latent; NaN and unknown last."""
        if key not in self.sorts:
            raise ValueError(f"unknown sort {key!r}; one of {', '.join(self.sorts)}")
        self.sort_key = key
        self._apply()

    def set_filter(self, text: str) -> None:
        """Show only latents whose number (`l702`), top tokens, label or explanation hold every word of `text`."""
        self.filter_text = text
        self._apply()

    def _sorted(self) -> np.ndarray:
        key = self.sort_key
        if key == "latent":
            return np.argsort(self.latent, kind="stable")
        if key == "atlas":  # the atlas's order, then the latents it does not place, by latent
            unplaced = self.atlas_rank < 0
            return np.lexsort((self.latent, np.where(unplaced, 0, self.atlas_rank), unplaced))
        values: np.ndarray
        if key == "density":
            values = self.density
        elif key == "max_activation":
            values = self.max_activation.astype(np.float64)
        elif key == "fidelity":
            values = self.fidelity_gain.astype(np.float64)
        elif key == "agreement":
            values = self.agreement.astype(np.float64)
        else:
            # Triaged first (by status, in the configured order), then unreviewed, unreadable, unread, unbuilt.
            rank = self.triage_rank.astype(np.float64)
            values = np.where(rank > UNREVIEWED, 1000.0 - rank, rank)
        missing = np.isnan(values)
        return np.lexsort((self.latent, -np.where(missing, 0.0, values), missing))

    def _apply(self) -> None:
        order = self._sorted()
        words = self.filter_text.lower().split()
        if words:
            order = order[self._matching(self._filter_text, words)[order]]
        self.order = order.astype(np.int64)

    @staticmethod
    def _matching(haystack: np.ndarray, words: Sequence[str]) -> np.ndarray:
        """Per latent: whether its haystack holds every one of `words` (numpy's vectorised string search)."""
        mask = np.ones(len(haystack), dtype=np.bool_)
        for word in words:
            mask &= np.strings.find(haystack, word) >= 0
        return mask

    def search(self, query: str) -> np.ndarray:
        """Positions in the display order (`order`) of latents whose top tokens, label or explanation hold
        every word of `query` (any case)."""
        words = query.lower().split()
        if not words:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self._matching(self._search_text, words)[self.order])

    def position_of(self, row: int) -> int | None:
        """Where row `row` is in the display order, None when filtered out."""
        found = np.flatnonzero(self.order == row)
        return int(found[0]) if len(found) else None

    # -- triage ------------------------------------------------------------------------------

    def set_triage(self, statuses: Sequence[str], results: dict[int, str | None]) -> None:
        """Record root statuses read by `read_root_statuses`: row → status (None: unreadable)."""
        for row, status in results.items():
            if status is None:
                self.triage_rank[row] = UNREADABLE
            elif status == statuses[0]:
                self.triage_rank[row] = UNREVIEWED
                self.triage_status.pop(row, None)
            else:
                # An unknown status (from another config) ranks after the known ones.
                known = list(statuses).index(status) if status in statuses else len(statuses)
                self.triage_rank[row] = known
                self.triage_status[row] = status

    def built_rows(self) -> list[tuple[int, Path]]:
        """(row, map directory) of every latent with a map, in row order."""
        rows = np.flatnonzero(self.built)
        out = []
        for row in rows.tolist():
            map_dir = self.map_dir(row)
            if map_dir is not None:
                out.append((row, map_dir))
        return out

    def triaged_count(self) -> int:
        """Latents whose root is triaged."""
        return int(np.count_nonzero(self.triage_rank > UNREVIEWED))


def root_status(map_dir: Path, statuses: Sequence[str], author: str) -> str:
    """The status of a map's root: the first status when nobody annotated it; raises AnnotationError or
    MapError when the annotations or the tree cannot be read."""
    if not (Path(map_dir) / DB_NAME).exists():
        return statuses[0]
    root_id = map_root_id(map_dir)
    with AnnotationStore.open(map_dir, author, tuple(statuses), readonly=True) as store:
        annotation = store.get(root_id)
    return annotation.status if annotation is not None else statuses[0]


def read_root_statuses(
    maps: Sequence[tuple[int, Path]],
    statuses: Sequence[str],
    author: str,
    cancelled: Callable[[], bool] = lambda: False,
    batch: int = 256,
) -> Iterator[dict[int, str | None]]:
    """Each map's root status (None: unreadable), in batches of `batch` maps, for a worker thread.

    A map without annotations costs one `stat`; only annotated ones are opened (read-only).
    Stops early when `cancelled()` says so.
    """
    results: dict[int, str | None] = {}
    for row, map_dir in maps:
        if cancelled():
            return
        try:
            results[row] = root_status(map_dir, statuses, author)
        except (AnnotationError, MapError, OSError):
            results[row] = None
        if len(results) >= batch:
            yield results
            results = {}
    if results:
        yield results
