"""The explorer: tree on the left, labels and contexts on the right, minimap and fidelity below the tree."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SuspendNotSupported
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import Reactive, reactive
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from vista_tui.core.annotations import AnnotationError
from vista_tui.core.history import undo_message
from vista_tui.core.model import MapModel
from vista_tui.core.render_protocol import RenderEvent
from vista_tui.core.sanitize import sanitize
from vista_tui.core.triage import Triage, TriageFilter, matching_nodes, member_ids, meter_text, parse_filter
from vista_tui.mapdata.renders import RenderJob, cached_render, read_sidecar
from vista_tui.tui.dialogs import LineDialog, NoteDialog
from vista_tui.tui.graphics import open_externally
from vista_tui.tui.palette import NodeCommands
from vista_tui.tui.screens.context_detail import ContextScreen
from vista_tui.tui.screens.image import ImageScreen
from vista_tui.tui.screens.loading import map_header
from vista_tui.tui.widgets.cluster_tree import ClusterTree
from vista_tui.tui.widgets.contexts import ContextList
from vista_tui.tui.widgets.fidelity import FidelityPanel
from vista_tui.tui.widgets.labels import LabelsPanel
from vista_tui.tui.widgets.minimap import Minimap


class MapScreen(Screen[None]):
    """One map: walk its cluster tree, read each node's labels and contexts."""

    COMMANDS: ClassVar = {NodeCommands}

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
            tooltip="Close the search bar, else clear hits, else the filter, else leave the zoom",
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
        Binding("L", "relabel", "Relabel", show=False, tooltip="Relabel the selected node with the LLM labeller"),
        Binding("tab", "app.focus_next", "Switch pane", tooltip="Move between the tree and the contexts"),
        Binding("shift+tab", "app.focus_previous", "Switch pane back", show=False),
    ]

    selected: Reactive[str | None] = reactive(None, init=False, repaint=False)
    """The node whose labels and contexts are shown."""

    class SearchDone(Message):
        """A search finished in a worker."""

        def __init__(self, query: str, node_ids: list[str]) -> None:
            self.query = query
            self.node_ids = node_ids
            super().__init__()

    class RelabelDone(Message):
        """A relabel child process finished (posted from its worker)."""

        def __init__(self, node_id: str, error: str | None) -> None:
            self.node_id = node_id
            self.error = error
            """None when it succeeded and the labels were re-read; else the one-line reason."""
            super().__init__()

    def __init__(self, model: MapModel, triage: Triage | None = None) -> None:
        super().__init__()
        self.model = model
        self.triage = triage
        """The map's annotations; None when the screen was opened without triage."""
        self.triage_filter: TriageFilter | None = None
        self.hits: list[str] = []
        self.search_query = ""
        self.render_jobs: dict[str, str] = {}
        """Node id → id of its latest render job."""
        self.render_state: dict[str, RenderEvent] = {}
        """Node id → the latest event of its render."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="header-row"):
            yield Static(id="map-header")
            yield Static(id="triage-meter")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ClusterTree(self.model, id="tree")
                yield Minimap(self.model, id="minimap")
                yield FidelityPanel(self.model.reader.fidelity, id="fidelity")
            with Vertical(id="right"):
                yield LabelsPanel(self.model, id="labels")
                yield Static(id="triage-note")
                yield ContextList(self.model, id="contexts")
        yield Static(id="render-status")
        yield Input(placeholder="search labels, keywords, contexts — Enter to search, Esc to cancel", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#map-header", Static).update(map_header(self.model.manifest))
        tree = self.query_one("#tree", ClusterTree)
        tree.border_title = "clusters"
        tree.follow = self._follow_tree
        contexts = self.query_one("#contexts", ContextList)
        contexts.border_title = "contexts"
        contexts.follow = self._follow_contexts
        self.query_one("#minimap", Minimap).border_title = "map"
        self.query_one("#tree", ClusterTree).focus()
        self._refresh_triage()
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
        self._show_annotation()

    def _follow_tree(self, node_id: str) -> None:
        if node_id != self.selected:
            self.show(node_id)

    @on(ClusterTree.NodeSelected)
    def _node_selected(self, event: ClusterTree.NodeSelected) -> None:
        self._follow_tree(event.node_id)

    @on(ClusterTree.LeafOpened)
    def _leaf_opened(self, event: ClusterTree.LeafOpened) -> None:
        self.query_one("#contexts", ContextList).focus()

    def _follow_contexts(self, row: int) -> None:
        self.query_one("#minimap", Minimap).mark_row(row)

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
            self._jump_unreviewed(step)
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
        if self.triage_filter is not None:
            title += f" · filter {sanitize(str(self.triage_filter))}"
        if tree.disagreement_order:
            title += " · disagreement order"
        tree.border_title = title

    def action_clear(self) -> None:
        """Esc: close the search bar, else clear hits, else the filter, else leave the zoom."""
        search = self.query_one("#search", Input)
        if search.has_class("-visible"):
            search.remove_class("-visible")
            self.query_one("#tree", ClusterTree).focus()
        elif self.hits:
            self._apply_hits("", [])
        elif self.triage_filter is not None:
            self._apply_filter(None)
        elif self.query_one("#tree", ClusterTree).view_root != self.model.root.node_id:
            self.action_unzoom()

    # -- disagreement and relabelling --------------------------------------------------------

    def action_disagreement_order(self) -> None:
        """`d`: toggle listing children by ascending agreement (the readings that disagree most first)."""
        tree = self.query_one("#tree", ClusterTree)
        tree.disagreement_order = not tree.disagreement_order
        tree.rebuild()
        self._update_tree_title()
        if tree.disagreement_order:
            self.notify("disagreement order: least-agreeing readings first — d again for size order", timeout=3)

    def label_command(self) -> list[str]:
        """The relabel command before `MAP_DIR --node ID`: the app's `label_command`, else `python -m pipeline label`."""
        command = getattr(self.app, "label_command", None)
        return list(command) if command else [sys.executable, "-m", "pipeline", "label"]

    def action_relabel(self) -> None:
        """`L`: relabel the selected node in a child process, then re-read its labels."""
        if self.selected is None:
            return
        self.notify(f"relabelling {self.model.title(self.selected)}…", timeout=2)
        self._run_relabel(self.selected)

    @work(thread=True, group="label", exit_on_error=False, description="relabel the node")
    def _run_relabel(self, node_id: str) -> None:
        command = [*self.label_command(), str(self.model.reader.path), "--node", node_id]
        try:
            done = subprocess.run(command, capture_output=True, text=True, errors="replace", check=False)
        except OSError as error:
            self.post_message(self.RelabelDone(node_id, f"could not start {command[0]}: {error}"))
            return
        if done.returncode != 0:
            lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
            reason = lines[-1] if lines else f"exit status {done.returncode}"
            self.post_message(self.RelabelDone(node_id, reason))
            return
        self.model.reload_labels()  # re-read off the UI thread; the handler only redraws
        self.post_message(self.RelabelDone(node_id, None))

    @on(RelabelDone)
    def _relabel_done(self, event: RelabelDone) -> None:
        title = self.model.title(event.node_id)
        if event.error is not None:
            self.notify(f"relabel of {title} failed: {sanitize(event.error, 300)}", severity="error", timeout=8)
            return
        self.query_one("#tree", ClusterTree).rebuild()
        self.query_one("#labels", LabelsPanel).refresh(layout=True)
        self._update_tree_title()
        self.notify(f"relabelled {title}", timeout=3)

    # -- triage ------------------------------------------------------------------------------

    def _refresh_triage(self, node_id: str | None = None) -> None:
        """Redraw what shows annotations: status glyphs (one node, or all), the meter, the note."""
        tree = self.query_one("#tree", ClusterTree)
        meter = self.query_one("#triage-meter", Static)
        triage = self.triage
        if triage is None:
            meter.update("")
            return
        ids = [node_id] if node_id is not None else list(self.model.nodes)
        for one in ids:
            tree.status_glyphs[one] = triage.glyph(one)
        tree.rebuild()
        text = meter_text(triage, self.model)
        if triage.error is not None:
            text += " · read-only"
        meter.update(Text(text))
        self._show_annotation()

    def _show_annotation(self) -> None:
        """The selected node's status, tags and note under its labels (hidden when it has none)."""
        panel = self.query_one("#triage-note", Static)
        annotation = self.triage.get(self.selected) if self.triage is not None and self.selected else None
        if annotation is None:
            if panel.has_class("-visible"):  # a hidden, empty line needs no update (each one re-lays out)
                panel.remove_class("-visible")
                panel.update("")
            return
        line = Text()
        line.append(sanitize(annotation.status), "bold")
        for tag in annotation.tags:
            line.append(f" #{sanitize(tag)}", "italic")
        if annotation.note:
            line.append(" · note: ")
            line.append(sanitize(annotation.note, 400))
        panel.update(line)
        panel.add_class("-visible")

    def _writable_triage(self) -> Triage | None:
        """The triage store if writes are allowed, else None after saying why."""
        triage = self.triage
        if triage is None:
            self.notify("triage is off: no annotation store for this map", severity="warning", timeout=4)
            return None
        if not triage.writable:
            self.notify(f"triage is off: {triage.error}", severity="warning", timeout=6)
            return None
        return triage

    def _save(self, node_id: str, what: str, write: Callable[[], object]) -> bool:
        """Run a store write; say "saved" only once it returned (committed), else its one-line error."""
        try:
            write()
        except (AnnotationError, ValueError, KeyError) as error:  # the store refuses bad values with ValueError
            if isinstance(error, KeyError):
                error = AnnotationError(f"{self.model.title(node_id)} has no annotation yet")
            self.notify(f"not saved: {error}", severity="error", timeout=8)
            return False
        assert self.triage is not None
        self.triage.refresh(node_id)
        self._refresh_triage(node_id)
        self.notify(f"saved: {self.model.title(node_id)} {what}", timeout=2)
        return True

    def _members(self, node_id: str) -> list[str]:
        return member_ids(self.model, node_id)

    def action_set_status(self, number: int) -> None:
        """`1`…`9`: the selected node's status becomes the configured status at that position."""
        triage = self._writable_triage()
        if triage is None or self.selected is None:
            return
        if not 1 <= number <= len(triage.statuses):
            self.notify(f"no status {number}: there are {len(triage.statuses)} (1…{len(triage.statuses)})", timeout=3)
            return
        node_id, status = self.selected, triage.statuses[number - 1]
        self._save(node_id, f"→ {status}", lambda: triage.store.set_status(node_id, status, self._members(node_id)))  # type: ignore[union-attr]

    def action_tag(self) -> None:
        """`t`: add a tag (or `-tag` to remove one) in a dialog that completes existing tags."""
        triage = self._writable_triage()
        if triage is None or self.selected is None:
            return
        node_id = self.selected
        annotation = triage.get(node_id)
        own = list(annotation.tags) if annotation is not None else []
        suggestions = [*triage.tags(), *(f"-{tag}" for tag in own)]
        current = f" (now: {', '.join(own)})" if own else ""
        dialog = LineDialog(
            f"Tag {self.model.title(node_id)}{current}",
            "Enter adds · -tag removes · → accepts the completion · esc cancels",
            suggestions,
            placeholder="tag, or -tag to remove",
        )
        self.app.push_screen(dialog, lambda value: self._tag_entered(node_id, value))

    def _tag_entered(self, node_id: str, value: str | None) -> None:
        tag = (value or "").strip()
        if not tag or self.triage is None or self.triage.store is None:
            return
        store = self.triage.store
        if tag.startswith("-"):
            name = tag[1:].strip()
            self._save(node_id, f"untagged {name}", lambda: store.remove_tag(node_id, name))
        else:
            self._save(node_id, f"tagged {tag}", lambda: store.add_tag(node_id, tag, self._members(node_id)))

    def action_note(self) -> None:
        """`a`: edit the note in a dialog prefilled with it."""
        triage = self._writable_triage()
        if triage is None or self.selected is None:
            return
        node_id = self.selected
        annotation = triage.get(node_id)
        dialog = NoteDialog(f"Note on {self.model.title(node_id)}", annotation.note if annotation else "")
        self.app.push_screen(dialog, lambda value: self._note_entered(node_id, value))

    def _note_entered(self, node_id: str, note: str | None) -> None:
        if note is None or self.triage is None or self.triage.store is None:
            return
        annotation = self.triage.get(node_id)
        if annotation is not None and annotation.note == note:
            self.notify("note unchanged", timeout=2)
            return
        store = self.triage.store
        self._save(node_id, "note", lambda: store.set_note(node_id, note, self._members(node_id)))

    def action_note_in_editor(self) -> None:
        """`A`: edit the note in $EDITOR (the TUI suspends while it runs)."""
        triage = self._writable_triage()
        if triage is None or self.selected is None:
            return
        node_id = self.selected
        annotation = triage.get(node_id)
        try:
            with self.app.suspend():
                note = self.run_editor(annotation.note if annotation else "")
        except SuspendNotSupported:
            self.notify("this terminal cannot hand over to $EDITOR — a edits the note here", severity="warning")
            return
        except (OSError, subprocess.CalledProcessError) as error:
            self.notify(f"editor failed: {error}", severity="error", timeout=8)
            return
        self.refresh(layout=True)
        self._note_entered(node_id, note)

    @staticmethod
    def run_editor(note: str) -> str:
        """Run $VISUAL, else $EDITOR, else vi, on a temp file holding `note`; the edited note.

        Separate from the action so tests can run it (and the action, with `app.suspend` replaced)
        without a real terminal. A trailing newline the editor adds is dropped.
        """
        editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
        with tempfile.TemporaryDirectory(prefix="vista-note-") as folder:
            path = Path(folder) / "note.md"
            path.write_text(note, encoding="utf-8")
            subprocess.run([*shlex.split(editor), str(path)], check=True)
            return path.read_text(encoding="utf-8").rstrip("\n")

    def action_undo(self) -> None:
        """`u`: undo your latest triage change."""
        triage = self._writable_triage()
        if triage is None or triage.store is None:
            return
        try:
            entry = triage.store.undo(triage.author)
        except (AnnotationError, ValueError) as error:
            self.notify(f"not undone: {error}", severity="error", timeout=8)
            return
        if entry is None:
            self.notify("nothing to undo", timeout=2)
            return
        triage.refresh(entry.node_id)
        if entry.node_id in self.model.nodes:
            self._refresh_triage(entry.node_id)
            title = self.model.title(entry.node_id)
        else:
            title = entry.node_id[:12]
        self.notify(undo_message(title, entry), timeout=4)

    def _jump_unreviewed(self, step: int) -> None:
        """n/N without a search: the next/previous unreviewed node in tree order, wrapping."""
        triage = self.triage
        order = self.model.walk()
        unreviewed_status = triage.unreviewed if triage is not None else None
        candidates = [n for n in order[1:] if triage is None or triage.status_of(n) == unreviewed_status]
        if self.triage_filter is not None:
            shown = self.query_one("#tree", ClusterTree).shown or set()
            candidates = [n for n in candidates if n in shown]
        candidates = [n for n in candidates if n != self.selected]
        if not candidates:
            self.notify("no unreviewed node left — every node has a status", timeout=3)
            return
        position = {node_id: i for i, node_id in enumerate(order)}
        current = position.get(self.selected or "", -1)
        if step > 0:
            target = next((n for n in candidates if position[n] > current), candidates[0])
        else:
            target = next((n for n in reversed(candidates) if position[n] < current), candidates[-1])
        self.jump_to(target)

    def action_filter(self) -> None:
        """`f`: show only nodes with a status or tag; empty clears."""
        triage = self.triage
        if triage is None or triage.store is None:
            self._writable_triage()
            return
        suggestions = [*(f"status:{s}" for s in triage.statuses), *(f"tag:{t}" for t in triage.tags())]
        dialog = LineDialog(
            "Filter the tree",
            "status:<name> or tag:<name> · empty shows every node · esc cancels",
            suggestions,
            value=str(self.triage_filter or ""),
            placeholder="status:junk, tag:verb",
        )
        self.app.push_screen(dialog, self._filter_entered)

    def _filter_entered(self, value: str | None) -> None:
        if value is None or self.triage is None:
            return
        try:
            wanted = parse_filter(value, self.triage.statuses)
        except ValueError as error:
            self.notify(str(error), severity="error", timeout=6)
            return
        self._apply_filter(wanted)

    def _apply_filter(self, wanted: TriageFilter | None) -> None:
        """Filter the tree (kept as it is until the next filter, so a node just triaged does not vanish)."""
        tree = self.query_one("#tree", ClusterTree)
        self.triage_filter = wanted
        if wanted is None or self.triage is None:
            tree.filter(None)
        else:
            matches = matching_nodes(self.triage, self.model, wanted)
            tree.filter(matches)
            if not matches:
                self.notify(f"no node has {sanitize(str(wanted))}", severity="warning", timeout=3)
            else:
                self.notify(f"{len(matches)} nodes with {sanitize(str(wanted))} — esc or empty f clears", timeout=3)
        self._update_tree_title()

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
