"""What crosses screens: worker failures, on their way to the app's one handler.

A widget's or controller's own messages live on it; this module holds only what every
screen shares.
"""

from __future__ import annotations

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState


def report_worker_failure(node: DOMNode, event: Worker.StateChanged) -> None:
    """Hand a failed worker of `node` to the app's one failure handler (`VistaApp._worker_state_changed`).

    Worker.StateChanged goes only to the node that ran the worker and does not bubble, so a
    screen or widget that runs workers calls this from its own `@on(Worker.StateChanged)`
    handler (after any repair of its own, such as marking rows unreadable). The app decides
    how loud to be: a toast, an error screen, or the picker.
    """
    if event.state == WorkerState.ERROR and node.app is not node:
        node.app.post_message(Worker.StateChanged(event.worker, event.state))
