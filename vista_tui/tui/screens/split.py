"""`|`: two maps side by side, each with its cluster tree and minimap; the other follows the matched node.

The cursor is on one side (Tab switches); the other side moves to the node that shares the most
contexts with it (`vista_tui.core.cross_sae.match_nodes`: the maps share context ids when they
come from one corpus), or says "no matching node" when none shares enough. The matching was
computed in a worker before this screen opened. Esc or Backspace on the top node goes back.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Static

from vista_tui.core.cross_sae import MIN_JACCARD, NodeMatch
from vista_tui.core.model import MapModel
from vista_tui.core.sanitize import sanitize
from vista_tui.tui.screens.loading import map_header
from vista_tui.tui.widgets.cluster_tree import ClusterTreeView
from vista_tui.tui.widgets.footer import ActionFooter
from vista_tui.tui.widgets.minimap import Minimap

SIDES = ("left", "right")


class SplitScreen(Screen[None]):
    """Two maps of one corpus side by side; the side without the cursor follows the matched node."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab,shift+tab", "switch_side", "Switch side", tooltip="Put the cursor on the other map"),
        Binding("escape,vertical_line", "close", "Back", tooltip="Back to the map (Esc or |)"),
    ]

    DEFAULT_CSS = """
    SplitScreen #split-body { height: 1fr; }
    SplitScreen .split-side { width: 1fr; }
    SplitScreen .split-header {
        height: 1; background: $primary-background; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis;
    }
    SplitScreen .split-follow { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; }
    SplitScreen ClusterTreeView {
        height: 1fr; scrollbar-gutter: stable; scrollbar-size-vertical: 1; overflow-x: hidden;
        border: round $primary 50%; border-title-color: $text-accent;
    }
    SplitScreen ClusterTreeView:focus { border: round $accent; }
    SplitScreen Minimap { height: 9; border: round $primary 50%; }
    SplitScreen.-tall Minimap { height: 17; }
    SplitScreen.-short Minimap { display: none; }
    """

    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]] | None] = [(0, "-short"), (24, "-standard"), (40, "-tall")]
    """Below 24 rows no minimaps; from 40 rows bigger ones."""

    def __init__(
        self,
        left: MapModel,
        right: MapModel,
        left_to_right: dict[str, NodeMatch],
        right_to_left: dict[str, NodeMatch],
        start: str | None = None,
    ) -> None:
        super().__init__()
        self.models = (left, right)
        self.matches = (left_to_right, right_to_left)
        """Per side, each of its nodes' matching node on the other side."""
        self.start = start or left.root.node_id
        self.leader = 0
        """The side with the cursor (0 left, 1 right); the other follows."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="split-body"):
            for side, model in zip(SIDES, self.models, strict=True):
                with Vertical(classes="split-side", id=f"split-{side}"):
                    yield Static(map_header(model.manifest), classes="split-header")
                    yield ClusterTreeView(model, id=f"tree-{side}")
                    yield Static(classes="split-follow", id=f"follow-{side}")
                    yield Minimap(model, id=f"minimap-{side}")
        yield ActionFooter()

    def tree(self, side: int) -> ClusterTreeView:
        return self.query_one(f"#tree-{SIDES[side]}", ClusterTreeView)

    def minimap(self, side: int) -> Minimap:
        return self.query_one(f"#minimap-{SIDES[side]}", Minimap)

    def on_mount(self) -> None:
        for side in (0, 1):
            tree = self.tree(side)
            tree.border_title = "clusters · cursor" if side == self.leader else "clusters · following"
            tree.follow = lambda node_id, side=side: self._moved(side, node_id)
            self.minimap(side).border_title = "map"
        self.tree(0).select_node(self.start)
        self._moved(0, self.start)
        self.tree(0).focus()

    def _moved(self, side: int, node_id: str) -> None:
        """A side's cursor moved: its minimap follows; if it leads, the other side goes to the matched node."""
        self.minimap(side).show_node(node_id)
        if side != self.leader:
            return
        other = 1 - side
        match = self.matches[side].get(node_id, NodeMatch(None, 0.0, 0))
        self.query_one(f"#follow-{SIDES[side]}", Static).update("")
        self.query_one(f"#follow-{SIDES[other]}", Static).update(follow_line(match, self.models[other]))
        if match.node_id is not None:
            self.tree(other).select_node(match.node_id)
            self.minimap(other).show_node(match.node_id)

    @property
    def followed(self) -> str | None:
        """The node the following side shows."""
        return self.tree(1 - self.leader).selected

    def action_switch_side(self) -> None:
        """Tab: the cursor goes to the other map, which now leads."""
        self.leader = 1 - self.leader
        for side in (0, 1):
            self.tree(side).border_title = "clusters · cursor" if side == self.leader else "clusters · following"
        tree = self.tree(self.leader)
        tree.focus()
        if tree.selected is not None:
            self._moved(self.leader, tree.selected)

    @on(ClusterTreeView.AtTop)
    def _at_top(self, event: ClusterTreeView.AtTop) -> None:
        event.stop()
        self.action_close()

    @on(ClusterTreeView.LeafOpened)
    def _leaf(self, event: ClusterTreeView.LeafOpened) -> None:
        event.stop()  # no contexts pane here

    def action_close(self) -> None:
        """Esc: back to the map."""
        self.dismiss(None)


def follow_line(match: NodeMatch, model: MapModel) -> Text:
    """What the following side says about its node: the match and how good it is, or that there is none."""
    if match.node_id is None:
        return Text(
            f"no matching node (best Jaccard {match.jaccard:.2f}, below {MIN_JACCARD:.2f}): shared contexts too few",
            style="italic",
        )
    return Text(
        sanitize(
            f"matched: {model.title(match.node_id)} · Jaccard {match.jaccard:.2f} · {match.shared:,} contexts shared",
            300,
        )
    )
