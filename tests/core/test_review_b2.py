"""Regressions found by the second review of the compiler and engine changes: findings that
named a key holding personal data, declared keys read as the client's, start-up time."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import piimw
from piimw.engine import Scrubber
from piimw.errors import ConfigError, SchemaError
from piimw.plan import Node, entries_of
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore
from piimw.schema.tags import Tag

_TAGGED = {"properties": {"n": {"x-pii": "name"}, "u": {"type": "object"}}}


@pytest.mark.parametrize("sink", ["log", "client", "app"])
@pytest.mark.parametrize("doc", [
    {"n": "x", "u": {"jane@example.com": {"note": "call +1 415 555 0100"}}},
    {"jane@example.com": 1},
    {"n": "x", "u": [{"jane@example.com": "+1 415 555 0100"}]},
])
def test_findings_never_name_a_key_that_is_personal_data(doc: Any, sink: str) -> None:
    res = Scrubber().scrub(doc, piimw.compile_schema(_TAGGED), sink=sink)  # type: ignore[arg-type]
    assert res.findings
    for f in res.findings:
        assert "jane@" not in f.location
        assert "jane@" not in f.pattern
    assert "jane@" not in repr(res.rejected_path)


def test_a_finding_names_a_rewritten_key_as_written() -> None:
    res = Scrubber().scrub({"jane@example.com": {"p": "+1 415 555 0100"}}, None)
    assert sorted(f.location for f in res.findings) == [
        "/[REDACTED:email]", "/[REDACTED:email]/p"]


def test_keys_the_schema_declares_are_not_read_with_detectors_on() -> None:
    schema = {"properties": {"jane@example.com": {"type": "integer"}, "n": {"x-pii": "name"},
                             "ids": {"properties": {"+14155552671": {"type": "string"}}}}}
    doc = {"jane@example.com": 1, "n": "x", "ids": {"+14155552671": "a"}}
    plan = piimw.compile_schema(schema)
    for sink in ("log", "client"):
        out = Scrubber().scrub(doc, plan, sink=sink).value  # type: ignore[arg-type]
        assert out["jane@example.com"] == 1
        assert out["ids"] == {"+14155552671": "a"}
    # a key nobody declared is still read
    assert Scrubber().scrub({"n": "x", "u": {"john@example.com": 1}}, plan).value["u"] == {
        "[REDACTED:email]": 1}


@contextmanager
def _within(seconds: int) -> Iterator[None]:
    def stop(*_: Any) -> None:
        raise TimeoutError(f"took more than {seconds}s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_tagged_paths_of_a_densely_recursive_plan_are_listed_quickly() -> None:
    nodes = [Node() for _ in range(11)]
    for n in nodes:
        n.patterns = (lambda _k: True,) * 4
        n.combos = {m: nodes[m % len(nodes)] for m in range(1, 12)}
    leaf = Node()
    leaf.tag = Tag(("user.contact.email",), ("essential",))
    for n in nodes:
        n.props = {"e": leaf}
    with _within(20):
        entries = entries_of(nodes[0])
    assert {e.pattern for e in entries} >= {"/e", "/*/e", "/*/*/e"}


def _nested_patterns(n: int, depth: int) -> Any:
    if depth == 0:
        return {"x-pii": "email"}
    return {"patternProperties": {f"^{'a' * i}": _nested_patterns(n, depth - 1)
                                  for i in range(1, n + 1)}}


@pytest.mark.parametrize("schema", [
    _nested_patterns(6, 2),
    {"$defs": {"t": {"properties": {"e": {"x-pii": "email"}},
                     "patternProperties": {f"^p{i}": {"$ref": "#/$defs/t"} for i in range(6)},
                     "additionalProperties": {"$ref": "#/$defs/t"}}},
     "$ref": "#/$defs/t"},
])
def test_overlapping_patterns_compile_to_a_small_plan(schema: Any) -> None:
    store = SchemaStore()
    uri = store.add_document(schema, "mem://s.json")
    compiler = Compiler(store)
    with _within(20):
        plan = compiler.compile(uri)
    assert len(compiler._memo) < 200
    # a key matching several patterns is still scrubbed by all of them
    doc = {"aaa": {"aa": "jane@example.com"}} if "$defs" not in schema else \
        {"p1p2": {"p3": {"e": "x"}}}
    out = Scrubber(detect_undeclared=False).scrub(doc, plan).value
    assert out != doc
    assert "jane@" not in repr(out)


def test_a_discriminator_mapping_to_a_file_resolves_the_file(tmp_path: Path) -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/pets/1": {
        "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Pet"}}}}}}}},
        "components": {"schemas": {"Pet": {
            "type": "object", "properties": {"kind": {"type": "string"}},
            "discriminator": {"propertyName": "kind", "mapping": {"dog": "Dog.json"}},
            "oneOf": [{"$ref": "Dog.json"}]}}}}
    (tmp_path / "o.json").write_text(json.dumps(spec))
    (tmp_path / "Dog.json").write_text(json.dumps(
        {"type": "object", "properties": {"owner": {"type": "string", "x-pii": "name"}}}))
    cfg = piimw.Config.from_dict({"openapi": str(tmp_path / "o.json"),
                                  "schemas": str(tmp_path / "Dog.json")}, environ={})
    route = cfg.routes.lookup("GET", None, "/pets/1")
    assert route is not None
    out = cfg.scrubber.scrub({"kind": "dog", "owner": "Jane Doe"},
                             route.responses["200"].plan, sink="log").value
    assert out == {"kind": "dog", "owner": "[REDACTED:name]"}


@pytest.mark.parametrize(("anchor", "ref"), [
    ({"$dynamicAnchor": "node"}, {"$dynamicRef": "#node"}),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": True},
     {"$recursiveRef": "#"}),
])
def test_an_unrelated_tree_with_the_same_dynamic_anchor_tags_nothing(
        anchor: dict[str, Any], ref: dict[str, Any]) -> None:
    store = SchemaStore()
    for name, props in (("people", {"name": {"type": "string", "x-pii": "name"}}),
                        ("categories", {"name": {"type": "string"},
                                        "owner": {"type": "string", "x-pii": "email"}})):
        uri = f"https://example.com/{name}"
        store.add_document({"$id": uri, **anchor, "type": "object", "properties": {
            **props, "children": {"type": "array", "items": ref}}}, uri)
    plan = Compiler(store).compile("https://example.com/categories")
    doc = {"name": "Books", "children": [{"name": "Fiction", "owner": "x"}]}
    assert Scrubber(detect_undeclared=False).scrub(doc, plan).value == {
        "name": "Books", "children": [{"name": "Fiction", "owner": "[REDACTED:email]"}]}


def test_a_pattern_re2_cannot_compile_is_named_with_the_reason() -> None:
    with pytest.raises(SchemaError) as info:
        piimw.compile_schema({"patternProperties": {"^(?!x-)": {"x-pii": "name"}}},
                             name="s.json")
    assert info.value.pointer == "/patternProperties/^(?!x-)"
    assert "lookaround" in str(info.value)
    assert "invalid perl operator" in str(info.value)


def test_a_missing_hash_key_names_what_uses_the_hash_action(tmp_path: Path) -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/u": {"get": {
        "parameters": [{"name": "q", "in": "query", "schema": {
            "type": "string", "x-pii": {"category": "email", "action": "hash"}}}],
        "responses": {"200": {"description": "ok"}}}}}}
    (tmp_path / "o.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError) as info:
        piimw.Config.from_dict({"openapi": str(tmp_path / "o.json")}, environ={})
    assert info.value.pointer == "/hash/key_env"
    assert "o.json at /q (GET /u)" in str(info.value)


_C = "#/components/schemas/"


def test_components_referring_to_one_another_compile_quickly() -> None:
    comps: dict[str, Any] = {}
    for b in range(10):
        comps[f"Base{b}"] = {"properties": {"ref": {"$ref": f"{_C}Base{(b + 1) % 10}"}},
                             "oneOf": [{"$ref": f"{_C}Sub{b}_{s}"} for s in range(3)]}
        for s in range(3):
            comps[f"Sub{b}_{s}"] = {"properties": {
                f"f{s}": {"x-pii": "email"},
                "items": {"items": {"$ref": f"{_C}Base{(b + s) % 10}"}}}}
    store = SchemaStore()
    uri = store.add_document({"openapi": "3.1.0", "components": {"schemas": comps}}, "mem://o")
    with _within(20):
        plan = Compiler(store).compile(uri, "/components/schemas/Base0")
    assert {"/f0", "/ref/f1", "/items/*/f2"} <= {e.pattern for e in plan.entries}
