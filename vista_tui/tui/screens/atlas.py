"""The latent browser: every latent of an atlas in one table, sorted, filtered and searched.

`o` cycles the order (latent, density, max activation, fidelity, triage status, label
agreement), typing filters (the filter box takes any key the screen does not bind, or `f`), `/`
searches the top tokens, labels and explanations (n/N walk the hits), and Enter opens the
latent's map over the browser; Backspace or Esc in the map comes back to the same row.

The triage column is read from the latents' maps in a worker (`read_root_statuses`), which
posts its results in batches; the table fills as they arrive and never waits for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, get_current_worker

from vista_tui.core.atlas_view import SORTS, AtlasView, read_root_statuses
from vista_tui.core.sanitize import sanitize
from vista_tui.core.triage_config import TriageConfig
from vista_tui.tui.messages import report_worker_failure
from vista_tui.tui.palette import AtlasCommands
from vista_tui.tui.screens.loading import atlas_header
from vista_tui.tui.widgets.footer import ActionFooter
from vista_tui.tui.widgets.latent_table import LatentTable, heading_text

SORT_NAMES = dict(SORTS)


class AtlasScreen(Screen[None]):
    """An atlas's latents; Enter opens one's map."""

    COMMANDS: ClassVar = {AtlasCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "o",
            "cycle_sort",
            "Sort",
            tooltip="Next order: latent, density, max activation, fidelity, triage status, label agreement,"
            " and the atlas's own order when it has one",
        ),
        Binding("O", "cycle_sort(-1)", "Previous sort", show=False, tooltip="The order before this one"),
        Binding("f", "filter", "Filter", tooltip="Filter by latent (l702), top tokens, label or explanation"),
        Binding("slash", "search", "Search", tooltip="Search top tokens, labels and explanations"),
        Binding("n", "next_hit", "Next", show=False, tooltip="Next search hit"),
        Binding("N", "previous_hit", "Previous", show=False, tooltip="Previous search hit"),
        Binding("down", "focus_table", "", show=False),
        Binding(
            "escape",
            "clear",
            "Clear",
            show=False,
            tooltip="Close the search bar, else clear the hits, else the filter",
        ),
    ]

    class TriageRead(Message):
        """Root statuses of some latents' maps (row → status, None: unreadable), from the triage worker."""

        def __init__(self, results: dict[int, str | None]) -> None:
            self.results = results
            super().__init__()

    def __init__(self, view: AtlasView, triage_config: TriageConfig | None = None) -> None:
        super().__init__()
        self.view = view
        self.triage_config = triage_config or TriageConfig()
        """Statuses (the first is "unreviewed") that say whether a latent's root is triaged."""
        self.search_query = ""
        self.hit_positions: np.ndarray = np.zeros(0, dtype=np.int64)
        """Display positions of the search hits, ascending (recomputed when the order changes)."""
        self._opened_row: int | None = None
        """The latent whose map was opened from here (its triage is read again on the way back)."""

    def compose(self) -> ComposeResult:
        yield Static(atlas_header(self.view.manifest, int(np.count_nonzero(self.view.built))), id="atlas-header")
        yield Input(
            placeholder="type to filter: l702, a token, words of a label…",
            id="atlas-filter",
            compact=True,
            select_on_focus=False,  # the key that focused it is already in it
        )
        yield Static(id="atlas-columns")
        yield LatentTable(self.view, id="latents")
        yield Static(id="atlas-hint")
        yield Input(
            placeholder="search top tokens, labels, explanations — Enter to search, Esc to cancel",
            id="atlas-search",
            compact=True,
        )
        yield ActionFooter()

    @property
    def table(self) -> LatentTable:
        """The latents table."""
        return self.query_one("#latents", LatentTable)

    def on_mount(self) -> None:
        self.table.follow = self._show_hint
        self.table.rows_changed()
        self.table.focus()
        self._show_columns()
        self.read_triage()
        self.call_after_refresh(self._prepare_text)

    @work(thread=True, exit_on_error=False, group="atlas-text", description="prepare the latents' text")
    def _prepare_text(self) -> None:
        self.view.prepare_text()  # the filter's and search's haystacks, off the first frame

    def on_resize(self) -> None:
        self._show_columns()

    def on_screen_resume(self) -> None:
        # Back from a latent's map: its triage may have changed there.
        row, self._opened_row = self._opened_row, None
        if row is not None:
            self.read_triage([row])

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)

    # -- triage ----------------------------------------------------------------------------------

    def read_triage(self, rows: list[int] | None = None) -> None:
        """Read the root status of these latents' maps (all built ones by default) in a worker."""
        maps = self.view.built_rows()
        if rows is not None:
            wanted = set(rows)
            maps = [(row, path) for row, path in maps if row in wanted]
        if maps:
            # One worker per batch of rows, none exclusive: the first read of 16k maps must not be
            # cancelled by the read of the one latent whose map was just closed.
            self._read_triage(maps)

    @work(thread=True, exit_on_error=False, group="atlas-triage", description="read triage statuses")
    def _read_triage(self, maps: list[tuple[int, Path]]) -> None:
        worker = get_current_worker()
        config = self.triage_config
        for batch in read_root_statuses(
            maps,
            config.statuses,
            config.author,
            cancelled=lambda: worker.is_cancelled,
        ):
            self.post_message(self.TriageRead(batch))

    @on(TriageRead)
    def _triage_read(self, event: TriageRead) -> None:
        self.view.set_triage(self.triage_config.statuses, event.results)
        if self.view.sort_key == "triage":
            self._reorder()
        else:
            self.table.cells_changed()
        self._show_hint()

    # -- order, filter -----------------------------------------------------------------------------

    def _show_columns(self) -> None:
        width = self.table.scrollable_content_region.width or self.app.size.width
        self.query_one("#atlas-columns", Static).update(heading_text(width, self.view.sort_key), layout=False)

    def _show_hint(self) -> None:
        """Position, filter, order and triage in the line under the table."""
        table = self.table
        shown = len(self.view.order)
        parts = []
        if shown:
            parts.append(f"{table.cursor + 1:,} of {shown:,}")
        else:
            parts.append("no latent matches the filter — Esc clears it")
        if shown != self.view.n:
            parts.append(f"filtered from {self.view.n:,}")
        parts.append(f"sorted by {SORT_NAMES[self.view.sort_key]}")
        if len(self.hit_positions):
            parts.append(f"{len(self.hit_positions):,} hits for {sanitize(self.search_query, 40)!r}")
        parts.append(f"{self.view.triaged_count():,} triaged")
        # No layout: the line's size never changes, and a layout per key would cost a frame of its own.
        self.query_one("#atlas-hint", Static).update(" · ".join(parts), layout=False)

    def _reorder(self, apply: str | None = None, value: str = "") -> None:
        """Re-sort or re-filter, keeping the cursor on the same latent when it is still shown."""
        row = self.table.highlighted_row
        if apply == "sort":
            self.view.set_sort(value)
        elif apply == "filter":
            self.view.set_filter(value)
        else:
            self.view.set_sort(self.view.sort_key)
        self._recount_hits()
        self.table.rows_changed(keep_row=row)
        self._show_columns()
        self._show_hint()

    def sorts(self) -> list[str]:
        """The orders this atlas offers (`AtlasView.sorts`)."""
        return self.view.sorts

    def sort_by(self, key: str) -> None:
        """Order the table by `key` (one of `sorts`)."""
        self._reorder("sort", key)
        self.notify(f"sorted by {SORT_NAMES[key]}", timeout=2)

    def action_cycle_sort(self, step: int = 1) -> None:
        """`o` (`O`): the next (previous) order."""
        keys = self.view.sorts
        index = keys.index(self.view.sort_key)
        self.sort_by(keys[(index + step) % len(keys)])

    def action_filter(self) -> None:
        """`f`: type into the filter box."""
        self.query_one("#atlas-filter", Input).focus()

    @on(Input.Changed, "#atlas-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._reorder("filter", event.value)

    def action_focus_table(self) -> None:
        """Down in the filter box: back to the table, the filter kept."""
        self.table.focus()

    @on(Input.Submitted, "#atlas-filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def on_key(self, event: events.Key) -> None:
        """Typing on the table filters: a printable key that nothing binds goes to the filter box."""
        table = self.table
        if not table.has_focus or not event.is_printable or not event.character:
            return
        if event.key in self.app.active_bindings:
            return
        box = self.query_one("#atlas-filter", Input)
        box.focus()
        box.insert_text_at_cursor(event.character)
        event.stop()
        event.prevent_default()

    # -- search ------------------------------------------------------------------------------------

    def action_search(self) -> None:
        """`/`: open the search bar with the last query."""
        search = self.query_one("#atlas-search", Input)
        search.add_class("-visible")
        search.value = self.search_query
        search.focus()

    @on(Input.Submitted, "#atlas-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("-visible")
        self.table.focus()
        self.search(event.value.strip())

    def search(self, query: str) -> None:
        """Mark the latents whose top tokens, label or explanation hold every word of `query`; go to the first."""
        self.search_query = query
        view = self.view
        hits = view.search(query) if query else np.zeros(0, dtype=np.int64)
        self.table.hits = np.sort(view.order[hits]) if len(hits) else np.zeros(0, dtype=np.int64)
        self.hit_positions = hits
        self.table.cells_changed()
        self._show_hint()
        if not query:
            return
        if len(hits):
            self.notify(f"{len(hits):,} latents match {sanitize(query, 40)!r} — n/N to jump", timeout=3)
            self._jump_hit(+1, include_current=True)
        else:
            self.notify(f"no latent matches {sanitize(query, 40)!r}", severity="warning", timeout=3)

    def _recount_hits(self) -> None:
        """The hits' display positions in the current order."""
        hits = self.table.hits
        self.hit_positions = np.flatnonzero(np.isin(self.view.order, hits)) if len(hits) else hits

    def _jump_hit(self, step: int, include_current: bool = False) -> None:
        """The next (`step` 1) or previous (-1) hit in display order from the cursor, wrapping."""
        positions = self.hit_positions
        if not len(positions):
            if self.search_query:
                self.notify(f"no hits for {sanitize(self.search_query, 40)!r} here", timeout=2)
            return
        cursor = self.table.cursor
        if step > 0:
            later = positions[positions >= cursor] if include_current else positions[positions > cursor]
            target = int(later[0]) if len(later) else int(positions[0])
        else:
            earlier = positions[positions < cursor]
            target = int(earlier[-1]) if len(earlier) else int(positions[-1])
        self.table.move_to_position(target)

    def action_next_hit(self) -> None:
        """`n`: the next search hit."""
        self._jump_hit(+1)

    def action_previous_hit(self) -> None:
        """`N`: the previous search hit."""
        self._jump_hit(-1)

    def action_clear(self) -> None:
        """Esc: close the search bar, else clear the hits, else the filter."""
        search = self.query_one("#atlas-search", Input)
        box = self.query_one("#atlas-filter", Input)
        if search.has_class("-visible"):
            search.remove_class("-visible")
            self.table.focus()
        elif box.has_focus:
            box.value = ""
            self.table.focus()
        elif len(self.table.hits):
            self.search("")
        elif box.value:
            box.value = ""

    # -- the table ---------------------------------------------------------------------------------

    @on(LatentTable.Opened)
    def _opened(self, event: LatentTable.Opened) -> None:
        self.open_row(event.row)

    def open_row(self, row: int) -> None:
        """Open the latent's map over the browser, or say in one line why it has none."""
        why = self.view.why_no_map(row)
        if why is not None:
            self.notify(why, severity="warning", timeout=5)
            return
        map_dir = self.view.map_dir(row)
        if map_dir is not None:
            self._opened_row = row
            self.app.open_latent_map(map_dir)  # type: ignore[attr-defined]
