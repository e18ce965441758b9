"""Plans: what a schema compiles to, and the walk that applies one to a document.

A plan is a trie of :class:`Node` s that mirrors the shape of the data (properties, array
items, additional and pattern properties); a node may point back to an ancestor for recursive
schemas. Only branches that lead to a tag are kept, so the walk touches nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from piimw.schema.tags import Tag


class Node:
    """One position in the data shape. Mutable while compiling, treated as frozen after."""

    __slots__ = ("additional", "combos", "items", "patterns", "prefix", "props", "tag",
                 "types")

    def __init__(self) -> None:
        self.tag: Tag | None = None
        self.props: dict[str, Node] = {}
        self.items: Node | None = None
        self.prefix: tuple[Node | None, ...] = ()
        self.additional: Node | None = None
        #: ``patternProperties`` matchers; ``combos`` maps the bit mask of those a key
        #: matches to the node for that key (-1: any mask not listed), ``additional`` is
        #: the node for a key that matches none. A declared key is in ``props`` alone.
        self.patterns: tuple[Callable[[str], bool], ...] = ()
        self.combos: dict[int, Node | None] = {}
        self.types: tuple[str, ...] | None = None

    def child_for_key(self, key: str) -> Node | None:
        hit = self.props.get(key)
        if hit is not None:
            return hit
        if self.patterns:
            mask = 0
            for i, match in enumerate(self.patterns):
                if match(key):
                    mask |= 1 << i
            if mask:
                return self.combos[mask] if mask in self.combos else self.combos.get(-1)
        return self.additional

    def child_for_index(self, index: int) -> Node | None:
        if index < len(self.prefix):
            return self.prefix[index]
        return self.items

    def is_empty(self) -> bool:
        return (self.tag is None and not self.props and self.items is None
                and not any(self.prefix) and self.additional is None and not self.patterns)


@dataclass(frozen=True)
class PlanEntry:
    """One tagged path, for humans and the data map: ``/users/*/email`` is an email."""

    pattern: str
    tag: Tag
    source: str


@dataclass
class Plan:
    """A compiled schema: the root of the trie plus a flat list of its tagged paths."""

    root: Node | None
    entries: tuple[PlanEntry, ...] = ()
    source: str = ""
    name: str = ""
    schema_uri: str = ""
    schema_pointer: str = ""
    #: Every property name the schema declares (tagged or not): the developer chose these
    #: keys, so they are never read for personal data as a client's keys are.
    names: frozenset[str] = frozenset()
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def empty(self) -> bool:
        return self.root is None

    def __iter__(self) -> Iterator[PlanEntry]:
        return iter(self.entries)


#: How many paths :func:`entries_of` lists one node under (a component used in more places
#: of one schema is listed at the first ones).
_PATHS_PER_NODE = 32


def entries_of(root: Node | None, source: str = "") -> tuple[PlanEntry, ...]:
    """Flatten a trie into path patterns (``*`` for any index or key; ``~`` for a pattern key)."""
    out: list[PlanEntry] = []
    stack: set[int] = set()
    # A node reached again at the same path adds nothing new, and one is described from at
    # most _PATHS_PER_NODE paths (each node at least once, so every tag is listed): every
    # simple path through a recursive plan was walked, exponential in its nodes (polymorphic
    # OpenAPI components referring to one another never finished compiling).
    done: set[tuple[int, str]] = set()
    times: dict[int, int] = {}

    def visit(node: Node, path: str, depth: int) -> None:
        key = id(node)
        if key in stack or (key, path) in done or times.get(key, 0) >= _PATHS_PER_NODE:
            return  # recursion: the first level describes the rest
        done.add((key, path))
        times[key] = times.get(key, 0) + 1
        stack.add(key)
        try:
            _visit_children(node, path, depth)
        finally:
            stack.discard(id(node))

    def _visit_children(node: Node, path: str, depth: int) -> None:
        if node.tag is not None:
            out.append(PlanEntry(path or "/", node.tag, source))
            if node.tag.categories:
                return
        for k, child in node.props.items():
            visit(child, f"{path}/{k.replace('~', '~0').replace('/', '~1')}", depth + 1)
        for i, p in enumerate(node.prefix):
            if p is not None:
                visit(p, f"{path}/{i}", depth + 1)
        if node.items is not None:
            visit(node.items, f"{path}/*", depth + 1)
        if node.additional is not None:
            visit(node.additional, f"{path}/*", depth + 1)
        for combo in node.combos.values():
            if combo is not None:
                visit(combo, f"{path}/*", depth + 1)

    if root is not None:
        visit(root, "", 0)
    uniq: dict[tuple[str, Tag], PlanEntry] = {}
    for e in out:
        uniq.setdefault((e.pattern, e.tag), e)
    return tuple(uniq.values())
