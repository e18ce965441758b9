"""Load JSON Schema and OpenAPI documents from files, and resolve ``$ref`` between them.

References are followed inside one document and across the files loaded here, never over
the network: an unknown URI is a start-up error naming the file and pointer.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urldefrag, urljoin

import orjson
import referencing
import referencing.jsonschema

from piimw.errors import SchemaError

DRAFT_2020 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_7 = "http://json-schema.org/draft-07/schema#"
SCHEMA_SUFFIXES = (".json", ".yaml", ".yml")
#: The key of ``$recursiveAnchor: true`` in :attr:`SchemaStore.dynamic_anchors` (no anchor name
#: can be it).
RECURSIVE = "#"
#: Keywords whose values are instances, not schemas: never searched for schema keywords.
_VALUE_KEYWORDS = frozenset({"enum", "const", "example", "examples", "default"})


def escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def read_document(path: Path) -> Any:
    """Parse a JSON or YAML file; errors name the file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SchemaError(f"cannot read file: {e.strerror}", source=str(path)) from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SchemaError(
                "YAML schemas need PyYAML: pip install 'piimw[yaml]'", source=str(path)
            ) from None
        try:
            return yaml.safe_load(data)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise SchemaError(f"invalid YAML{where}", source=str(path)) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise SchemaError(f"invalid JSON at line {e.lineno}, column {e.colno}",
                          source=str(path)) from None


def _openapi_30_to_2020(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 schema quirks (``nullable``, boolean exclusive bounds) to 2020-12."""
    if isinstance(node, list):
        return [_openapi_30_to_2020(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_30_to_2020(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        t = out.get("type")
        if isinstance(t, str):
            out["type"] = [t, "null"]
        elif isinstance(t, list) and "null" not in t:
            out["type"] = [*t, "null"]
        elif "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for bound, key in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if isinstance(out.get(key), bool) and out.pop(key) and bound in out:
            out[key] = out.pop(bound)
    return out


class SchemaStore:
    """All documents one configuration uses, by URI, plus the names to report errors with."""

    def __init__(self) -> None:
        self.documents: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self._anchors: dict[str, tuple[str, str]] = {}
        self._default_spec: str = DRAFT_2020
        #: Every name a ``properties`` keyword declares, in any document: the object keys an
        #: error report may repeat (any other key came from the client and may be PII).
        self.property_names: set[str] = set()
        #: Where each ``$dynamicAnchor`` name (and, under :data:`RECURSIVE`, each
        #: ``$recursiveAnchor: true``) is declared: where a dynamic reference may land.
        self.dynamic_anchors: dict[str, list[tuple[str, str]]] = {}
        self._patterns_checked = 0  # documents whose patterns check_patterns has compiled

    def add_document(self, document: Any, uri: str, name: str | None = None) -> str:
        uri = urldefrag(uri)[0]
        if isinstance(document, Mapping) and str(document.get("openapi", "")).startswith("3.0"):
            document = _openapi_30_to_2020(copy.deepcopy(document))
        self.documents[uri] = document
        self.names[uri] = name or uri
        self._index(document, uri, uri, "")
        return uri

    def add_file(self, path: str | Path) -> str:
        p = Path(path).resolve()
        return self.add_document(read_document(p), p.as_uri(), str(path))

    def add_directory(self, path: str | Path) -> list[str]:
        root = Path(path)
        if not root.is_dir():
            raise SchemaError("schema directory does not exist", source=str(path))
        return [self.add_file(p) for p in sorted(root.rglob("*")) if p.suffix in SCHEMA_SUFFIXES]

    def _index(self, node: Any, base: str, doc_uri: str, pointer: str) -> None:
        """Record ``$id`` and ``$anchor`` locations so references to them resolve."""
        if isinstance(node, dict):
            new_base = base
            sid = node.get("$id")
            if isinstance(sid, str) and pointer:
                new_base = join_uri(base, sid)
                self._anchors.setdefault(urldefrag(new_base)[0], (doc_uri, pointer))
            elif isinstance(sid, str):
                self._anchors.setdefault(urldefrag(join_uri(base, sid))[0], (doc_uri, ""))
            props = node.get("properties")
            if isinstance(props, dict):
                self.property_names.update(k for k in props if isinstance(k, str))
            dyn = node.get("$dynamicAnchor")
            if isinstance(dyn, str):
                self.dynamic_anchors.setdefault(dyn, []).append((doc_uri, pointer))
            if node.get("$recursiveAnchor") is True:
                self.dynamic_anchors.setdefault(RECURSIVE, []).append((doc_uri, pointer))
            for key in ("$anchor", "$dynamicAnchor"):
                anchor = node.get(key)
                if isinstance(anchor, str):
                    self._anchors.setdefault(f"{urldefrag(new_base)[0]}#{anchor}",
                                             (doc_uri, pointer))
            for k, v in node.items():
                if k in _VALUE_KEYWORDS:
                    continue
                self._index(v, new_base, doc_uri, f"{pointer}/{escape_token(str(k))}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self._index(v, base, doc_uri, f"{pointer}/{i}")

    def check_patterns(self) -> None:
        """Every ``pattern`` and ``patternProperties`` key must compile with Python's ``re``:
        jsonschema, the reference validator, compiles them only when a request reaches them,
        and one it cannot compile (``\\p{L}``, fine in ECMA-262) failed every such request."""
        docs = list(self.documents.items())
        for uri, doc in docs[self._patterns_checked:]:
            for pattern, pointer in _patterns(doc, ""):
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise SchemaError(
                        f"regular expression Python's re module cannot compile ({e.msg}); "
                        "piimw validates with jsonschema, which uses it",
                        source=self.names.get(uri, uri), pointer=pointer) from None
        self._patterns_checked = len(docs)

    def base_uri(self, doc_uri: str, pointer: str) -> str:
        """The base URI in force at ``pointer`` (``$id`` on the way down changes it)."""
        base = doc_uri
        node = self.documents[doc_uri]
        if isinstance(node, dict) and isinstance(node.get("$id"), str):
            base = join_uri(base, node["$id"])
        for token in _tokens(pointer):
            node = node[int(token)] if isinstance(node, list) else node[token]
            if isinstance(node, dict) and isinstance(node.get("$id"), str):
                base = join_uri(base, node["$id"])
        return base

    def resolve(self, base: str, ref: str, *, source: str, pointer: str) -> tuple[str, str, Any]:
        """Resolve ``ref`` against ``base``: (document URI, pointer in it, subschema)."""
        target = join_uri(base, ref)
        uri, fragment = urldefrag(target)
        fragment = unquote(fragment)
        if fragment and not fragment.startswith("/"):
            hit = self._anchors.get(f"{uri}#{fragment}")
            if hit is None:
                raise SchemaError(f"$ref {ref!r} names an unknown anchor", source=source,
                                  pointer=pointer)
            return hit[0], hit[1], self.at(hit[0], hit[1])
        doc_uri, prefix = uri, ""
        if uri not in self.documents:
            hit = self._anchors.get(uri)
            if hit is None:
                raise SchemaError(
                    f"$ref {ref!r} cannot be resolved (documents are never fetched over the "
                    "network; load the file into the schema directory)",
                    source=source, pointer=pointer,
                )
            doc_uri, prefix = hit
        full = prefix + fragment
        try:
            return doc_uri, full, self.at(doc_uri, full)
        except (KeyError, IndexError, ValueError, TypeError):
            raise SchemaError(f"$ref {ref!r} points at nothing", source=source,
                              pointer=pointer) from None

    def at(self, doc_uri: str, pointer: str) -> Any:
        node = self.documents[doc_uri]
        for token in _tokens(pointer):
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def registry(self) -> referencing.Registry[Any]:
        """A ``referencing`` registry of every loaded document, with no remote retrieval."""

        reg: referencing.Registry[Any] = referencing.Registry()  # default: never retrieves
        for uri, doc in self.documents.items():
            spec = self._default_spec
            if isinstance(doc, Mapping) and isinstance(doc.get("$schema"), str):
                spec = cast(str, doc["$schema"])
            specification = referencing.jsonschema.specification_with(
                spec, default=referencing.jsonschema.DRAFT202012)
            resource = specification.create_resource(doc)
            reg = reg.with_resource(uri, resource)
            for anchor_uri, (d, p) in self._anchors.items():
                if d == uri and not p and "#" not in anchor_uri and anchor_uri != uri:
                    reg = reg.with_resource(anchor_uri, resource)
        return reg.crawl()

    def iter_documents(self) -> Iterator[tuple[str, Any]]:
        yield from self.documents.items()


def join_uri(base: str, ref: str) -> str:
    """``urljoin`` that also handles fragment-only refs against ``urn:`` bases."""
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    if not base or ":" in ref.split("/", 1)[0]:
        return ref
    return urljoin(base, ref)


def _objects(node: Any, pointer: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every object under ``node`` with its JSON pointer, in document order; values
    (``enum``, ``const``, examples, defaults) are not looked in."""
    if isinstance(node, dict):
        yield node, pointer
        for k, v in node.items():
            if k not in _VALUE_KEYWORDS:
                yield from _objects(v, f"{pointer}/{escape_token(str(k))}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _objects(v, f"{pointer}/{i}")


def _patterns(node: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """(regular expression, its JSON pointer) of every ``pattern`` and ``patternProperties``
    key under ``node``."""
    for obj, at in _objects(node, pointer):
        if isinstance(obj.get("pattern"), str):
            yield obj["pattern"], f"{at}/pattern"
        pp = obj.get("patternProperties")
        if isinstance(pp, dict):
            yield from ((k, f"{at}/patternProperties/{escape_token(k)}") for k in pp
                        if isinstance(k, str))


def references(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """(reference, the JSON pointer of the schema holding it) of every ``$ref``,
    ``$dynamicRef`` and ``$recursiveRef`` under ``node``."""
    for obj, at in _objects(node, pointer):
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            if isinstance(obj.get(key), str):
                yield obj[key], at


def _tokens(pointer: str) -> list[str]:
    if not pointer:
        return []
    if not pointer.startswith("/"):
        raise ValueError("not a JSON pointer")
    return [unescape_token(t) for t in pointer[1:].split("/")]
