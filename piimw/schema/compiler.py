"""Compile a schema into a plan: follow ``$ref`` and combinators once, at start-up.

Subschemas that apply to the same value (``allOf``/``anyOf``/``oneOf``, ``$ref``, ``if``/
``then``/``else``) are merged into one node. A node is memoised by the set of schema
locations it stands for, which makes recursive schemas finite (the trie gets a cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag

import re2

from piimw.errors import SchemaError
from piimw.plan import Node, Plan, entries_of
from piimw.schema.loader import RECURSIVE, SchemaStore, escape_token, references
from piimw.schema.tags import Tag, tag_of

Loc = tuple[str, str]  # (document URI, JSON pointer)

_MERGE_KEYS = ("allOf", "anyOf", "oneOf")
_SINGLE_MERGE_KEYS = ("if", "then", "else", "$ref", "$dynamicRef", "$recursiveRef")
#: Schema-valued maps whose every entry may apply to the value (draft 7's ``dependencies``
#: holds schemas or, to be ignored, lists of names).
_MAP_MERGE_KEYS = ("dependentSchemas", "dependencies")
#: Up to this many patterns in one object, every combination of them a key may match gets
#: its own node; beyond, a key matching several takes all patterns' schemas (stricter, never
#: looser). A node per combination of six made 63 per object, 63 x 63 for an object of such
#: objects: start-up took seconds, then minutes, for ordinary nested maps.
_EXACT_PATTERNS = 2


class Compiler:
    """Turns schema locations into plan nodes. One compiler per :class:`SchemaStore`."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store
        self._memo: dict[frozenset[Loc], Node] = {}
        self._pattern_cache: dict[str, Any] = {}
        self._subtype_index: dict[str, dict[Loc, list[Loc]]] = {}
        #: Per node (by id), the keys its schemas declare and its children, as built: pruning
        #: takes untagged branches out of the trie, not out of what the schema declares.
        self._declares: dict[int, tuple[frozenset[str], tuple[Node, ...]]] = {}
        #: Per document, the documents referring to it; built for this many documents.
        self._referrers: tuple[int, dict[str, set[str]]] = (-1, {})

    def compile(self, uri: str, pointer: str = "", name: str = "") -> Plan:
        node = self._node(frozenset({(uri, pointer)}))
        names = self._names(node)
        root = _prune(node)
        source = self.store.names.get(uri, uri)
        return Plan(root=root, entries=entries_of(root, source), source=source,
                    name=name or f"{source}#{pointer}", schema_uri=uri, schema_pointer=pointer,
                    names=names)

    def _names(self, root: Node) -> frozenset[str]:
        """Every property name the schema declares at or below ``root``."""
        out: set[str] = set()
        seen: set[int] = set()
        stack = [root]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            names, children = self._declares.get(id(n), (frozenset(), ()))
            out |= names
            stack.extend(children)
        return frozenset(out)

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
                if key in ("$ref", "$dynamicRef", "$recursiveRef"):
                    if not isinstance(sub, str):
                        raise SchemaError(f"{key} must be a string",
                                          source=self.store.names.get(uri, uri),
                                          pointer=f"{ptr}/{key}")
                    base = self.store.base_uri(uri, ptr)
                    ref_uri, ref_ptr, target = self.store.resolve(
                        base, sub, source=self.store.names.get(uri, uri), pointer=f"{ptr}/{key}")
                    todo.append((ref_uri, ref_ptr))
                    todo.extend(self._dynamic_targets(key, sub, target, uri))
                else:
                    todo.append((uri, f"{ptr}/{key}"))
            for key in _MERGE_KEYS:
                subs = schema.get(key)
                if isinstance(subs, list):
                    todo.extend((uri, f"{ptr}/{key}/{i}") for i in range(len(subs)))
            disc = schema.get("discriminator")
            if isinstance(disc, Mapping):
                todo.extend(self._subtypes(uri, ptr, disc))
            for key in _MAP_MERGE_KEYS:
                dep = schema.get(key)
                if isinstance(dep, Mapping):
                    todo.extend((uri, f"{ptr}/{key}/{escape_token(k)}") for k, v in dep.items()
                                if isinstance(v, Mapping))
        return out

    def _dynamic_targets(self, key: str, ref: str, target: Any, uri: str) -> list[Loc]:
        """Where a dynamic reference (in the document at ``uri``) may land besides its static
        target: every schema with the same dynamic anchor in a document a value can pass
        through on its way there (the one in force depends on how the value was reached,
        which a plan shared by all ways cannot know; a schema extending a recursive one tags
        its nested values so). An unrelated tree declaring the same anchor name is not one."""
        if not isinstance(target, Mapping):
            return []
        if key == "$recursiveRef":
            anchored = target.get("$recursiveAnchor") is True
            name = RECURSIVE
        else:
            name = urldefrag(ref)[1]
            anchored = key == "$dynamicRef" and bool(name) and \
                target.get("$dynamicAnchor") == name
        if not anchored:
            return []
        reaching = self._reaching(uri)
        return [loc for loc in self.store.dynamic_anchors.get(name, []) if loc[0] in reaching]

    def _reaching(self, uri: str) -> set[str]:
        """The document at ``uri`` and those whose references lead to it, through others."""
        built, referrers = self._referrers
        if built != len(self.store.documents):  # documents added since: build again
            referrers = {}
            for doc_uri, doc in self.store.documents.items():
                source = self.store.names.get(doc_uri, doc_uri)
                for ref, ptr in references(doc):
                    try:
                        to = self.store.resolve(self.store.base_uri(doc_uri, ptr), ref,
                                                source=source, pointer=ptr)[0]
                    except SchemaError:
                        continue  # reported where that schema is compiled, if it ever is
                    referrers.setdefault(to, set()).add(doc_uri)
            self._referrers = (len(self.store.documents), referrers)
        out, todo = {uri}, [uri]
        while todo:
            for src in referrers.get(todo.pop(), ()):
                if src not in out:
                    out.add(src)
                    todo.append(src)
        return out

    def _subtypes(self, uri: str, ptr: str, disc: Mapping[str, Any]) -> list[Loc]:
        """OpenAPI's ``discriminator``: a value may be any schema its ``mapping`` names, or
        (without one) any component schema that extends this one with ``allOf``. Such a
        subtype's tagged fields are not in the base schema, so all of them apply."""
        source = self.store.names.get(uri, uri)
        out: list[Loc] = []
        mapping = disc.get("mapping")
        doc = self.store.documents.get(uri)
        comps = doc.get("components") if isinstance(doc, Mapping) else None
        schemas = comps.get("schemas") if isinstance(comps, Mapping) else None
        for name, target in (mapping.items() if isinstance(mapping, Mapping) else ()):
            if not isinstance(target, str):
                continue
            # A component's name, or else a URI reference (OpenAPI 3.1.1): "Dog.yaml" is a
            # file beside this one unless a component is called so.
            ref = f"#/components/schemas/{escape_token(target)}" \
                if isinstance(schemas, Mapping) and target in schemas else target
            ref_uri, ref_ptr, _ = self.store.resolve(
                self.store.base_uri(uri, ptr), ref, source=source,
                pointer=f"{ptr}/discriminator/mapping/{escape_token(str(name))}")
            out.append((ref_uri, ref_ptr))
        return out + self._extending(uri).get((uri, ptr), [])

    def _extending(self, uri: str) -> dict[Loc, list[Loc]]:
        """Component schemas of the document at ``uri`` by the schema their ``allOf`` refers
        to: ``{Pet: [Dog, Cat]}`` for ``Dog: {allOf: [{$ref: Pet}, ...]}``."""
        hit = self._subtype_index.get(uri)
        if hit is not None:
            return hit
        index: dict[Loc, list[Loc]] = {}
        self._subtype_index[uri] = index
        doc = self.store.documents[uri]
        comps = doc.get("components") if isinstance(doc, Mapping) else None
        schemas = comps.get("schemas") if isinstance(comps, Mapping) else None
        for name, sub in (schemas.items() if isinstance(schemas, Mapping) else ()):
            at = f"/components/schemas/{escape_token(str(name))}"
            parts = sub.get("allOf") if isinstance(sub, Mapping) else None
            for i, part in enumerate(parts if isinstance(parts, list) else ()):
                if not isinstance(part, Mapping) or not isinstance(part.get("$ref"), str):
                    continue
                try:
                    base = self.store.resolve(
                        self.store.base_uri(uri, at), part["$ref"],
                        source=self.store.names.get(uri, uri), pointer=f"{at}/allOf/{i}/$ref")
                except SchemaError:
                    continue  # reported where that schema is compiled, if it ever is
                index.setdefault(base[:2], []).append((uri, at))
        return index

    # -- node building --------------------------------------------------------------------
    def _node(self, locs: frozenset[Loc]) -> Node:
        hit = self._memo.get(locs)
        if hit is not None:
            return hit
        node = Node()
        self._memo[locs] = node
        shapes: list[_Shape] = []
        types: list[str] = []
        tag: Tag | None = None
        for (uri, ptr), schema in self._expand(locs):
            t = tag_of(schema, self.store.names.get(uri, uri), ptr)
            if t is not None:
                tag = t if tag is None else tag.merge(t)
            st = schema.get("type")
            if isinstance(st, str):
                types.append(st)
            elif isinstance(st, list):
                types.extend(x for x in st if isinstance(x, str))
            shapes.append(_Shape.of(uri, ptr, schema))
        node.tag = tag
        node.types = tuple(dict.fromkeys(types)) or None
        names = frozenset(k for sh in shapes for k in sh.props)
        if tag is not None and tag.categories:
            self._declares[id(node)] = (names, ())
            return node  # the whole value is PII; children need no plan of their own
        self._object_children(node, shapes)
        self._array_children(node, shapes)
        self._declares[id(node)] = (names, (
            *node.props.values(), *(c for c in (*node.prefix, node.items, node.additional,
                                                 *node.combos.values()) if c is not None)))
        return node

    def _object_children(self, node: Node, shapes: list[_Shape]) -> None:
        """Every subschema that applies to a key, as JSON Schema applies them: a declared
        property, the patterns its name matches (those too), and ``additionalProperties``
        of each subschema that neither declares nor matches it."""
        pattern_list = list(dict.fromkeys(p for sh in shapes for p in sh.patterns))
        for key in dict.fromkeys(k for sh in shapes for k in sh.props):
            locs: set[Loc] = set()
            for sh in shapes:
                locs |= sh.for_key(key, {p for p, loc in sh.patterns.items()
                                         if self._matcher(p, loc)(key)})
            node.props[key] = self._node(frozenset(locs))
        node.patterns = tuple(self._matcher(p, loc)
                              for p, loc in ((p, _first(shapes, p)) for p in pattern_list))

        def undeclared(matched: set[str]) -> Node | None:
            locs = set().union(*(sh.for_key(None, matched) for sh in shapes))
            return self._node(frozenset(locs)) if locs else None

        node.additional = undeclared(set())
        if len(pattern_list) <= _EXACT_PATTERNS:
            for mask in range(1, 1 << len(pattern_list)):
                node.combos[mask] = undeclared(
                    {p for i, p in enumerate(pattern_list) if mask >> i & 1})
        else:  # one key matching several of many patterns: all of them and more apply
            for i, p in enumerate(pattern_list):
                node.combos[1 << i] = undeclared({p})
            node.combos[-1] = undeclared(set(pattern_list))

    def _array_children(self, node: Node, shapes: list[_Shape]) -> None:
        """An index takes each subschema's tuple entry for it, or that subschema's schema
        for the items after its tuple (``items``, ``additionalItems``...)."""
        longest = max((len(sh.prefix) for sh in shapes), default=0)
        node.prefix = tuple(
            self._node(frozenset(set().union(*(sh.for_index(i) for sh in shapes))))
            for i in range(longest)
        )
        rest = set().union(*(sh.for_index(longest) for sh in shapes))
        if rest:
            node.items = self._node(frozenset(rest))

    def _matcher(self, pattern: str, loc: Loc) -> Callable[[str], bool]:
        rx = self._pattern_cache.get(pattern)
        if rx is None:
            uri, ptr = loc
            try:
                rx = re2.compile(pattern)
            except re2.error as e:
                why = e.args[0] if e.args else ""
                why = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
                raise SchemaError(
                    f"patternProperties key RE2 cannot compile ({why}); piimw matches object "
                    "keys with RE2, which has no lookaround or backreferences",
                    source=self.store.names.get(uri, uri), pointer=ptr) from None
            self._pattern_cache[pattern] = rx
        search = rx.search
        return lambda key: search(key) is not None


def _first(shapes: list[_Shape], pattern: str) -> Loc:
    return next(sh.patterns[pattern] for sh in shapes if pattern in sh.patterns)


@dataclass
class _Shape:
    """What one subschema says about the children of the value it applies to."""

    props: dict[str, Loc] = field(default_factory=dict)
    patterns: dict[str, Loc] = field(default_factory=dict)
    additional: list[Loc] = field(default_factory=list)
    prefix: list[Loc] = field(default_factory=list)
    rest: list[Loc] = field(default_factory=list)  # items after the tuple
    every: list[Loc] = field(default_factory=list)  # every item (contains)

    @classmethod
    def of(cls, uri: str, ptr: str, schema: Mapping[str, Any]) -> _Shape:
        sh = cls()
        for key, into in (("properties", sh.props), ("patternProperties", sh.patterns)):
            sub = schema.get(key)
            if isinstance(sub, Mapping):
                into.update((k, (uri, f"{ptr}/{key}/{escape_token(k)}")) for k in sub)
        for key in ("additionalProperties", "unevaluatedProperties"):
            if isinstance(schema.get(key), Mapping):
                sh.additional.append((uri, f"{ptr}/{key}"))
        it = schema.get("items")
        tuple_key = "items" if isinstance(it, list) else "prefixItems"  # draft 7 tuple form
        tup = schema.get(tuple_key)
        if isinstance(tup, list):
            sh.prefix = [(uri, f"{ptr}/{tuple_key}/{i}") for i in range(len(tup))]
        rest_keys = ("additionalItems", "unevaluatedItems") + (
            ("items",) if isinstance(it, Mapping) else ())
        sh.rest = [(uri, f"{ptr}/{k}") for k in rest_keys if isinstance(schema.get(k), Mapping)]
        if isinstance(schema.get("contains"), Mapping):  # items it matches: any may be one
            sh.every.append((uri, f"{ptr}/contains"))
        return sh

    def for_key(self, key: str | None, matched: set[str]) -> set[Loc]:
        """The subschemas this one applies to a key (``None``: one it does not declare)
        whose name matches ``matched`` of its patterns."""
        out = {loc for p, loc in self.patterns.items() if p in matched}
        if key is not None and key in self.props:
            out.add(self.props[key])
        elif not out:
            out.update(self.additional)
        return out

    def for_index(self, index: int) -> set[Loc]:
        own = [self.prefix[index]] if index < len(self.prefix) else self.rest
        return {*own, *self.every}


#: The node of a declared property under which nothing is tagged.
_NOTHING = Node()


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
        out.extend(c for c in n.combos.values() if c is not None)
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
        if n.items is not None and not useful[id(n.items)]:
            n.items = None
        n.prefix = tuple(p if p is not None and useful[id(p)] else None for p in n.prefix)
        if not any(n.prefix) and n.items is None:
            n.prefix = ()
        if n.additional is not None and not useful[id(n.additional)]:
            n.additional = None
        n.combos = {m: c if c is not None and useful[id(c)] else None
                    for m, c in n.combos.items()}
        if not any(n.combos.values()):
            n.patterns, n.combos = (), {}
        # A key declared with nothing tagged is not an undeclared one: where patterns or
        # additionalProperties would take it, it keeps a node that tags nothing.
        open_ = bool(n.patterns) or n.additional is not None
        n.props = {k: c if useful[id(c)] else _NOTHING for k, c in n.props.items()
                   if useful[id(c)] or open_}
    return root if useful[id(root)] else None
