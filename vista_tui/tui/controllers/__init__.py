"""What the map screen does besides walking the tree: triage, renders, relabelling.

Each controller is a plain object the `MapScreen` owns. The screen keeps the bindings (so
help, footer and palette read them from one place) and routes each action and each of a
controller's messages to it. A controller sees the screen only as a `MapView`, so no module
here imports the screen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from textual.widget import Widget

if TYPE_CHECKING:
    from textual.message import Message
    from textual.notifications import SeverityLevel
    from textual.worker import Worker

    from vista_tui.core.model import MapModel

WidgetType = TypeVar("WidgetType", bound=Widget)


class MapView(Protocol):
    """The map screen as its controllers use it."""

    model: MapModel

    @property
    def selected(self) -> str | None:
        """The node whose labels and contexts are shown."""

    @property
    def app(self) -> Any:
        """The VistaApp: its render queue, diffusion model, label command, screens, clipboard."""

    def jump_to(self, node_id: str) -> None:
        """Select a node, unfolding the tree to it."""

    def show_image(self, path: Path, sidecar: dict[str, Any]) -> None:
        """Show a render inline, over the map (the screen owns which screen does it)."""

    def update_tree_title(self) -> None:
        """Redraw the tree's title (zoom, hits, filter, order)."""

    def query_one(self, selector: str, expect_type: type[WidgetType]) -> WidgetType:
        """A widget of the screen."""

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """A toast."""

    def post_message(self, message: Message) -> bool:
        """Send the screen a message (thread-safe: how a controller's worker reports back)."""

    def run_worker(
        self,
        work: Callable[[], None],
        name: str | None = "",
        group: str = "default",
        description: str = "",
        exit_on_error: bool = True,
        start: bool = True,
        exclusive: bool = False,
        thread: bool = False,
    ) -> Worker[None]:
        """Run a worker owned by the screen (its failure reaches the app's one handler)."""

    def refresh(self, *, repaint: bool = True, layout: bool = False, recompose: bool = False) -> Any:
        """Redraw the screen."""
