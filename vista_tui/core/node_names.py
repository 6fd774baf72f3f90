"""How a person names a node: on the command line (`vista render MAP 1.3`), in the palette, in `vista tree`.

One set of rules, in one place, for every command that takes a node (`render`, `annotate`,
`label --node`) and for the explorer's command palette:

- `root` or `0`: the root.
- a **path**: numbers joined by dots, counting children from 1 in the explorer's order (biggest
  first, a parent's noise last: `display_key`). `1.3` is the third child of the first child of
  the root. `vista tree MAP` prints every node's path.
- a **node id** (16 hex digits), or a **prefix** of one of at least `MIN_PREFIX` characters that
  only one node's id starts with. `vista tree MAP` and `vista summary MAP` print short ids
  (`short_ids`: at least `SHORT_ID` characters, more where two ids share them).

A name of digits alone is a path (`12` is the root's twelfth child). One of `MIN_PREFIX` digits
or more may also be an id prefix: when it names a node both ways it is refused as ambiguous,
never guessed. Anything else is refused with one line that names a few candidates and
`vista tree MAP`. Why so strict: `vista annotate MAP 0` once wrote to whichever node's id
happened to begin with `0`, and nothing said so.

No textual, numpy or pyarrow here: the CLI and the TUI both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vista_tui.mapdata import ClusterNode

MIN_PREFIX = 4
"""The fewest characters of an id that name a node: one to three pick a node by chance."""
SHORT_ID = 8
"""The fewest characters of an id that `vista tree`, `vista summary` and the palette show."""
SHOWN_CANDIDATES = 5
"""How many candidates an ambiguous name's error lists."""
ROOT_NAMES = ("root", "0")
"""The names of the root besides its id."""
TREE_HINT = "`vista tree {map}` shows every node's id and path"
"""How an error tells where the names are."""

_PATH = re.compile(r"\d+(?:\.\d+)*")


class NodeNameError(ValueError):
    """A name that does not pick exactly one node; str(error) is the one line shown."""


def display_key(node: ClusterNode) -> tuple[bool, int, str]:
    """The explorer's order of siblings: clusters before the parent's noise, biggest first, then by id."""
    return (node.kind == "noise", -int(node.size), node.node_id)


def children_in_display_order(nodes: Sequence[ClusterNode]) -> dict[str, list[str]]:
    """Every node's children ids in display order (`display_key`); nodes are parents before children."""
    children: dict[str, list[ClusterNode]] = {node.node_id: [] for node in nodes}
    for node in nodes[1:]:
        if node.parent_id in children:
            children[node.parent_id].append(node)
    return {parent: [kid.node_id for kid in sorted(kids, key=display_key)] for parent, kids in children.items()}


def short_ids(ids: Iterable[str], min_length: int = SHORT_ID) -> dict[str, str]:
    """Each id cut to its shortest prefix no other id shares, and to at least `min_length` characters."""
    ordered = sorted(set(ids))
    short: dict[str, str] = {}
    for index, node_id in enumerate(ordered):
        shared = 0
        for other in ordered[max(0, index - 1) : index] + ordered[index + 1 : index + 2]:
            common = 0
            while common < min(len(node_id), len(other)) and node_id[common] == other[common]:
                common += 1
            shared = max(shared, common)
        short[node_id] = node_id[: max(min_length, shared + 1)]
    return short


class NodeNames:
    """A map's nodes as people name them: paths, short ids, and `resolve` (the module's rules)."""

    def __init__(self, nodes: Sequence[ClusterNode], map_name: str) -> None:
        """Index `nodes` (a map's tree: root first, parents before children); `map_name` goes into errors."""
        if not nodes:
            raise ValueError(f"map {map_name} has no nodes")
        self.map_name = map_name
        self.root_id = nodes[0].node_id
        self.nodes: dict[str, ClusterNode] = {node.node_id: node for node in nodes}
        self.children = children_in_display_order(nodes)
        """Node id → its children's ids in display order."""
        self.paths: dict[str, str] = dict(self._numbered())
        """Node id → its path (`0` for the root, `1.3` for the third child of the first child), in
        display order, depth first."""
        self.short = short_ids(self.nodes)
        """Node id → its short id (see `short_ids`)."""

    def _numbered(self) -> list[tuple[str, str]]:
        """(node id, path) in display order, depth first, from the root."""
        out: list[tuple[str, str]] = []
        stack: list[tuple[str, str]] = [(self.root_id, "0")]
        while stack:
            node_id, path = stack.pop()
            out.append((node_id, path))
            prefix = "" if node_id == self.root_id else path + "."
            kids = self.children.get(node_id, [])
            stack.extend((kid, f"{prefix}{number}") for number, kid in reversed(list(enumerate(kids, start=1))))
        return out

    def walk(self) -> list[str]:
        """Every node id reachable from the root, in display order, depth first."""
        return list(self.paths)

    def label(self, node_id: str) -> str:
        """`a1b2c3d4 (1.3)`: how errors name a candidate."""
        path = self.paths.get(node_id)
        return f"{self.short.get(node_id, node_id)} ({path})" if path else self.short.get(node_id, node_id)

    def _hint(self) -> str:
        """Where to see the names: `vista tree MAP`."""
        return TREE_HINT.format(map=self.map_name)

    def _starting(self, ids: Sequence[str], text: str) -> str:
        """`2 ids start with 'ab': …`: the candidates of a prefix."""
        verb = "id starts" if len(ids) == 1 else "ids start"
        return f"{len(ids)} {verb} with {text!r}: {self._candidates(ids)}"

    def _candidates(self, ids: Sequence[str]) -> str:
        """A few candidates on one line, in display order, with how many more there are."""
        order = {node_id: index for index, node_id in enumerate(self.paths)}  # display order
        ranked = sorted(ids, key=lambda node_id: order.get(node_id, len(order)))
        shown = ", ".join(self.label(node_id) for node_id in ranked[:SHOWN_CANDIDATES])
        more = len(ranked) - SHOWN_CANDIDATES
        return shown + (f" and {more} more" if more > 0 else "")

    def _at_path(self, path: str) -> str | None:
        """The node at a path, or None when the tree has none there (`_path_problem` says why)."""
        node_id = self.root_id
        for step in (int(step) for step in path.split(".")):
            kids = self.children.get(node_id, [])
            if not 1 <= step <= len(kids):
                return None
            node_id = kids[step - 1]
        return node_id

    def _path_problem(self, path: str) -> str:
        """Why no node sits at `path`: a step of 0, or a step past a node's last child."""
        steps = [int(step) for step in path.split(".")]
        if 0 in steps:
            return (
                f"path {path!r} in map {self.map_name}: children are counted from 1 (`1.3` is the third "
                "child of the first; the root is `root` or `0`)"
            )
        node_id, walked = self.root_id, ""
        for step in steps:
            kids = self.children.get(node_id, [])
            if step > len(kids):
                where = f"node {walked}" if walked else "the root"
                count = f"{len(kids)} {'child' if len(kids) == 1 else 'children'}" if kids else "no children"
                return f"map {self.map_name} has no node at path {path}: {where} has {count}"
            node_id = kids[step - 1]
            walked = f"{walked}.{step}" if walked else str(step)
        return f"map {self.map_name} has a node at path {path}"  # not reached: _at_path found none

    def _by_prefix(self, prefix: str) -> list[str]:
        """The ids that start with `prefix` (lower case), in tree order."""
        return [node_id for node_id in self.nodes if node_id.lower().startswith(prefix)]

    def resolve(self, name: str) -> str:
        """The id of the one node `name` names (see the module's rules); NodeNameError otherwise."""
        text = name.strip()
        lowered = text.lower()
        if not text:
            raise NodeNameError(f"an empty node name; {self._hint()}")
        if lowered in ROOT_NAMES:
            return self.root_id
        if text in self.nodes:
            return text
        if _PATH.fullmatch(text):
            return self._resolve_path(text)
        if len(text) < MIN_PREFIX:
            matches = self._by_prefix(lowered)
            which = f" ({self._starting(matches, text)})" if matches else ""
            raise NodeNameError(
                f"node name {text!r} is too short: give at least {MIN_PREFIX} characters of an id, "
                f"or a path like 1.3{which}; {self._hint()}"
            )
        return self._resolve_prefix(text)

    def _resolve_path(self, text: str) -> str:
        """A name of digits (and dots): a path, unless digits alone are also an id prefix."""
        dotted = "." in text
        prefixed = self._by_prefix(text) if not dotted and len(text) >= MIN_PREFIX else []
        at_path = self._at_path(text)
        if at_path is None:
            if prefixed:
                return self._resolve_prefix(text)
            problem = self._path_problem(text)
            starting = [] if dotted else self._by_prefix(text)
            if starting:  # `8` may have meant an id: say why it is not one
                problem += (
                    f"; digits name a path, an id needs at least {MIN_PREFIX} characters "
                    f"({self._starting(starting, text)})"
                )
            raise NodeNameError(f"{problem}; {self._hint()}")
        if prefixed and prefixed != [at_path]:
            raise NodeNameError(
                f"node name {text!r} is ambiguous in map {self.map_name}: the path {text} is "
                f"{self.label(at_path)}, and {self._starting(prefixed, text)}; give more of the id; {self._hint()}"
            )
        return at_path

    def _resolve_prefix(self, text: str) -> str:
        """The one node whose id starts with `text` (at least MIN_PREFIX characters)."""
        matches = self._by_prefix(text.lower())
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NodeNameError(
                f"node name {text!r} is ambiguous in map {self.map_name}: {self._starting(matches, text)}; "
                f"give more of the id; {self._hint()}"
            )
        raise NodeNameError(f"map {self.map_name} has no node {text!r}; {self._hint()}")


def resolve_node(nodes: Sequence[ClusterNode], map_name: str, name: str) -> str:
    """The id of the node `name` names in a map's tree (module rules); NodeNameError otherwise."""
    return NodeNames(nodes, map_name).resolve(name)
