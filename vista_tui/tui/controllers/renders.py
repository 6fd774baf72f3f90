"""Renders from the explorer: r / R ask for one, v / o show one, x cancels; glyphs and the status line follow.

Finding a render in the cache means computing its key, which hashes the map's tree and
contexts files (`render_key`, reached through `cached_render` and `RenderQueue.submit`): on
a big map that is a visible stall the first time. So nothing here touches the cache on the
UI thread: a request is submitted, and a render looked up, in a thread worker that posts the
answer back to the screen.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Static
from textual.worker import get_current_worker

from vista_tui.tui.controllers import MapView
from vista_tui.tui.graphics import open_externally
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView

if TYPE_CHECKING:
    from vista_tui.core.render_protocol import RenderEvent
    from vista_tui.core.render_queue import RenderQueue  # the app's, started with the first render
    from vista_tui.mapdata.renders import RenderJob

EVENT_GLYPHS = {"queued": "◌", "started": "◐", "progress": "◐", "done": "●", "failed": "✗", "cancelled": " "}
"""A node's render glyph in the tree (second column), by its latest render event."""


class RenderController:
    """The map screen's renders: requests, their events, and showing the result."""

    class Submitted(Message):
        """A render request reached the queue (or failed to: `job_id` None), posted from its worker."""

        def __init__(self, request: int, node_id: str, job: RenderJob, job_id: str | None) -> None:
            self.request = request
            self.node_id = node_id
            self.job = job
            self.job_id = job_id
            super().__init__()

    class Found(Message):
        """A render looked up in the cache for `v` or `o` (None: there is none), posted from its worker."""

        def __init__(self, node_id: str, path: Path | None, sidecar: dict[str, Any], outside: bool) -> None:
            self.node_id = node_id
            self.path = path
            self.sidecar = sidecar
            self.outside = outside
            """For `o` (open in an outside viewer) rather than `v`."""
            super().__init__()

    def __init__(self, view: MapView) -> None:
        self.view = view
        self.jobs: dict[str, str | None] = {}
        """Node id → id of its latest render job (None: requested, its id not back from the worker yet)."""
        self.state: dict[str, RenderEvent] = {}
        """Node id → the latest event of its render."""
        self._requests = 0
        self._newest: dict[str, int] = {}
        """Node id → the number of its latest request (an older request coming back late is not shown)."""
        self._early: dict[str, dict[str, RenderEvent]] = {}
        """Node id → job id → the latest event that came before the job's id did (events and the id race)."""

    @property
    def _root(self) -> str:
        return self.view.model.root.node_id

    def job(self, node_id: str | None, kind: str = "node") -> RenderJob:
        """The render job for a node (the root, or None, is the whole map)."""
        from vista_tui.mapdata.renders import RenderJob  # after the map's first frame (MapScreen._import_the_rest)

        return RenderJob(
            map_dir=self.view.model.reader.path,
            node_id=None if node_id in (None, self._root) else node_id,
            kind=kind,  # type: ignore[arg-type]
            model=self.view.app.diffusion_model,
        )

    # -- r, R, x ---------------------------------------------------------------------------------

    def render_selected(self) -> None:
        """`r`: render the selected node."""
        if self.view.selected is not None:
            self._request(self.view.selected, self.job(self.view.selected))

    def render_map(self) -> None:
        """`R`: render the whole map as a panorama."""
        self._request(self._root, self.job(None, "panorama"))

    def _request(self, node_id: str, job: RenderJob) -> None:
        queue = self.view.app.renders  # the app makes its queue on first use: here, on the UI thread
        self._requests += 1
        self._newest[node_id] = self._requests
        self.jobs[node_id] = None
        self.view.run_worker(
            partial(self._submit, queue, self._requests, node_id, job),
            thread=True,
            group="render",
            exit_on_error=False,
            description="queue the render",
        )

    def _submit(self, queue: RenderQueue, request: int, node_id: str, job: RenderJob) -> None:
        """In a worker: queue the job (the queue looks it up in the cache first, hashing the map's files)."""
        job_id: str | None = None
        try:
            job_id = queue.submit(job)
        finally:  # a failed submit still reports back, so that the node's pending request ends
            self.view.post_message(self.Submitted(request, node_id, job, job_id))

    def submitted(self, event: Submitted) -> None:
        """A request is in the queue: its job is now the node's, and any event that came first is shown."""
        if self._newest.get(event.node_id) != event.request:
            return  # a newer request for this node is on its way; that one is shown
        early = self._early.pop(event.node_id, {})
        if event.job_id is None:  # the submit raised: the app's failure handler says why
            self.jobs.pop(event.node_id, None)
            return
        self.jobs[event.node_id] = event.job_id
        what = "sketch" if event.job.model is None else "render"
        self.view.notify(f"{what} of {self.view.model.title(event.node_id)} queued", timeout=2)
        if event.job_id in early:
            self.changed(early[event.job_id])

    def cancel_selected(self) -> None:
        """`x`: cancel the selected node's queued or running render."""
        job_id = self.jobs.get(self.view.selected or "")
        if job_id is None or not self.view.app.renders.cancel(job_id):
            self.view.notify("nothing to cancel for this node", timeout=2)

    # -- events ----------------------------------------------------------------------------------

    def changed(self, event: RenderEvent) -> None:
        """A render job moved: update the node's glyph, the status line, and say when it is done."""
        node_id = event.job.node_id or self._root
        if node_id in self.jobs:
            latest = self.jobs[node_id]
            if latest is None:  # requested, id not back yet: this may be its job, so keep the event
                self._early.setdefault(node_id, {})[event.job_id] = event
                return
            if latest != event.job_id:
                return  # an older job of this node
        self.state[node_id] = event
        tree = self.view.query_one("#tree", ClusterTreeView)
        tree.glyphs[node_id] = EVENT_GLYPHS[event.kind]
        tree.rebuild()
        title = self.view.model.title(node_id)
        if event.kind == "done":
            how = "from the cache" if event.cached else f"in {event.seconds:.1f} s"
            self.view.notify(f"{title}: render ready {how} — v to view, o to open outside", timeout=4)
        elif event.kind == "failed":
            self.view.notify(f"{title}: render failed — {event.error}", severity="error", timeout=8)
        self._update_status_line()

    def _update_status_line(self) -> None:
        status = self.view.query_one("#render-status", Static)
        active = [e for e in self.state.values() if e.kind in ("queued", "started", "progress")]
        running = [e for e in active if e.kind != "queued"]
        if not active:
            status.remove_class("-visible")
            return
        parts = [f"rendering {self.view.model.title(e.job.node_id or self._root)} {e.percent}%" for e in running]
        queued = len(active) - len(running)
        if queued:
            parts.append(f"{queued} queued")
        status.update(Text(" · ".join(parts) + " · x cancels"))
        status.add_class("-visible")

    # -- v, o ------------------------------------------------------------------------------------

    def show_selected(self, outside: bool) -> None:
        """`v` (inline) or `o` (`outside`): the selected node's render, this session's latest, else a cached one."""
        node_id = self.view.selected or self._root
        event = self.state.get(node_id)
        if event is not None and event.kind == "done" and event.path is not None:
            from vista_tui.mapdata.renders import read_sidecar

            self.found(self.Found(node_id, event.path, {} if outside else read_sidecar(event.path), outside))
            return
        jobs = [self.job(node_id, kind) for kind in ("node", "panorama")]
        self.view.run_worker(
            partial(self._look_up, node_id, jobs, outside),
            thread=True,
            exclusive=True,
            group="render-lookup",
            exit_on_error=False,
            description="find the render",
        )

    def _look_up(self, node_id: str, jobs: list[RenderJob], outside: bool) -> None:
        """In a worker: the first of `jobs` already rendered, with its sidecar."""
        from vista_tui.mapdata.renders import cached_render, read_sidecar

        path = next((found for job in jobs if (found := cached_render(job)) is not None), None)
        sidecar = read_sidecar(path) if path is not None and not outside else {}
        if not get_current_worker().is_cancelled:
            self.view.post_message(self.Found(node_id, path, sidecar, outside))

    def found(self, event: Found) -> None:
        """Show what `v` or `o` asked for, or say there is nothing yet."""
        if event.path is None:
            hint = "r renders it" if event.outside else "r renders it, R renders the whole map"
            self.view.notify(f"no render of this node yet — {hint}", timeout=3)
        elif not event.outside:
            self.view.show_image(event.path, event.sidecar)
        elif (command := open_externally(event.path)) is None:
            self.view.app.copy_to_clipboard(str(event.path))
            self.view.notify(f"no viewer here; path copied to your clipboard (OSC 52): {event.path}", timeout=8)
        else:
            self.view.notify(f"opened with {command[0]}", timeout=2)
