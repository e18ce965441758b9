"""The fast validator (jsonschema-rs) must agree with jsonschema, the reference."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from piimw.schema.loader import SchemaStore
from piimw.schema.validate import Validator, fast_registry

SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "format": "email", "x-pii": "email"},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 5},
                     "maxItems": 3},
            "kind": {"enum": ["a", "b", None]},
            "ip": {"type": "string", "format": "ipv4"},
            "when": {"type": "string", "format": "date"},
        },
    },
    "combinators": {
        "$defs": {"N": {"type": "number", "multipleOf": 0.5}},
        "anyOf": [{"type": "string", "pattern": "^[a-z]+$"},
                  {"$ref": "#/$defs/N"},
                  {"type": "array", "prefixItems": [{"type": "boolean"}], "items": False}],
    },
    "draft7": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"xs": {"type": "array", "items": [{"type": "integer"}],
                              "additionalItems": {"type": "string"}}},
        "dependencies": {"a": ["b"]},
    },
}

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6),
              st.floats(allow_nan=False, allow_infinity=False, width=32),
              st.sampled_from(["a@b.co", "no-at", "1.2.3.4", "999.1.1.1", "2024-02-30",
                               "2024-02-28", "abc", "ABC", "", "abcdef"]),
              st.text(max_size=6)),
    lambda c: st.one_of(
        st.lists(c, max_size=4),
        st.dictionaries(st.sampled_from(["email", "age", "tags", "kind", "ip", "when", "xs",
                                         "a", "b", "z"]), c, max_size=5)),
    max_leaves=10)


def validator(name: str) -> Validator:
    store = SchemaStore()
    uri = store.add_document(SCHEMAS[name], f"urn:test:{name}")
    return Validator(store, uri, "", store.registry(), fast_registry(store))


VALIDATORS = {name: validator(name) for name in SCHEMAS}


def test_fast_path_is_active() -> None:
    assert all(v.is_valid_fast({}) is not None for v in VALIDATORS.values())


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=300)
@given(instance=json_values)
def test_fast_and_reference_agree(name: str, instance: Any) -> None:
    v = VALIDATORS[name]
    reference = v.is_valid_reference(instance)
    assert v.is_valid(instance) == reference
    fast = v.is_valid_fast(instance)
    # The fast validator may be stricter on formats (jsonschema then decides), never looser.
    if fast:
        assert reference, instance
