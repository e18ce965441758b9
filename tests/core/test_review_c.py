"""Regressions found by review of the core engine: schema compilation, actions, configuration."""

from __future__ import annotations

from typing import Any

import pytest

import piimw
from piimw.engine import Scrubber

NAME = "[REDACTED:name]"
EMAIL = "[REDACTED:email]"


def _logged(schema: dict[str, Any], doc: Any) -> Any:
    """``doc`` as the log sees it, by the schema alone (names no detector finds)."""
    return Scrubber(detect_undeclared=False).scrub(doc, piimw.compile_schema(schema)).value


_NESTED_EMAIL = {"properties": {"e": {"x-pii": "email"}}}


@pytest.mark.parametrize(("schema", "doc", "expected"), [
    # patternProperties apply to a declared property whose name they match, too
    ({"properties": {"full_name": _NESTED_EMAIL},
      "patternProperties": {"name$": {"x-pii": "name"}}},
     {"full_name": "Jane Doe"}, {"full_name": NAME}),
    # a key matching two patterns takes both schemas
    ({"patternProperties": {"^a": _NESTED_EMAIL, "b$": {"properties": {"n": {"x-pii": "name"}}}}},
     {"ab": {"e": "x", "n": "Jane Doe"}}, {"ab": {"e": EMAIL, "n": NAME}}),
    # additionalProperties of a subschema that does not declare the key
    ({"allOf": [{"additionalProperties": {"x-pii": "name"}},
                {"properties": {"full": _NESTED_EMAIL}}]},
     {"full": "Jane Doe"}, {"full": NAME}),
    # ... but not of the subschema that declares it
    ({"properties": {"id": {"type": "string"}}, "additionalProperties": {"x-pii": "name"}},
     {"id": "u-1", "other": "Jane Doe"}, {"id": "u-1", "other": NAME}),
    # items of a subschema without a tuple apply to the tuple positions of another
    ({"allOf": [{"items": {"x-pii": "name"}}, {"prefixItems": [_NESTED_EMAIL]}]},
     ["Jane Doe", "John Roe"], [NAME, NAME]),
    # a tuple position with nothing tagged is not an item after the tuple
    ({"prefixItems": [{"type": "string"}], "items": {"x-pii": "name"}},
     ["id-1", "Jane Doe"], ["id-1", NAME]),
    # draft 7's dependencies, 2019-09's $recursiveRef, if, contains
    ({"dependencies": {"a": {"properties": {"n": {"x-pii": "name"}}}, "b": ["a"]}},
     {"a": 1, "n": "Jane Doe"}, {"a": 1, "n": NAME}),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": True,
      "properties": {"n": {"x-pii": "name"}, "kids": {"items": {"$recursiveRef": "#"}}}},
     {"n": "A", "kids": [{"n": "Jane Doe"}]}, {"n": NAME, "kids": [{"n": NAME}]}),
    ({"if": {"properties": {"n": {"x-pii": "name"}}}}, {"n": "Jane Doe"}, {"n": NAME}),
    ({"contains": {"x-pii": "name"}}, ["Jane Doe"], [NAME]),
])
def test_every_subschema_that_applies_to_a_value_tags_it(
        schema: dict[str, Any], doc: Any, expected: Any) -> None:
    assert _logged(schema, doc) == expected


def test_a_key_matching_several_of_many_patterns_takes_them_all() -> None:
    patterns: dict[str, Any] = {f"^k{i}": {"type": "string"} for i in range(8)}
    patterns["x$"] = {"x-pii": "name"}
    patterns["^k0"] = _NESTED_EMAIL
    schema = {"patternProperties": patterns}
    assert _logged(schema, {"k0x": "Jane Doe", "k3": "id", "zx": "John"}) == {
        "k0x": NAME, "k3": "id", "zx": NAME}
