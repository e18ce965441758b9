"""Regressions found by the second review of the compiler and engine changes: start-up time."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from piimw.engine import Scrubber
from piimw.plan import Node, entries_of
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore
from piimw.schema.tags import Tag


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
