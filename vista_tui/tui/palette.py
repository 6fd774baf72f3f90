"""Command palette providers (Ctrl+P), built from the current map and store.

The provider sees the screen it serves only as a `PaletteTarget` (the map screen satisfies
it), so this module never imports the screen that lists it in its COMMANDS.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape

from vista_tui.core.node_names import NodeNameError

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
    (
        "Coverage of the published explanation",
        "coverage",
        "its score on each first-level cluster, worst first; Enter selects one (c)",
    ),
    ("Sort the tree worst covered first", "worst_covered", "first-level clusters by coverage; again: size order (w)"),
    ("Matches of this latent in other SAEs", "matches", "decoder/encoder cosines from vista match; Enter opens (M)"),
    ("Colour by child latents of the second SAE", "children", "a map built with --also-sae; legend per node (C)"),
    ("This map and its dominant child's map side by side", "split", "the other follows the matched node (|)"),
    ("Help: every key", "app.help", "? or F1"),
    ("Open another map", "app.pick_map", "the map picker"),
    ("Quit", "app.quit", "q"),
]


class NodeCommands(Provider):
    """Jump to a node by label, path or id, open another map, or run any action of the map screen."""

    @property
    def map_screen(self) -> PaletteTarget:
        """The screen the palette was opened on (the map screen lists this provider)."""
        return cast(PaletteTarget, self.screen)

    def _go_to(self, node_id: str) -> tuple[str, object, str]:
        """The entry that jumps to a node: its title, path and short id (as `vista tree` prints them)."""
        screen = self.map_screen
        model = screen.model
        node = model.nodes[node_id]
        title = model.title(node_id, 4)
        # Escaped: the palette reads a title as markup, and titles are corpus text.
        return (
            escape(f"Go to {title} [{model.names.paths.get(node_id, '?')} · {model.names.short[node_id]}]"),
            partial(screen.jump_to, node_id),
            f"{node.size} contexts, depth {node.depth}",
        )

    def _entries(self) -> list[tuple[str, object, str]]:
        """Every entry: (title, callback, help) for each node, each map action and each other map."""
        screen = self.map_screen
        model = screen.model
        entries: list[tuple[str, object, str]] = [self._go_to(node_id) for node_id in model.walk()]
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

    def _named(self, query: str) -> str | None:
        """The node `query` names (`NodeNames.resolve`), else None: most queries are words of a title."""
        try:
            return self.map_screen.model.names.resolve(query)
        except NodeNameError:
            return None

    async def _run(self, action: str) -> None:
        """Run one of the map screen's actions."""
        await self.map_screen.run_action(action)

    async def discover(self) -> Hits:
        """What the empty palette lists: the actions and the other maps, not every node."""
        for title, callback, help_text in self._entries():
            if not title.startswith("Go to"):
                yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        """Entries matching the query; first, the node it names as `vista` commands take names (a path
        like `1.3`, `root`, or 4 or more characters of an id), when it names one."""
        named = self._named(query)
        named_entry = self._go_to(named) if named is not None else None
        matcher = self.matcher(query)
        hits: list[Hit] = []
        for title, callback, help_text in self._entries():
            if named_entry is not None and title == named_entry[0]:
                continue
            score = matcher.match(title)
            if score > 0:
                hits.append(Hit(score, matcher.highlight(title), callback, help=help_text))  # type: ignore[arg-type]
        if named_entry is not None:
            title, callback, help_text = named_entry
            # Above every fuzzy score (they are not bounded): `1.3` also fuzzily matches `[1.2 · 3f…]`.
            top = max((hit.score for hit in hits), default=0.0) + 1.0
            yield Hit(top, Content.from_markup(title), callback, help=help_text)  # type: ignore[arg-type]
        for hit in hits:
            yield hit


class AtlasTarget(Protocol):
    """What the palette needs of the latent browser."""

    def sort_by(self, key: str) -> None:
        """Order the table by a `SORTS` key."""

    def sorts(self) -> list[str]:
        """The `SORTS` keys this atlas can be ordered by."""

    async def run_action(self, action: str) -> Any:
        """Run one of the screen's actions (`app.` ones reach the app)."""


# (title, action on the latent browser, help)
ATLAS_ACTIONS = [
    ("Search the latents", "search", "top tokens, labels and explanations (/)"),
    ("Filter the latents", "filter", "by latent (l702), top tokens, label or explanation (f, or just type)"),
    ("Next search hit", "next_hit", "n"),
    ("Help: every key", "app.help", "? or F1"),
    ("Open another map or atlas", "app.pick_map", "the picker"),
    ("Quit", "app.quit", "q"),
]


class AtlasCommands(Provider):
    """Sort the latent browser by any column, or run one of its actions."""

    def _entries(self) -> list[tuple[str, object, str]]:
        """(title, callback, help) of each order and each action."""
        from vista_tui.core.atlas_view import SORTS

        screen = cast(AtlasTarget, self.screen)
        entries: list[tuple[str, object, str]] = [
            (f"Sort by {name}", partial(screen.sort_by, key), "o cycles the orders")
            for key, name in SORTS
            if key in screen.sorts()
        ]
        for title, action, help_text in ATLAS_ACTIONS:
            entries.append((title, partial(self._run, action), help_text))
        return entries

    async def _run(self, action: str) -> None:
        """Run one of the browser's actions."""
        await cast(AtlasTarget, self.screen).run_action(action)

    async def discover(self) -> Hits:
        """Every order and action."""
        for title, callback, help_text in self._entries():
            yield DiscoveryHit(title, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        """The orders and actions matching the query."""
        matcher = self.matcher(query)
        for title, callback, help_text in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)  # type: ignore[arg-type]
