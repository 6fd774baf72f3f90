"""The explorer: tree on the left, labels and contexts on the right, minimap and fidelity below the tree."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from vista_tui.commands import NodeCommands
from vista_tui.graphics import open_externally
from vista_tui.model import MapModel
from vista_tui.renders import RenderEvent, RenderJob, cached_render, read_sidecar
from vista_tui.sanitize import sanitize
from vista_tui.screens.context_detail import ContextScreen
from vista_tui.screens.image import ImageScreen
from vista_tui.widgets.cluster_tree import ClusterTree
from vista_tui.widgets.contexts import ContextList
from vista_tui.widgets.fidelity import FidelityPanel
from vista_tui.widgets.labels import LabelsPanel
from vista_tui.widgets.minimap import Minimap


class MapScreen(Screen[None]):
    """One map: walk its cluster tree, read each node's labels and contexts."""

    COMMANDS: ClassVar = {NodeCommands}

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", tooltip="Search labels, keywords and context text"),
        Binding("n", "next_hit", "Next hit", show=False),
        Binding("N", "previous_hit", "Previous hit", show=False),
        Binding("z", "zoom", "Zoom", tooltip="Show only the selected subtree"),
        Binding("Z", "unzoom", "Unzoom", show=False),
        Binding(
            "escape", "clear", "Clear", show=False, tooltip="Close the search bar, else clear hits, else leave the zoom"
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
        Binding("tab", "app.focus_next", "Switch pane", tooltip="Move between the tree and the contexts"),
        Binding("shift+tab", "app.focus_previous", "Switch pane back", show=False),
    ]

    selected: Reactive[str | None] = reactive(None, init=False)
    """The node whose labels and contexts are shown."""

    class SearchDone(Message):
        """A search finished in a worker."""

        def __init__(self, query: str, node_ids: list[str]) -> None:
            self.query = query
            self.node_ids = node_ids
            super().__init__()

    def __init__(self, model: MapModel) -> None:
        super().__init__()
        self.model = model
        self.hits: list[str] = []
        self.search_query = ""
        self.render_jobs: dict[str, str] = {}
        """Node id → id of its latest render job."""
        self.render_state: dict[str, RenderEvent] = {}
        """Node id → the latest event of its render."""

    def compose(self) -> ComposeResult:
        yield Static(id="map-header")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ClusterTree(self.model, id="tree")
                yield Minimap(self.model, id="minimap")
                yield FidelityPanel(self.model.reader.fidelity, id="fidelity")
            with Vertical(id="right"):
                yield LabelsPanel(self.model, id="labels")
                yield ContextList(self.model, id="contexts")
        yield Static(id="render-status")
        yield Input(placeholder="search labels, keywords, contexts — Enter to search, Esc to cancel", id="search")
        yield Footer()

    def on_mount(self) -> None:
        header = self.query_one("#map-header", Static)
        prov = self.model.manifest.provenance
        header.update(
            Text.assemble(
                (sanitize(self.model.map_id), "bold"),
                f" · latent {prov.latent} · {sanitize(prov.model)} · hook {sanitize(prov.hook)} · "
                f"SAE {sanitize(prov.sae)} · {prov.n_contexts:,} contexts",
            )
        )
        tree = self.query_one("#tree", ClusterTree)
        tree.border_title = "clusters"
        self.query_one("#contexts", ContextList).border_title = "contexts"
        self.query_one("#minimap", Minimap).border_title = "map"
        self.query_one("#tree", ClusterTree).focus()
        self.show(self.model.root.node_id)

    def on_resize(self) -> None:
        self.set_class(self.size.height >= 40, "-tall")

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

    @on(ClusterTree.NodeSelected)
    def _node_selected(self, event: ClusterTree.NodeSelected) -> None:
        if event.node_id != self.selected:
            self.show(event.node_id)

    @on(ClusterTree.LeafOpened)
    def _leaf_opened(self, event: ClusterTree.LeafOpened) -> None:
        self.query_one("#contexts", ContextList).focus()

    @on(ContextList.Highlighted, "#contexts")
    def _context_highlighted(self, event: ContextList.Highlighted) -> None:
        self.query_one("#minimap", Minimap).mark_row(event.row)

    @on(ContextList.Opened)
    def _context_opened(self, event: ContextList.Opened) -> None:
        self.app.push_screen(ContextScreen(self.model, event.row))

    def jump_to(self, node_id: str) -> None:
        """Select a node from anywhere (palette, search)."""
        tree = self.query_one("#tree", ClusterTree)
        tree.select_node(node_id)
        tree.focus()

    # -- search ------------------------------------------------------------------------------

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("-visible")
        search.value = self.search_query
        search.focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        event.input.remove_class("-visible")
        self.query_one("#tree", ClusterTree).focus()
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
        tree = self.query_one("#tree", ClusterTree)
        tree.hits = set(node_ids)
        tree.rebuild()
        self._update_tree_title()

    def _jump_hit(self, step: int) -> None:
        if not self.hits:
            self.notify("no search hits — press / to search", timeout=2)
            return
        order = self.model.walk()
        position = {node_id: i for i, node_id in enumerate(order)}
        current = position.get(self.selected or "", -1)
        ranked = sorted(self.hits, key=lambda n: position[n])
        if step > 0:
            target = next((n for n in ranked if position[n] > current), ranked[0])
        else:
            target = next((n for n in reversed(ranked) if position[n] < current), ranked[-1])
        self.jump_to(target)

    def action_next_hit(self) -> None:
        self._jump_hit(+1)

    def action_previous_hit(self) -> None:
        self._jump_hit(-1)

    # -- zoom ----------------------------------------------------------------------------------

    def action_zoom(self) -> None:
        tree = self.query_one("#tree", ClusterTree)
        if self.selected is not None:
            tree.zoom(self.selected)
            self._update_tree_title()

    def action_unzoom(self) -> None:
        tree = self.query_one("#tree", ClusterTree)
        tree.zoom(None)
        self._update_tree_title()

    def _update_tree_title(self) -> None:
        tree = self.query_one("#tree", ClusterTree)
        title = "clusters"
        if tree.view_root != self.model.root.node_id:
            path = [*self.model.ancestors(tree.view_root), tree.view_root]
            title = "zoom: " + " › ".join(self.model.title(n, 2) for n in path[1:])
        if self.hits:
            title += f" · {len(self.hits)} hits for {sanitize(self.search_query)!r}"
        tree.border_title = title

    def action_clear(self) -> None:
        """Esc: close the search bar, else clear hits, else leave the zoom."""
        search = self.query_one("#search", Input)
        if search.has_class("-visible"):
            search.remove_class("-visible")
            self.query_one("#tree", ClusterTree).focus()
        elif self.hits:
            self._apply_hits("", [])
        elif self.query_one("#tree", ClusterTree).view_root != self.model.root.node_id:
            self.action_unzoom()

    # -- renders -------------------------------------------------------------------------------

    def _job(self, node_id: str | None, kind: str = "node") -> RenderJob:
        model = self.app.diffusion_model  # type: ignore[attr-defined]
        root = self.model.root.node_id
        return RenderJob(
            map_dir=self.model.reader.path,
            node_id=None if node_id in (None, root) else node_id,
            kind=kind,  # type: ignore[arg-type]
            model=model,
        )

    def _submit(self, node_id: str, job: RenderJob) -> None:
        job_id = self.app.renders.submit(job)  # type: ignore[attr-defined]
        self.render_jobs[node_id] = job_id
        what = "sketch" if job.model is None else "render"
        self.notify(f"{what} of {self.model.title(node_id)} queued", timeout=2)

    def action_render(self) -> None:
        if self.selected is not None:
            self._submit(self.selected, self._job(self.selected))

    def action_render_map(self) -> None:
        self._submit(self.model.root.node_id, self._job(None, "panorama"))

    def action_cancel_render(self) -> None:
        job_id = self.render_jobs.get(self.selected or "")
        if job_id is None or not self.app.renders.cancel(job_id):  # type: ignore[attr-defined]
            self.notify("nothing to cancel for this node", timeout=2)

    def render_changed(self, event: RenderEvent) -> None:
        """A render job moved: update the node's glyph, the status line, and say when it is done."""
        node_id = event.job.node_id or self.model.root.node_id
        if self.render_jobs.get(node_id) not in (None, event.job_id):
            return  # an older job of this node
        self.render_state[node_id] = event
        glyph = {"queued": "◌", "started": "◐", "progress": "◐", "done": "●", "failed": "✗", "cancelled": " "}[
            event.kind
        ]
        tree = self.query_one("#tree", ClusterTree)
        tree.glyphs[node_id] = glyph
        tree.rebuild()
        title = self.model.title(node_id)
        if event.kind == "done":
            how = "from the cache" if event.cached else f"in {event.seconds:.1f} s"
            self.notify(f"{title}: render ready {how} — v to view, o to open outside", timeout=4)
        elif event.kind == "failed":
            self.notify(f"{title}: render failed — {event.error}", severity="error", timeout=8)
        self._update_render_status()

    def _update_render_status(self) -> None:
        status = self.query_one("#render-status", Static)
        active = [e for e in self.render_state.values() if e.kind in ("queued", "started", "progress")]
        running = [e for e in active if e.kind != "queued"]
        if not active:
            status.remove_class("-visible")
            return
        parts = [
            f"rendering {self.model.title(e.job.node_id or self.model.root.node_id)} {e.percent}%" for e in running
        ]
        queued = len(active) - len(running)
        if queued:
            parts.append(f"{queued} queued")
        status.update(Text(" · ".join(parts) + " · x cancels"))
        status.add_class("-visible")

    def selected_render(self) -> Path | None:
        """The selected node's render: this session's latest, else one in the cache."""
        node_id = self.selected or self.model.root.node_id
        event = self.render_state.get(node_id)
        if event is not None and event.kind == "done" and event.path is not None:
            return event.path
        for kind in ("node", "panorama"):
            path = cached_render(self._job(node_id, kind))
            if path is not None:
                return path
        return None

    def action_view_render(self) -> None:
        path = self.selected_render()
        if path is None:
            self.notify("no render of this node yet — r renders it, R renders the whole map", timeout=3)
            return
        self.app.push_screen(ImageScreen(path, read_sidecar(path), self.app.image_widget()))  # type: ignore[attr-defined]

    def action_open_render(self) -> None:
        path = self.selected_render()
        if path is None:
            self.notify("no render of this node yet — r renders it", timeout=3)
            return
        command = open_externally(path)
        if command is None:
            self.app.copy_to_clipboard(str(path))
            self.notify(f"no viewer here; path copied to your clipboard (OSC 52): {path}", timeout=8)
        else:
            self.notify(f"opened with {command[0]}", timeout=2)
