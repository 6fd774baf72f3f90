"""The map picker: every atlas and every map in the store, newest first, filtered by typing.

An atlas is listed first, marked as one with its number of latents; Enter opens it in the
latent browser.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.events import Key
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from vista_tui.core.annotations import DEFAULT_STATUSES, AnnotationError, count_reviewed
from vista_tui.core.sanitize import sanitize
from vista_tui.core.triage_config import load_config
from vista_tui.mapdata import AtlasEntry, MapEntry

COLUMNS = ("map", "latent", "model · SAE", "contexts", "triaged", "built")
WIDE = 100
"""From this many terminal columns on, the picker shows the model · SAE column."""


class PickerScreen(Screen[None]):
    """Choose a map or an atlas; typing filters by id, latent, model or SAE."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open map", priority=True),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("down", "cursor(1)", "Down", show=False, priority=True),
        Binding("up", "cursor(-1)", "Up", show=False, priority=True),
    ]

    def __init__(self, entries: list[MapEntry], store_path: Path, atlases: list[AtlasEntry] | None = None) -> None:
        super().__init__()
        self.entries: list[MapEntry | AtlasEntry] = [*(atlases or []), *entries]
        """Atlases first, then maps."""
        self.store_path = store_path
        self.shown: list[MapEntry | AtlasEntry] = []
        self.triaged: dict[str, str] = {}
        """Map id → what its triaged cell shows (see `triaged_counts`), read when the picker mounts."""

    def compose(self) -> ComposeResult:
        yield Static(id="picker-title")
        yield Input(placeholder="type to filter maps by id, latent, model or SAE", id="filter")
        yield DataTable(id="maps", cursor_type="row", zebra_stripes=True)
        yield Static(id="picker-hint")
        yield Footer()

    def on_mount(self) -> None:
        heading = "VISTA maps and atlases" if any(isinstance(e, AtlasEntry) for e in self.entries) else "VISTA maps"
        title = Text.assemble((heading, "bold"), f" in {sanitize(str(self.store_path))}")
        self.query_one("#picker-title", Static).update(title)
        self.triaged = triaged_counts([entry for entry in self.entries if isinstance(entry, MapEntry)])
        self._fill()
        self.query_one("#filter", Input).focus()

    def on_resize(self) -> None:
        self._fill(keep_cursor=True)

    def on_screen_resume(self) -> None:
        # The terminal may have been resized while another screen was on top.
        self._fill(keep_cursor=True)

    def _matches(self, entry: MapEntry | AtlasEntry, needle: str) -> bool:
        if not needle:
            return True
        if isinstance(entry, AtlasEntry):
            haystack = f"atlas {entry.atlas_id}"
            if entry.manifest is not None:
                haystack += f" {entry.manifest.model} {entry.manifest.sae} {entry.manifest.hook}"
            return all(part in haystack.lower() for part in needle.lower().split())
        haystack = entry.map_id
        if entry.manifest is not None:
            prov = entry.manifest.provenance
            haystack += f" {prov.latent} {prov.model} {prov.sae} {prov.hook}"
        return all(part in haystack.lower() for part in needle.lower().split())

    def _fill(self, keep_cursor: bool = False) -> None:
        """Rebuild the table for the filter and the terminal's width (columns are sized to fit it)."""
        table = self.query_one("#maps", DataTable)
        cursor = table.cursor_row if keep_cursor else 0
        needle = self.query_one("#filter", Input).value.strip()
        self.shown = [entry for entry in self.entries if self._matches(entry, needle)]
        wide = self.app.size.width >= WIDE
        labels = list(COLUMNS) if wide else [c for c in COLUMNS if c != "model · SAE"]
        rows = [
            _atlas_cells(entry, wide)
            if isinstance(entry, AtlasEntry)
            else _cells(entry, wide, self.triaged.get(entry.map_id, "—"))
            for entry in self.shown
        ]
        widths = [max([len(label), *(row[i].cell_len for row in rows)]) for i, label in enumerate(labels)]
        # The map id (and model · SAE when shown) get what the other columns leave, with an ellipsis.
        room = (
            self.app.size.width
            - table.styles.margin.width
            - table.styles.gutter.width
            - table.styles.scrollbar_size_vertical
            - 2 * table.cell_padding * len(labels)
            - sum(widths[1:])
        )
        if wide:
            room += widths[2]
            widths[2] = max(len(labels[2]), min(widths[2], max(room - widths[0], room // 2)))
            room -= widths[2]
        widths[0] = max(len(labels[0]), min(widths[0], room))
        table.clear(columns=True)
        for label, width in zip(labels, widths, strict=True):
            table.add_column(label, width=width)
        for row in rows:
            table.add_row(*row)
        if cursor and table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
        hint = self.query_one("#picker-hint", Static)
        if not self.entries:
            hint.update("no maps yet — run `vista demo` (offline demo) or `vista build --help`")
        elif not self.shown:
            hint.update("no map matches the filter — Esc clears it")
        else:
            hint.update(f"{len(self.shown)} of {len(self.entries)} {_what(self.entries)} · ↑↓ choose · Enter opens")

    @on(Input.Changed, "#filter")
    def _filter(self) -> None:
        self._fill()

    def action_cursor(self, step: int) -> None:
        table = self.query_one("#maps", DataTable)
        if table.row_count:
            table.move_cursor(row=max(0, min(table.row_count - 1, table.cursor_row + step)))

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""

    def action_open(self) -> None:
        table = self.query_one("#maps", DataTable)
        if not self.shown or table.cursor_row >= len(self.shown):
            return
        entry = self.shown[table.cursor_row]
        if entry.manifest is None:
            what = "atlas" if isinstance(entry, AtlasEntry) else "map"
            self.notify(sanitize(entry.error or f"this {what} cannot be read"), severity="error", timeout=6)
            return
        if isinstance(entry, AtlasEntry):
            self.app.open_atlas(entry.path)  # type: ignore[attr-defined]
        else:
            self.app.open_map(entry.path)  # type: ignore[attr-defined]

    @on(DataTable.RowSelected, "#maps")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def on_key(self, event: Key) -> None:
        # Typing anywhere filters: printable keys go to the filter box.
        filter_box = self.query_one("#filter", Input)
        if event.is_printable and not filter_box.has_focus and event.character:
            filter_box.focus()
            filter_box.insert_text_at_cursor(event.character)
            event.stop()


def triaged_counts(entries: list[MapEntry]) -> dict[str, str]:
    """Map id → its triaged cell: reviewed nodes as `vista triage-status` counts them (one query per map).

    "—" when none are (no annotations file, or nothing but unreviewed annotations in it), "?"
    when the file cannot be read (locked, damaged, not an annotations database).
    """
    try:
        unreviewed = load_config().statuses[0]
    except AnnotationError:  # the map screen reports a bad config; counting falls back to the defaults
        unreviewed = DEFAULT_STATUSES[0]
    out: dict[str, str] = {}
    for entry in entries:
        if entry.manifest is None:
            continue
        try:
            reviewed = count_reviewed(entry.path, unreviewed)
        except (AnnotationError, OSError):
            out[entry.map_id] = "?"
        else:
            out[entry.map_id] = f"{reviewed:,}" if reviewed else "—"
    return out


def _cells(entry: MapEntry, wide: bool, triaged: str = "—") -> list[Text]:
    """A map's row: map, latent, [model · SAE,] contexts, triaged, built; all map text sanitised."""
    if entry.manifest is None:
        # The reason follows the map id (its path is the map's own, already named by the id).
        error = (entry.error or "unreadable").removeprefix(str(entry.path)).lstrip("/ ")
        cells = [Text.assemble(sanitize(entry.map_id), "  ", (sanitize(error), "red"))] + [Text() for _ in range(5)]
    else:
        prov = entry.manifest.provenance
        cells = [
            Text(sanitize(entry.map_id)),
            Text(str(prov.latent), justify="right"),
            Text(sanitize(f"{_short(prov.model)} · {_short(prov.sae)}")),
            Text(f"{prov.n_contexts:,}", justify="right"),
            Text(triaged, justify="center" if triaged in ("—", "?") else "right"),
            Text(entry.manifest.created[:16].replace("T", " ")),
        ]
    if not wide:
        del cells[2]
    for cell in cells:  # a cell wider than its column ends in "…"
        cell.no_wrap, cell.overflow = True, "ellipsis"
    return cells


def _what(entries: list[MapEntry | AtlasEntry]) -> str:
    """`maps`, or `maps and atlases` when there are atlases."""
    return "maps and atlases" if any(isinstance(entry, AtlasEntry) for entry in entries) else "maps"


def _atlas_cells(entry: AtlasEntry, wide: bool) -> list[Text]:
    """An atlas's row: `atlas ID · N latents`, model · SAE, created; the map-only columns empty."""
    name = Text.assemble(("atlas ", "bold"), sanitize(entry.atlas_id))
    if entry.manifest is None:
        error = (entry.error or "unreadable").removeprefix(str(entry.path)).lstrip("/ ")
        cells = [Text.assemble(name, "  ", (sanitize(error), "red"))] + [Text() for _ in range(5)]
    else:
        manifest = entry.manifest
        name.append(f" · {len(manifest.latents):,} latents", "italic")
        cells = [
            name,
            Text("all" if len(manifest.latents) == manifest.d_sae else "", justify="right"),
            Text(sanitize(f"{_short(manifest.model)} · {_short(manifest.sae)}")),
            Text(""),
            Text(""),
            Text(manifest.created[:16].replace("T", " ")),
        ]
    if not wide:
        del cells[2]
    for cell in cells:
        cell.no_wrap, cell.overflow = True, "ellipsis"
    return cells


def _short(name: str) -> str:
    """The last path component of a model or SAE name."""
    return name.rstrip("/").rsplit("/", 1)[-1] if "/" in name else name
