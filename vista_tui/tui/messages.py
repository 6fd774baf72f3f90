"""Messages that cross screens; a widget's own messages live on the widget."""

from __future__ import annotations

from textual.message import Message
from textual.worker import Worker, WorkerState


class WorkerFailed(Message):
    """A worker anywhere in the app raised; the app decides how loud to be (see VistaApp)."""

    def __init__(self, group: str, description: str, error: BaseException) -> None:
        self.group = group
        self.description = description
        self.error = error
        super().__init__()


def forward_failure(event: Worker.StateChanged) -> WorkerFailed | None:
    """The WorkerFailed to post for a worker state change, if the worker failed.

    Worker.StateChanged does not bubble, so widgets that run workers forward failures to the
    app with `if (failed := forward_failure(event)): self.app.post_message(failed)`.
    """
    worker = event.worker
    if event.state != WorkerState.ERROR or worker.error is None:
        return None
    return WorkerFailed(worker.group, worker.description or worker.name, worker.error)
