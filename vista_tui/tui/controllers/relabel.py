"""`L`: relabel the selected node with the LLM labeller, in a child process (the TUI never imports the pipeline).

One labeller at a time: the worker is exclusive in its group, so a second `L` cancels the
first, whose child is then stopped, and the new child starts only once the old one is gone
(a lock held while a child runs). Two labellers writing the same map's tree at once would
race on the file.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from functools import partial

from textual.message import Message
from textual.worker import get_current_worker

from vista_tui.core.sanitize import sanitize
from vista_tui.tui.controllers import MapView
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
from vista_tui.tui.widgets.labels import LabelsPanel

POLL_S = 0.1
"""How often a running relabel checks whether it was cancelled."""
STOP_GRACE_S = 5.0
"""How long a cancelled labeller gets to exit after SIGTERM before it is killed."""


class RelabelController:
    """The map screen's relabelling: run the label command on a node, then re-read the labels."""

    class Done(Message):
        """A relabel child process finished or was stopped (posted from its worker)."""

        def __init__(self, node_id: str, error: str | None, stopped: bool = False) -> None:
            self.node_id = node_id
            self.error = error
            """None when it succeeded and the labels were re-read; else the one-line reason."""
            self.stopped = stopped
            """A newer `L` replaced it before it finished."""
            super().__init__()

    def __init__(self, view: MapView) -> None:
        self.view = view
        self._one_labeller = threading.Lock()
        """Held while a label child runs, so that the next one waits for a stopped one to be gone."""

    def label_command(self) -> list[str]:
        """The relabel command before `MAP_DIR --node ID`: the app's `label_command`, else `python -m pipeline label`."""
        command = getattr(self.view.app, "label_command", None)
        return list(command) if command else [sys.executable, "-m", "pipeline", "label"]

    def relabel_selected(self) -> None:
        """`L`: relabel the selected node in a child process, then re-read its labels."""
        node_id = self.view.selected
        if node_id is None:
            return
        self.view.notify(f"relabelling {self.view.model.title(node_id)}…", timeout=2)
        command = [*self.label_command(), str(self.view.model.reader.path), "--node", node_id]
        self.view.run_worker(
            partial(self._relabel, node_id, command),
            thread=True,
            exclusive=True,
            group="label",
            exit_on_error=False,
            description="relabel the node",
        )

    def _relabel(self, node_id: str, command: list[str]) -> None:
        """In a worker: run the labeller, stopping it if a newer `L` cancels this worker."""
        worker = get_current_worker()
        with self._one_labeller:
            if worker.is_cancelled:
                return  # replaced before its turn came: nothing ran, nothing to say
            try:
                child = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
                )
            except OSError as error:
                self.view.post_message(self.Done(node_id, f"could not start {command[0]}: {error}"))
                return
            while True:
                try:
                    _, stderr = child.communicate(timeout=POLL_S)  # retrying after a timeout loses no output
                    break
                except subprocess.TimeoutExpired:
                    if worker.is_cancelled:
                        _stop(child)
                        self.view.post_message(self.Done(node_id, None, stopped=True))
                        return
            if child.returncode != 0:
                lines = [line.strip() for line in stderr.splitlines() if line.strip()]
                # The labeller's last line says what went wrong (`error: …`); the toast already says "failed".
                reason = lines[-1].removeprefix("error:").strip() if lines else f"exit status {child.returncode}"
                self.view.post_message(self.Done(node_id, reason))
                return
            self.view.model.reload_labels()  # re-read off the UI thread; the handler only redraws
        self.view.post_message(self.Done(node_id, None))

    def done(self, event: Done) -> None:
        """Say how the relabel went; on success redraw what shows labels."""
        title = self.view.model.title(event.node_id)
        if event.stopped:
            self.view.notify(f"relabel of {title} stopped: L was pressed again", timeout=4)
            return
        if event.error is not None:
            self.view.notify(f"relabel of {title} failed: {sanitize(event.error, 300)}", severity="error", timeout=8)
            return
        self.view.query_one("#tree", ClusterTreeView).rebuild()
        self.view.query_one("#labels", LabelsPanel).refresh(layout=True)
        self.view.update_tree_title()
        self.view.notify(f"relabelled {title}", timeout=3)


def _stop(child: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after a grace period; returns once the child is gone."""
    child.terminate()
    try:
        child.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
