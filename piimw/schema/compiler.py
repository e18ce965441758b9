"""Compile a schema into a plan: follow ``$ref`` and combinators once, at start-up.

Subschemas that apply to the same value (``allOf``/``anyOf``/``oneOf``, ``$ref``, ``if``/
``then``/``else``) are merged into one node. A node is memoised by the set of schema
locations it stands for, which makes recursive schemas finite (the trie gets a cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import re2

from piimw.errors import SchemaError
from piimw.plan import Node, Plan, entries_of
from piimw.schema.loader import SchemaStore, escape_token
from piimw.schema.tags import Tag, tag_of

Loc = tuple[str, str]  # (document URI, JSON pointer)

_MERGE_KEYS = ("allOf", "anyOf", "oneOf")
_SINGLE_MERGE_KEYS = ("then", "else", "$ref", "$dynamicRef")


class Compiler:
    """Turns schema locations into plan nodes. One compiler per :class:`SchemaStore`."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._memo: dict[frozenset[Loc], Node] = {}
        self._pattern_cache: dict[str, Any] = {}

    def compile(self, uri: str, pointer: str = "", name: str = "") -> Plan:
        node = self._node(frozenset({(uri, pointer)}))
        root = _prune(node)
        source = self.store.names.get(uri, uri)
        return Plan(root=root, entries=entries_of(root, source), source=source,
                    name=name or f"{source}#{pointer}", schema_uri=uri, schema_pointer=pointer)

    # -- expansion ------------------------------------------------------------------------
    def _expand(self, locs: frozenset[Loc]) -> list[tuple[Loc, Any]]:
        """All schema objects that apply to one value, following refs and combinators."""
        out: list[tuple[Loc, Any]] = []
        seen: set[Loc] = set()
        todo = list(locs)
        while todo:
            loc = todo.pop()
            if loc in seen:
                continue
            seen.add(loc)
            uri, ptr = loc
            schema = self.store.at(uri, ptr)
            if not isinstance(schema, Mapping):
                if isinstance(schema, bool):
                    continue
                raise SchemaError(
                    f"expected a schema object, found {type(schema).__name__}",
                    source=self.store.names.get(uri, uri), pointer=ptr,
                )
            out.append((loc, schema))
            for key in _SINGLE_MERGE_KEYS:
                sub = schema.get(key)
                if sub is None:
                    continue
                if key in ("$ref", "$dynamicRef"):
                    if not isinstance(sub, str):
                        raise SchemaError(f"{key} must be a string",
                                          source=self.store.names.get(uri, uri),
                                          pointer=f"{ptr}/{key}")
                    base = self.store.base_uri(uri, ptr)
                    ref_uri, ref_ptr, _ = self.store.resolve(
                        base, sub, source=self.store.names.get(uri, uri), pointer=f"{ptr}/{key}")
                    todo.append((ref_uri, ref_ptr))
                else:
                    todo.append((uri, f"{ptr}/{key}"))
            for key in _MERGE_KEYS:
                subs = schema.get(key)
                if isinstance(subs, list):
                    todo.extend((uri, f"{ptr}/{key}/{i}") for i in range(len(subs)))
            dep = schema.get("dependentSchemas")
            if isinstance(dep, Mapping):
                todo.extend((uri, f"{ptr}/dependentSchemas/{escape_token(k)}") for k in dep)
        return out

    # -- node building --------------------------------------------------------------------
    def _node(self, locs: frozenset[Loc]) -> Node:
        hit = self._memo.get(locs)
        if hit is not None:
            return hit
        node = Node()
        self._memo[locs] = node
        schemas = self._expand(locs)
        props: dict[str, set[Loc]] = {}
        items: set[Loc] = set()
        prefix: dict[int, set[Loc]] = {}
        additional: set[Loc] = set()
        patterns: dict[str, set[Loc]] = {}
        types: list[str] = []
        tag: Tag | None = None
        for (uri, ptr), schema in schemas:
            source = self.store.names.get(uri, uri)
            t = tag_of(schema, source, ptr)
            if t is not None:
                tag = t if tag is None else tag.merge(t)
            st = schema.get("type")
            if isinstance(st, str):
                types.append(st)
            elif isinstance(st, list):
                types.extend(x for x in st if isinstance(x, str))
            p = schema.get("properties")
            if isinstance(p, Mapping):
                for k in p:
                    props.setdefault(k, set()).add((uri, f"{ptr}/properties/{escape_token(k)}"))
            pp = schema.get("patternProperties")
            if isinstance(pp, Mapping):
                for k in pp:
                    patterns.setdefault(k, set()).add(
                        (uri, f"{ptr}/patternProperties/{escape_token(k)}"))
            for key in ("additionalProperties", "unevaluatedProperties"):
                if isinstance(schema.get(key), Mapping):
                    additional.add((uri, f"{ptr}/{key}"))
            it = schema.get("items")
            if isinstance(it, Mapping):
                items.add((uri, f"{ptr}/items"))
            elif isinstance(it, list):  # draft 7 tuple form
                for i in range(len(it)):
                    prefix.setdefault(i, set()).add((uri, f"{ptr}/items/{i}"))
            pi = schema.get("prefixItems")
            if isinstance(pi, list):
                for i in range(len(pi)):
                    prefix.setdefault(i, set()).add((uri, f"{ptr}/prefixItems/{i}"))
            for key in ("additionalItems", "unevaluatedItems"):
                if isinstance(schema.get(key), Mapping):
                    items.add((uri, f"{ptr}/{key}"))
        node.tag = tag
        node.types = tuple(dict.fromkeys(types)) or None
        if tag is not None and tag.categories:
            return node  # the whole value is PII; children need no plan of their own
        node.props = {k: self._node(frozenset(v)) for k, v in props.items()}
        if items:
            node.items = self._node(frozenset(items))
        if prefix:
            node.prefix = tuple(
                self._node(frozenset(prefix[i])) if i in prefix else None
                for i in range(max(prefix) + 1)
            )
        if additional:
            node.additional = self._node(frozenset(additional))
        if patterns:
            node.patterns = tuple(
                (self._matcher(k, v), self._node(frozenset(v))) for k, v in patterns.items()
            )
        return node

    def _matcher(self, pattern: str, locs: set[Loc]) -> Any:
        rx = self._pattern_cache.get(pattern)
        if rx is None:
            uri, ptr = next(iter(locs))
            try:
                rx = re2.compile(pattern)
            except re2.error:
                raise SchemaError("patternProperties key is not a valid regular expression",
                                  source=self.store.names.get(uri, uri), pointer=ptr) from None
            self._pattern_cache[pattern] = rx
        search = rx.search
        return lambda key: search(key) is not None


def _prune(root: Node) -> Node | None:
    """Drop branches that lead to no tag; keep cycles that do. Returns None for an empty plan."""
    useful: dict[int, bool] = {}

    def children(n: Node) -> list[Node]:
        out = list(n.props.values())
        out.extend(p for p in n.prefix if p is not None)
        if n.items is not None:
            out.append(n.items)
        if n.additional is not None:
            out.append(n.additional)
        out.extend(c for _, c in n.patterns)
        return out

    # Collect all nodes, then iterate to a fixpoint (handles cycles).
    nodes: dict[int, Node] = {}
    stack = [root]
    while stack:
        n = stack.pop()
        if id(n) in nodes:
            continue
        nodes[id(n)] = n
        stack.extend(children(n))
    for n in nodes.values():
        useful[id(n)] = n.tag is not None
    changed = True
    while changed:
        changed = False
        for n in nodes.values():
            if not useful[id(n)] and any(useful[id(c)] for c in children(n)):
                useful[id(n)] = True
                changed = True
    for n in nodes.values():
        n.props = {k: c for k, c in n.props.items() if useful[id(c)]}
        n.prefix = tuple(p if p is not None and useful[id(p)] else None for p in n.prefix)
        if not any(n.prefix):
            n.prefix = ()
        if n.items is not None and not useful[id(n.items)]:
            n.items = None
        if n.additional is not None and not useful[id(n.additional)]:
            n.additional = None
        n.patterns = tuple((m, c) for m, c in n.patterns if useful[id(c)])
    return root if useful[id(root)] else None
