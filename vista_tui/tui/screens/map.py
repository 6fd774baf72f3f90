"""The explorer: tree on the left, labels and contexts on the right, minimap and fidelity below the tree.

Below 80 columns the panels stack, and below 24 rows the minimap and fidelity give way, so that
the tree and the contexts keep their rows (app.tcss, on the breakpoint classes set on a resize).

The screen walks the map (tree, panels, search, zoom, disagreement and coverage order). Triage, renders
and relabelling are controllers it owns (vista_tui/tui/controllers); the screen keeps every
binding, so help, footer and palette read them in one place, and hands each of those actions
and each controller message to its controller.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widgets import Input, Static
from textual.worker import Worker, get_current_worker

from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize
from vista_tui.core.score_figures import SCORER_ABBREVIATIONS, ScoresReading, no_coverage_hint, worst_covered_order
from vista_tui.core.triage import TriageSession, next_in_tree_order
from vista_tui.tui.controllers.children import ChildrenController
from vista_tui.tui.controllers.relabel import RelabelController
from vista_tui.tui.controllers.renders import RenderController
from vista_tui.tui.controllers.triage import TriageController
from vista_tui.tui.messages import report_worker_failure
from vista_tui.tui.palette import NodeCommands
from vista_tui.tui.screens.loading import map_header
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
from vista_tui.tui.widgets.contexts import ContextList
from vista_tui.tui.widgets.fidelity import FidelityPanel
from vista_tui.tui.widgets.footer import ActionFooter
from vista_tui.tui.widgets.labels import LabelsPanel
from vista_tui.tui.widgets.minimap import Minimap

if TYPE_CHECKING:
    from vista_tui.core.cross_sae import MatchesReading, NodeMatch
    from vista_tui.core.render_protocol import RenderEvent

SEARCH_PLACEHOLDER = "search labels, keywords, contexts — Enter to search, Esc to cancel"


class MapScreen(Screen[None]):
    """One map: walk its cluster tree, read each node's labels and contexts."""

    COMMANDS: ClassVar = {NodeCommands}

    # Textual sets one class of each list on the screen on a resize, never on a key (see app.tcss).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-narrow"),
        (80, "-standard-width"),
        (110, "-wide"),
    ]
    """Below 80 columns the panels stack; below 110 the footer drops keys that help and palette list."""
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [
        (0, "-short"),
        (24, "-standard-height"),
        (40, "-tall"),
    ]
    """Below 24 rows no minimap or fidelity curve; from 40 rows a bigger minimap."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", tooltip="Search labels, keywords and context text"),
        Binding("n", "next_hit", "Next", show=False, tooltip="Next search hit; without a search, next unreviewed node"),
        Binding(
            "N",
            "previous_hit",
            "Previous",
            show=False,
            tooltip="Previous search hit; without a search, previous unreviewed node",
        ),
        Binding("z", "zoom", "Zoom", tooltip="Show only the selected subtree"),
        Binding("Z", "unzoom", "Unzoom", show=False),
        Binding(
            "escape",
            "clear",
            "Clear",
            show=False,
            tooltip="Close the search bar, else clear hits, else the filter, else leave the zoom, else back to the atlas",
        ),
        Binding(
            "s",
            "stats",
            "Stats",
            show=False,
            tooltip="Density, histograms, positions, focus tokens, logits, quantile examples",
        ),
        Binding("r", "render", "Render", tooltip="Render the selected node (a sketch when no diffusion model is set)"),
        Binding("R", "render_map", "Render map", show=False, tooltip="Render the whole map as a panorama"),
        Binding("v", "view_render", "View", tooltip="Show the selected node's render inline"),
        Binding(
            "o",
            "open_render",
            "Open outside",
            show=False,
            tooltip="Open the render in $VISTA_VIEWER, else copy its path",
        ),
        Binding(
            "x",
            "cancel_render",
            "Cancel render",
            show=False,
            tooltip="Cancel the selected node's queued or running render",
        ),
        Binding(
            "1",
            "set_status(1)",
            "Status",
            show=False,
            tooltip="1…9 set the node's triage status, in the configured order (1 unreviewed, 2 interpretable, …)",
        ),
        *(Binding(str(i), f"set_status({i})", "", show=False) for i in range(2, 10)),
        Binding("t", "tag", "Tag", show=False, tooltip="Add a tag to the node (-tag removes it), with completion"),
        Binding("a", "note", "Note", show=False, tooltip="Edit the node's note (ctrl+s saves)"),
        Binding("A", "note_in_editor", "Note in $EDITOR", show=False, tooltip="Edit the node's note in $EDITOR"),
        Binding("u", "undo", "Undo", show=False, tooltip="Undo your last triage change"),
        Binding(
            "f", "filter", "Filter", show=False, tooltip="Show only nodes with a status or tag (status:junk, tag:verb)"
        ),
        Binding(
            "d",
            "disagreement_order",
            "Disagreement order",
            show=False,
            tooltip="List each cluster's children least-agreeing readings first (press again for size order)",
        ),
        Binding(
            "w",
            "worst_covered",
            "Worst covered",
            show=False,
            tooltip="List the first-level clusters worst covered by the published explanation first (again: size order)",
        ),
        Binding(
            "c",
            "coverage",
            "Coverage",
            show=False,
            tooltip="The published explanation's score on each first-level cluster (vista score)",
        ),
        Binding("L", "relabel", "Relabel", show=False, tooltip="Relabel the selected node with the LLM labeller"),
        Binding(
            "M",
            "matches",
            "Matches",
            show=False,
            tooltip="The latent's matches in other SAEs (vista match); Enter opens a map",
        ),
        Binding(
            "C",
            "children",
            "Children",
            show=False,
            tooltip="Colour the map and contexts by child latent (--also-sae)",
        ),
        Binding(
            "vertical_line",
            "split",
            "Side by side",
            show=False,
            tooltip="This map beside its dominant child's map (--also-sae), else its best mapped match's",
        ),
        Binding(
            "backspace",
            "app.back_to_atlas",
            "Back",
            show=False,
            tooltip="Back to the atlas's latent browser, on the same latent (a map opened from an atlas)",
        ),
        Binding("tab", "app.focus_next", "Switch pane", tooltip="Move between the tree and the contexts"),
        Binding("shift+tab", "app.focus_previous", "Switch pane back", show=False),
    ]

    selected: Reactive[str | None] = reactive(None, init=False, repaint=False)
    """The node whose labels and contexts are shown."""

    class ScoresRead(Message):
        """A worker read the map's scores."""

        def __init__(self, reading: ScoresReading) -> None:
            """Carry what was read."""
            self.reading = reading
            super().__init__()

    class SearchDone(Message):
        """A search finished in a worker."""

        def __init__(self, query: str, node_ids: list[str]) -> None:
            self.query = query
            self.node_ids = node_ids
            super().__init__()

    class MatchesRead(Message):
        """A worker read the latent's matches in the store's match tables."""

        def __init__(self, reading: MatchesReading) -> None:
            self.reading = reading
            super().__init__()

    class SplitReady(Message):
        """A worker opened the second map and matched the two trees' nodes."""

        def __init__(
            self,
            other: MapModel,
            forward: dict[str, NodeMatch],
            backward: dict[str, NodeMatch],
            note: str | None = None,
        ) -> None:
            self.other = other
            self.forward = forward
            self.backward = backward
            self.note = note
            """Which map was chosen and why, when `|` chose it from the match tables."""
            super().__init__()

    class SplitRefused(Message):
        """There is no second map to open side by side; the reason, for a toast."""

        def __init__(self, reason: str) -> None:
            self.reason = reason
            super().__init__()

    def __init__(self, model: MapModel, triage: TriageSession | None = None) -> None:
        super().__init__()
        self.model = model
        self.triage = triage
        """The map's triage session; None when the screen was opened without triage."""
        self.hits: list[str] = []
        self.search_query = ""
        self.triage_controller = TriageController(self, triage)
        self.render_controller = RenderController(self)
        self.relabel_controller = RelabelController(self)
        self.children_controller = ChildrenController(self)

    @property
    def render_jobs(self) -> dict[str, str | None]:
        """Node id → id of its latest render job (see RenderController.jobs)."""
        return self.render_controller.jobs

    @property
    def render_state(self) -> dict[str, RenderEvent]:
        """Node id → the latest event of its render (see RenderController.state)."""
        return self.render_controller.state

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-row"):
            yield Static(id="map-header")
            yield Static(id="triage-meter")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ClusterTreeView(self.model, id="tree")
                yield Minimap(self.model, id="minimap")
                yield FidelityPanel(self.model.reader.fidelity, id="fidelity")
            with Vertical(id="right"):
                yield LabelsPanel(self.model, id="labels")
                yield Static(id="children-legend")
                yield Static(id="triage-note")
                yield ContextList(self.model, id="contexts")
        yield Static(id="render-status")
        yield ActionFooter()  # the search bar mounts above it on the first `/` (action_search)

    _resumed = False

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        """The first resume does not restyle every widget: they were styled as they mounted, a moment ago.

        Textual restyles a screen's whole tree on each resume (a theme may have changed while it
        was covered). On the first, just pushed, that was a quarter of the map's first frame (~20
        ms at 80x24). Screen's own handler runs after this one (Textual calls each class's) and
        reads the flag; a later resume, once a dialog closes, restyles as usual.
        """
        if not self._resumed:
            self._resumed = True
            event.refresh_styles = False

    def on_mount(self) -> None:
        self.query_one("#map-header", Static).update(map_header(self.model.manifest))
        tree = self.query_one("#tree", ClusterTreeView)
        tree.border_title = "clusters"
        tree.follow = self._follow_tree
        contexts = self.query_one("#contexts", ContextList)
        contexts.border_title = "contexts"
        contexts.follow = self._follow_contexts
        self.query_one("#minimap", Minimap).border_title = "map"
        self.query_one("#tree", ClusterTreeView).focus()
        self.triage_controller.refresh()
        self.show(self.model.root.node_id)
        reading = self.model.scores_if_read  # read by the map's worker (MapModel.open_for_explorer)
        if reading is None:
            self._read_scores()  # a map opened another way (side by side, a match)
        else:
            self._show_scores(reading)
        self.call_after_refresh(self._import_the_rest)
        self.call_after_refresh(self._warm_contexts)

    @work(thread=True, exit_on_error=False, group="imports", description="import the explorer's dialogs")
    def _import_the_rest(self) -> None:
        """After the first frame, off the UI thread: the screens and dialogs that keys open.

        The map's first frame does not show them (nor what `M`, `|` and `C` read with: cross_sae), so
        the map's worker no longer imports them
        before it (a fifth of the time from the map's header to the map drawn); imported here,
        their first key does not wait for them either.
        """
        import vista_tui.core.cross_sae
        import vista_tui.mapdata.renders
        import vista_tui.tui.dialogs
        import vista_tui.tui.screens.context_detail
        import vista_tui.tui.screens.coverage
        import vista_tui.tui.screens.image
        import vista_tui.tui.screens.matches
        import vista_tui.tui.screens.split
        import vista_tui.tui.screens.stats  # noqa: F401

    @work(thread=True, exit_on_error=False, group="warm", description="read the map's contexts")
    def _warm_contexts(self) -> None:
        """After the first frame: the row groups of its contexts, which the opening file gave it (`ContextStore.warm`)."""
        self.model.contexts.warm()

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)  # search, renders, relabel: the app says what failed

    # -- selection ---------------------------------------------------------------------------

    def show(self, node_id: str) -> None:
        """Point every panel at `node_id`."""
        self.selected = node_id
        node = self.model.nodes[node_id]
        self.query_one("#labels", LabelsPanel).show_node(node_id)
        contexts = self.query_one("#contexts", ContextList)
        contexts.show_node(node_id)
        contexts.border_title = f"contexts · {node.size:,} · highest activation first"
        self.query_one("#minimap", Minimap).show_node(node_id)
        self.triage_controller.show_annotation()
        self.children_controller.show_node(node_id)

    def _follow_tree(self, node_id: str) -> None:
        if node_id != self.selected:
            self.show(node_id)

    @on(ClusterTreeView.NodeSelected)
    def _node_selected(self, event: ClusterTreeView.NodeSelected) -> None:
        self._follow_tree(event.node_id)

    @on(ClusterTreeView.AtTop)
    def _tree_at_top(self) -> None:
        self.app.action_back_to_atlas()  # type: ignore[attr-defined]  # only a map opened from an atlas goes back

    @on(ClusterTreeView.LeafOpened)
    def _leaf_opened(self, event: ClusterTreeView.LeafOpened) -> None:
        self.query_one("#contexts", ContextList).focus()

    def _follow_contexts(self, row: int) -> None:
        self.query_one("#minimap", Minimap).mark_row(row)

    @on(ContextList.Opened)
    def _context_opened(self, event: ContextList.Opened) -> None:
        from vista_tui.tui.screens.context_detail import ContextScreen  # see _import_the_rest

        self.app.push_screen(ContextScreen(self.model, event.row))

    def show_image(self, path: Path, sidecar: dict[str, Any]) -> None:
        """A render over the map, drawn with the terminal's best image protocol."""
        from vista_tui.tui.screens.image import ImageScreen  # see _import_the_rest

        self.app.push_screen(ImageScreen(path, sidecar, self.app.image_widget()))

    def jump_to(self, node_id: str) -> None:
        """Select a node from anywhere (palette, search)."""
        tree = self.query_one("#tree", ClusterTreeView)
        tree.select_node(node_id)
        tree.focus()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scores", description="read the map's scores")
    def _read_scores(self) -> None:
        """Read `scores.json` once, off the UI thread (the labels panel shows them when they arrive)."""
        reading = self.model.map_scores()
        if not get_current_worker().is_cancelled:
            self.post_message(self.ScoresRead(reading))

    @on(ScoresRead)
    def _scores_read(self, event: ScoresRead) -> None:
        self._show_scores(event.reading)

    def _show_scores(self, reading: ScoresReading) -> None:
        """Show the scores in the labels panel; an unreadable file is one toast."""
        self.query_one("#labels", LabelsPanel).scores_changed()
        if reading.error:
            self.notify(reading.message, severity="warning", timeout=8)

    def action_coverage(self) -> None:
        """`c`: the published explanation's coverage of the first-level clusters; Enter there selects one."""
        from vista_tui.tui.screens.coverage import CoverageScreen  # see _import_the_rest

        self.app.push_screen(CoverageScreen(self.model), self._coverage_closed)

    def _coverage_closed(self, node_id: str | None) -> None:
        """Back from the coverage view: the scores may have been re-read; select the cluster picked there."""
        self.query_one("#labels", LabelsPanel).scores_changed()
        if node_id is not None:
            self.jump_to(node_id)

    def action_stats(self) -> None:
        """`s`: the latent's statistics and the selected node's, in a dialog."""
        from vista_tui.tui.screens.stats import StatsScreen  # see _import_the_rest

        self.app.push_screen(StatsScreen(self.model, self.selected or self.model.root.node_id))

    # -- search ------------------------------------------------------------------------------

    async def action_search(self) -> None:
        """`/`: open the search bar with the last query (mounted the first time: the map's first frame
        does not show it, and an Input's styles and widgets cost that frame ~5 ms)."""
        search = self._search_bar()
        if search is None:
            search = Input(placeholder=SEARCH_PLACEHOLDER, id="search")
            await self.mount(search, before=self.query_one(ActionFooter))
        search.add_class("-visible")
        search.value = self.search_query
        search.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        event.input.remove_class("-visible")
        self.query_one("#tree", ClusterTreeView).focus()
        if not query:
            self._apply_hits("", [])
            return
        self.notify(f"searching for {sanitize(query)!r}…", timeout=1)
        self._run_search(query)

    @work(thread=True, exclusive=True, group="search", exit_on_error=False, description="search the map")
    def _run_search(self, query: str) -> None:
        hits = [hit.node_id for hit in self.model.search(query)]
        if not get_current_worker().is_cancelled:
            self.post_message(self.SearchDone(query, hits))

    @on(SearchDone)
    def _search_done(self, event: SearchDone) -> None:
        self._apply_hits(event.query, event.node_ids)
        if event.node_ids:
            self.notify(f"{len(event.node_ids)} nodes match {sanitize(event.query)!r} — n/N to jump", timeout=3)
            self.action_next_hit()
        else:
            self.notify(f"no node matches {sanitize(event.query)!r}", severity="warning", timeout=3)

    def _apply_hits(self, query: str, node_ids: list[str]) -> None:
        self.search_query = query
        self.hits = node_ids
        tree = self.query_one("#tree", ClusterTreeView)
        tree.hits = set(node_ids)
        tree.rebuild()
        self.update_tree_title()

    def _jump_hit(self, step: int) -> None:
        """n/N: the next/previous search hit in tree order, wrapping; without a search, the next unreviewed node."""
        if not self.hits:
            self.triage_controller.jump_unreviewed(step)
            return
        target = next_in_tree_order(self.model.walk(), self.hits, self.selected, step)
        if target is not None:
            self.jump_to(target)

    def action_next_hit(self) -> None:
        """`n`: the next search hit, else the next unreviewed node."""
        self._jump_hit(+1)

    def action_previous_hit(self) -> None:
        """`N`: the previous search hit, else the previous unreviewed node."""
        self._jump_hit(-1)

    # -- zoom and order ------------------------------------------------------------------------

    def action_zoom(self) -> None:
        """`z`: show only the selected subtree."""
        tree = self.query_one("#tree", ClusterTreeView)
        if self.selected is not None:
            tree.zoom(self.selected)
            self.update_tree_title()

    def action_unzoom(self) -> None:
        """`Z`: show the whole tree again."""
        tree = self.query_one("#tree", ClusterTreeView)
        tree.zoom(None)
        self.update_tree_title()

    def update_tree_title(self) -> None:
        """The tree's border title: the zoom path, search hits, the triage filter, the order."""
        tree = self.query_one("#tree", ClusterTreeView)
        title = "clusters"
        if tree.view_root != self.model.root.node_id:
            path = [*self.model.ancestors(tree.view_root), tree.view_root]
            title = "zoom: " + " › ".join(self.model.title(n, 2) for n in path[1:])
        if self.hits:
            title += f" · {len(self.hits)} hits for {sanitize(self.search_query)!r}"
        if (triage_filter := self.triage_controller.filter) is not None:
            title += f" · filter {sanitize(str(triage_filter))}"
        if tree.disagreement_order:
            title += " · disagreement order"
        if tree.coverage_order is not None:
            title += " · worst covered first"
        tree.border_title = title

    def _search_bar(self) -> Input | None:
        """The search bar, once `/` has mounted it."""
        return next(iter(self.query("#search").results(Input)), None)

    def action_clear(self) -> None:
        """Esc: close the search bar, else clear hits, else the filter, else leave the zoom, else back to the atlas."""
        search = self._search_bar()
        if search is not None and search.has_class("-visible"):
            search.remove_class("-visible")
            self.query_one("#tree", ClusterTreeView).focus()
        elif self.hits:
            self._apply_hits("", [])
        elif self.triage_controller.filter is not None:
            self.triage_controller.apply_filter(None)
        elif self.query_one("#tree", ClusterTreeView).view_root != self.model.root.node_id:
            self.action_unzoom()
        else:
            self.app.action_back_to_atlas()  # type: ignore[attr-defined]  # a map opened from an atlas

    def action_disagreement_order(self) -> None:
        """`d`: toggle listing children by ascending agreement (the readings that disagree most first)."""
        tree = self.query_one("#tree", ClusterTreeView)
        tree.disagreement_order = not tree.disagreement_order
        tree.rebuild()
        self.update_tree_title()
        if tree.disagreement_order:
            self.notify("disagreement order: least-agreeing readings first — d again for size order", timeout=3)

    def action_worst_covered(self) -> None:
        """`w`: toggle listing the first-level clusters by the published explanation's coverage, ascending."""
        tree = self.query_one("#tree", ClusterTreeView)
        if tree.coverage_order is not None:
            tree.coverage_order = None
        else:
            reading = self.model.scores_if_read
            if reading is None:
                self.notify("the scores are still being read: try again in a moment", timeout=3)
                return
            order = worst_covered_order(reading)
            if not order:
                hint = reading.message or no_coverage_hint(self.model.map_id, bool(self.model.published))
                self.notify(hint, severity="warning", timeout=6)
                return
            tree.coverage_order = order
            scorer = SCORER_ABBREVIATIONS.get(reading.primary_scorer or "", "")
            self.notify(f"worst covered first ({scorer}): w again for size order", timeout=3)
        tree.rebuild()
        self.update_tree_title()

    # -- triage: TriageController ---------------------------------------------------------------

    def action_set_status(self, number: int) -> None:
        """`1`…`9`: set the selected node's status."""
        self.triage_controller.set_status(number)

    def action_tag(self) -> None:
        """`t`: add or remove a tag."""
        self.triage_controller.tag()

    def action_note(self) -> None:
        """`a`: edit the note here."""
        self.triage_controller.note()

    def action_note_in_editor(self) -> None:
        """`A`: edit the note in $EDITOR."""
        self.triage_controller.note_in_editor()

    def action_undo(self) -> None:
        """`u`: undo your latest triage change."""
        self.triage_controller.undo()

    def action_filter(self) -> None:
        """`f`: filter the tree by status or tag."""
        self.triage_controller.ask_filter()

    # -- renders: RenderController --------------------------------------------------------------

    def action_render(self) -> None:
        """`r`: render the selected node."""
        self.render_controller.render_selected()

    def action_render_map(self) -> None:
        """`R`: render the whole map."""
        self.render_controller.render_map()

    def action_cancel_render(self) -> None:
        """`x`: cancel the selected node's render."""
        self.render_controller.cancel_selected()

    def action_view_render(self) -> None:
        """`v`: the selected node's render, inline."""
        self.render_controller.show_selected(outside=False)

    def action_open_render(self) -> None:
        """`o`: the selected node's render in an outside viewer, else its path copied."""
        self.render_controller.show_selected(outside=True)

    @on(RenderController.Submitted)
    def _render_submitted(self, event: RenderController.Submitted) -> None:
        self.render_controller.submitted(event)

    @on(RenderController.Found)
    def _render_found(self, event: RenderController.Found) -> None:
        self.render_controller.found(event)

    # -- relabelling: RelabelController ---------------------------------------------------------

    def action_relabel(self) -> None:
        """`L`: relabel the selected node with the LLM labeller."""
        self.relabel_controller.relabel_selected()

    @on(RelabelController.Done)
    def _relabel_done(self, event: RelabelController.Done) -> None:
        self.relabel_controller.done(event)

    # -- across SAEs: matches, side by side, children --------------------------------------------

    def action_matches(self) -> None:
        """`M`: the latent's matches in the store's match tables (read in a worker)."""
        self._read_matches()

    @work(thread=True, exclusive=True, exit_on_error=False, group="matches", description="read the match tables")
    def _read_matches(self) -> None:
        from vista_tui.core.cross_sae import read_latent_matches  # see _import_the_rest

        provenance = self.model.manifest.provenance
        reading = read_latent_matches(self.app.store, provenance.sae, provenance.latent)  # type: ignore[attr-defined]
        if not get_current_worker().is_cancelled:
            self.post_message(self.MatchesRead(reading))

    @on(MatchesRead)
    def _matches_read(self, event: MatchesRead) -> None:
        """List the matches, or say why there are none (no match table: the command that makes one)."""
        message = event.reading.message
        if message is not None:
            self.notify(sanitize(message, 400), severity="warning", timeout=10, markup=False)
            return
        from vista_tui.tui.screens.matches import MatchesScreen  # see _import_the_rest

        self.app.push_screen(MatchesScreen(event.reading), self._match_chosen)

    def _match_chosen(self, choice: tuple[str, Any] | None) -> None:
        """Back from the matches: open the chosen latent's map over this one, or side by side with it."""
        if choice is None:
            return
        from vista_tui.tui.screens.matches import OPEN  # see _import_the_rest

        how, match = choice
        if how == OPEN:
            self.app.open_matched_map(match.map_path)  # type: ignore[attr-defined]
        else:
            self.notify(f"opening latent {match.latent} side by side…", timeout=2)
            self._load_split(match.map_path)

    def action_split(self) -> None:
        """`|`: this map beside its dominant child's map (a map built with --also-sae), else beside its
        best match that has a map (a match table of its SAE)."""
        self._load_split(None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="split", description="open the maps side by side")
    def _load_split(self, path: Path | None) -> None:
        """Open the second map (given, else the map of the root's dominant child, else of the best match that
        has a map) and match the nodes."""
        from vista_tui.core.cross_sae import (  # see _import_the_rest
            build_command,
            match_nodes,
            no_children_message,
            read_latent_matches,
            split_partner,
            tree_side,
        )
        from vista_tui.mapdata.children import read_children

        note = None
        if path is None:
            children = read_children(self.model.reader.path)
            if children is None:  # no children: the best match that has a map, when a match table has one
                provenance = self.model.manifest.provenance
                reading = read_latent_matches(self.app.store, provenance.sae, provenance.latent)  # type: ignore[attr-defined]
                partner = split_partner(reading)
                if partner is None or partner.map_path is None:
                    self.post_message(
                        self.SplitRefused(
                            f"{no_children_message(self.model.map_id)}; or press M and | on a match to open its"
                            " map side by side"
                        )
                    )
                    return
                path = partner.map_path
                kind = "one-to-one match" if partner.one_to_one else "match"
                note = f"no children: beside its {kind}, latent {partner.latent} of {partner.sae}"
            else:
                root = children.nodes.get(self.model.root.node_id)
                dominant = root.dominant if root is not None else None
                if dominant is None:
                    self.post_message(self.SplitRefused(f"no child latent of {children.sae} fires on this map"))
                    return
                path = self.app.store.map_of(children.sae, dominant.latent)  # type: ignore[attr-defined]
                if path is None:
                    self.post_message(
                        self.SplitRefused(
                            f"no map of latent {dominant.latent} of {children.sae} (this map's dominant child): "
                            f"run `{build_command(children.sae, dominant.latent)}`"
                        )
                    )
                    return
        other = MapModel.open(path)
        _ = other.nodes, other.layout
        forward, backward = match_nodes(tree_side(self.model), tree_side(other))
        if not get_current_worker().is_cancelled:
            self.post_message(self.SplitReady(other, forward, backward, note))

    @on(SplitRefused)
    def _split_refused(self, event: SplitRefused) -> None:
        self.notify(sanitize(event.reason, 400), severity="warning", timeout=10, markup=False)

    @on(SplitReady)
    def _split_ready(self, event: SplitReady) -> None:
        from vista_tui.tui.screens.split import SplitScreen  # see _import_the_rest

        self.app.push_screen(SplitScreen(self.model, event.other, event.forward, event.backward, self.selected))
        if event.note is not None:
            self.notify(sanitize(event.note, 400), timeout=4, markup=False)

    def action_children(self) -> None:
        """`C`: colour the minimap and contexts by each context's dominant child latent, with a legend."""
        self.children_controller.toggle()

    @on(ChildrenController.Read)
    def _children_read(self, event: ChildrenController.Read) -> None:
        self.children_controller.read(event)
