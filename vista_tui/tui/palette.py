"""Command palette providers (Ctrl+P), built from the current map and store.

The provider sees the screen it serves only as a `PaletteTarget` (the map screen satisfies
it), so this module never imports the screen that lists it in its COMMANDS.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from vista_tui.core.model import MapModel


class PaletteTarget(Protocol):
    """What the palette needs of the screen it serves."""

    model: MapModel

    def jump_to(self, node_id: str) -> None:
        """Select a node, unfolding the tree to it."""

    async def run_action(self, action: str) -> Any:
        """Run one of the screen's actions (`app.` ones reach the app)."""


# (title, action on the map screen, help)
MAP_ACTIONS = [
    ("Search the map", "search", "labels, keywords and context text (/)"),
    ("Zoom to the selected subtree", "zoom", "z"),
    ("Show the whole tree", "unzoom", "Z"),
    ("Next search hit", "next_hit", "n"),
    ("Statistics of the latent and the selected node", "stats", "density, histograms, logits, quantile examples (s)"),
    ("Help: every key", "app.help", "? or F1"),
    ("Open another map", "app.pick_map", "the map picker"),
    ("Quit", "app.quit", "q"),
]


class NodeCommands(Provider):
    """Jump to a node by label or id, open another map, or run any action of the map screen."""

    @property
    def map_screen(self) -> PaletteTarget:
        """The screen the palette was opened on (the map screen lists this provider)."""
        return cast(PaletteTarget, self.screen)

    def _entries(self) -> list[tuple[str, object, str]]:
        screen = self.map_screen
        model = screen.model
        entries: list[tuple[str, object, str]] = []
        for node_id in model.walk():
            node = model.nodes[node_id]
            title = model.title(node_id, 4)
            entries.append(
                (
                    f"Go to {title} [{node_id[:8]}]",
                    partial(screen.jump_to, node_id),
                    f"{node.size} contexts, depth {node.depth}",
                )
            )
        for title, action, help_text in MAP_ACTIONS:
            entries.append((title, partial(self._run, action), help_text))
        for entry in self.app.store_entries():  # type: ignore[attr-defined]
            if entry.manifest is not None and entry.map_id != model.map_id:
                entries.append(
                    (
                        f"Open map {entry.map_id}",
                        partial(self.app.open_map, entry.path),
                        f"latent {entry.manifest.provenance.latent}",
                    )  # type: ignore[attr-defined]
                )
        return entries

    async def _run(self, action: str) -> None:
        await self.map_screen.run_action(action)

    async def discover(self) -> Hits:
        for title, callback, help_text in self._entries():
            if not title.startswith("Go to"):
                yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)  # type: ignore[arg-type]
