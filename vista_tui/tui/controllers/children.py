"""`C`: colour the minimap and the contexts by each context's dominant child latent in a second SAE.

A map built with `vista build --also-sae SAE_B` has `children.json`: per context the latents of B
that fire on its focus token, per node the share each dominates. The overlay colours the shown
node's members on the minimap and each context's activation by its dominant child (one colour per
child rank, stable over the map), and a legend lists the shown node's children: which latent of
B each colour is, its decoder cosine with the map's latent, its share of the node, and the other
nodes it dominates. So both faces of feature splitting show: a node whose members split between
children (several colours, several legend lines) and a child spread over several nodes (the
nodes listed on its line). The file is read once, in a worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from vista_tui.core.sanitize import sanitize
from vista_tui.mapdata import MapError
from vista_tui.tui.controllers import MapView
from vista_tui.tui.widgets.child_palette import SWATCH, child_style
from vista_tui.tui.widgets.contexts import ContextList
from vista_tui.tui.widgets.minimap import Minimap

if TYPE_CHECKING:
    from vista_tui.core.cross_sae import ChildOverlay

LEGEND = "#children-legend"


class ChildrenController:
    """The map screen's child overlay: read `children.json`, colour the minimap and contexts, draw the legend."""

    class Read(Message):
        """A worker read the map's children (posted from its thread)."""

        def __init__(self, overlay: ChildOverlay | None, error: str | None) -> None:
            self.overlay = overlay
            self.error = error
            """Why there is no overlay: no children.json, or one that cannot be read."""
            super().__init__()

    def __init__(self, view: MapView) -> None:
        self.view = view
        self.overlay: ChildOverlay | None = None
        """The map's children once read."""
        self.shown = False
        """Whether the overlay is on."""

    def toggle(self) -> None:
        """`C`: the overlay on (reading the file the first time) or off."""
        if self.shown:
            self._hide()
        elif self.overlay is not None:
            self._show()
        else:
            self.view.run_worker(
                self._read,
                thread=True,
                exclusive=True,
                group="children",
                exit_on_error=False,
                description="read the map's children",
            )

    def _read(self) -> None:
        """In a worker: children.json, checked against the map."""
        from vista_tui.core.cross_sae import child_overlay, no_children_message  # not for the map's first frame
        from vista_tui.mapdata.children import read_children

        model = self.view.model
        try:
            children = read_children(model.reader.path)
            if children is None:
                self.view.post_message(self.Read(None, no_children_message(model.map_id)))
                return
            overlay = child_overlay(children, model.n_contexts, model.root.node_id, model.walk())
        except MapError as error:
            self.view.post_message(self.Read(None, str(error)))
            return
        self.view.post_message(self.Read(overlay, None))

    def read(self, event: Read) -> None:
        """The file arrived: show the overlay, or say why there is none."""
        if event.overlay is None:
            from vista_tui.core.cross_sae import no_children_message  # loaded by `_read` already

            self.view.notify(
                sanitize(event.error or no_children_message(self.view.model.map_id), 400),
                severity="warning",
                timeout=8,
                markup=False,
            )
            return
        self.overlay = event.overlay
        self._show()

    def _show(self) -> None:
        overlay = self.overlay
        assert overlay is not None
        self.shown = True
        ranks = overlay.ranks
        self.view.query_one("#minimap", Minimap).set_child_ranks(ranks)
        styles = {rank: child_style(rank) for rank in set(ranks.tolist()) if rank >= 0}
        self.view.query_one("#contexts", ContextList).set_row_tint(lambda row: styles.get(int(ranks[row])))
        self.view.query_one(LEGEND, Static).add_class("-visible")
        self.show_node(self.view.selected)

    def _hide(self) -> None:
        self.shown = False
        self.view.query_one("#minimap", Minimap).set_child_ranks(None)
        self.view.query_one("#contexts", ContextList).set_row_tint(None)
        self.view.query_one(LEGEND, Static).remove_class("-visible")

    def show_node(self, node_id: str | None) -> None:
        """The legend of the shown node (while the overlay is on)."""
        if not self.shown or self.overlay is None or node_id is None:
            return
        self.view.query_one(LEGEND, Static).update(legend(self.overlay, node_id, lambda n: self.view.model.title(n, 1)))


def legend(overlay: ChildOverlay, node_id: str, title_of: Callable[[str], str]) -> Group:
    """The legend: a heading on one line (cut with an ellipsis), then a colour swatch and
    a line per child, which wraps (file text sanitized)."""
    heading = Text(sanitize(overlay.title(), 200), style="bold", no_wrap=True, overflow="ellipsis")
    body = Text()
    for line in overlay.lines(node_id, title_of):
        if body:
            body.append("\n")
        body.append(SWATCH if line.rank >= 0 else "·", child_style(line.rank) if line.rank >= 0 else Style(dim=True))
        body.append(" " + sanitize(line.text, 400))
    return Group(heading, body)
