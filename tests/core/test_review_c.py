"""Regressions found by review of the core engine: schema compilation, actions, configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import piimw
from piimw.engine import Scrubber
from piimw.errors import ConfigError, SchemaError
from piimw.schema.compiler import Compiler
from piimw.schema.loader import SchemaStore
from piimw.schema.validate import Validator, fast_registry

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


_PLAN = {"properties": {"n": {"x-pii": "name"}, "m": {"x-pii": "name"},
                        "byKey": {"additionalProperties": {"type": "string"}}}}


def _scrubbed(doc: Any, sink: str) -> Any:
    return Scrubber().scrub(doc, piimw.compile_schema(_PLAN), sink=sink).value  # type: ignore[arg-type]


@pytest.mark.parametrize("doc", [
    {"n": "x", "u": {"jane@example.com": "friend"}},       # a map nobody tagged
    {"n": "x", "jane@example.com": 1},                      # a key beside a tagged field
    {"n": "x", "byKey": {"jane@example.com": "friend"}},    # keys of additionalProperties
    {"m": {"jane@example.com": "friend"}},                  # keys of a tagged object (but
    {"m": [{"jane@example.com": "friend"}]},                # not where it goes out as it is)
])
@pytest.mark.parametrize("sink", ["log", "event", "error", "client"])
def test_a_key_holding_personal_data_is_scrubbed_like_a_value(doc: Any, sink: str) -> None:
    if sink == "client" and "m" in doc:
        assert _scrubbed(doc, sink) == doc
    else:
        assert "jane@" not in repr(_scrubbed(doc, sink))


def test_keys_redacted_alike_do_not_overwrite_each_other() -> None:
    out = _scrubbed({"u": {"jane@example.com": 1, "john@example.com": 2}}, "log")
    assert out == {"u": {EMAIL: 1, f"{EMAIL}#2": 2}}


def test_keys_stay_where_the_policy_allows_and_declared_keys_are_never_read() -> None:
    doc = {"n": "Jane", "u": {"jane@example.com": "friend"}}
    assert _scrubbed(doc, "app") == {"n": "Jane", "u": {"jane@example.com": "friend"}}
    assert _logged({"properties": {"jane@example.com": {"type": "integer"},
                                   "n": {"x-pii": "name"}}},
                   {"jane@example.com": 1, "n": "x"}) == {"jane@example.com": 1, "n": NAME}


_KEYED = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.just("jane.doe@example.com")),
                        children, max_size=3),
        st.builds(lambda d, k: {"m": {k: d}}, children, st.just("jane.doe@example.com"))),
    max_leaves=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_KEYED)
def test_no_address_survives_as_a_key_in_a_log(doc: Any) -> None:
    assert "jane.doe@" not in repr(_scrubbed({"n": "x", "d": doc}, "log"))


@pytest.mark.parametrize("settings", [
    {"max_body_bytes": 1e6}, {"max_response_bytes": 4.0},
    {"discovery": {"enabled": False, "max_chars": 2e4}},
])
def test_an_integer_setting_given_as_a_float_is_refused_at_start_up(
        settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="expected integer") as info:
        piimw.Config.from_dict(settings, environ={})
    assert info.value.pointer.startswith("/" + next(iter(settings)))


def test_hash_named_only_by_a_query_parameter_needs_the_key_at_start_up(tmp_path: Path) -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/u": {"get": {
        "parameters": [{"name": "email", "in": "query", "schema": {
            "type": "string", "x-pii": {"category": "email", "action": "hash"}}}],
        "responses": {"200": {"description": "ok"}}}}}}
    (tmp_path / "o.json").write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="PIIMW_HASH_KEY") as info:
        piimw.Config.from_dict({"openapi": str(tmp_path / "o.json")}, environ={})
    assert info.value.pointer == "/hash/key_env"


@pytest.mark.parametrize(("rule", "pointer"), [
    ({"category": "emial"}, "/rules/0/category"),
    ({"categories": ["email", "emial"]}, "/rules/0/categories/1"),
    ({"use": "sale"}, "/rules/0/use"),
])
def test_a_bad_rule_entry_is_named_where_it_is(rule: dict[str, Any], pointer: str) -> None:
    with pytest.raises(ConfigError) as info:
        piimw.Config.from_dict({"rules": [{"id": "r", "action": "redact", **rule}]}, environ={})
    assert info.value.pointer == pointer


def test_a_path_parameter_tagged_in_its_schema_is_a_known_value(tmp_path: Path) -> None:
    ok = {"200": {"description": "ok"}}
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
        "/users/{name}": {"get": {"parameters": [{"name": "name", "in": "path",
                                                  "required": True, "schema": {
                                                      "type": "string", "x-pii": "name"}}],
                                  "responses": ok}},
        "/by/{email}": {"parameters": [{"$ref": "#/components/parameters/E"}],
                        "get": {"responses": ok}}},
        "components": {"parameters": {"E": {"name": "email", "in": "path", "required": True,
                                            "schema": {"$ref": "#/components/schemas/E"}}},
                       "schemas": {"E": {"type": "string", "x-pii": "email"}}}}
    (tmp_path / "o.json").write_text(json.dumps(spec))
    cfg = piimw.Config.from_dict({"openapi": str(tmp_path / "o.json")}, environ={})
    for path, value in (("/users/Jane%20Doe", ("Jane Doe", "user.name")),
                        ("/by/jane@example.com", ("jane@example.com", "user.contact.email"))):
        route = cfg.routes.lookup("GET", None, path)
        assert route is not None
        assert route.path_values(path) == [value]


def _validator(schema: dict[str, Any], fast: bool = True) -> Validator:
    store = SchemaStore()
    uri = store.add_document(schema, "urn:test:review-c", "s.json")
    return Validator(store, uri, "", store.registry(), fast_registry(store) if fast else None)


@pytest.mark.parametrize(("schema", "pointer"), [
    ({"properties": {"n": {"type": "string", "pattern": "^\\p{L}+$"}}}, "/properties/n/pattern"),
    ({"$defs": {"m": {"patternProperties": {"^\\p{Lu}": {}}}}},
     "/$defs/m/patternProperties/^\\p{Lu}"),
])
def test_a_pattern_python_cannot_compile_is_refused_at_start_up(
        schema: dict[str, Any], pointer: str) -> None:
    with pytest.raises(SchemaError, match="cannot compile") as info:
        _validator(schema)
    assert (info.value.source, info.value.pointer) == ("s.json", pointer)


def test_an_enum_of_patterns_is_data_not_a_pattern() -> None:
    assert _validator({"enum": [{"pattern": "\\p{L}"}]}).is_valid({"pattern": "\\p{L}"})


@pytest.mark.parametrize("fast", [True, False])
def test_an_rfc_3339_time_is_a_time(fast: bool) -> None:
    v = _validator({"properties": {"t": {"type": "string", "format": "time"},
                                   "n": {"type": "integer"}}}, fast)
    assert v.is_valid({"t": "12:00:00Z"})
    assert [p.pointer for p in v.problems({"t": "12:00:00Z", "n": "x"})] == ["/n"]


@pytest.mark.parametrize("mapping", [{"dog": "#/components/schemas/Dog"}, {"dog": "Dog"}, None])
def test_a_discriminated_subtype_tags_the_base_schemas_values(
        tmp_path: Path, mapping: dict[str, str] | None) -> None:
    disc: dict[str, Any] = {"propertyName": "petType"}
    if mapping is not None:
        disc["mapping"] = mapping
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/pets/1": {
        "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Pet"}}}}}}}},
        "components": {"schemas": {
            "Pet": {"type": "object", "properties": {"petType": {"type": "string"}},
                    "discriminator": disc},
            "Dog": {"allOf": [{"$ref": "#/components/schemas/Pet"},
                              {"properties": {"owner": {"type": "string", "x-pii": "name"}}}]},
            "Broken": {"allOf": [{"$ref": "#/components/schemas/Nowhere"}]}}}}
    (tmp_path / "o.json").write_text(json.dumps(spec))
    cfg = piimw.Config.from_dict({"openapi": str(tmp_path / "o.json")}, environ={})
    route = cfg.routes.lookup("GET", None, "/pets/1")
    assert route is not None
    doc = {"petType": "dog", "owner": "Jane Doe"}
    out = cfg.scrubber.scrub(doc, route.responses["200"].plan, sink="log").value
    assert out == {"petType": "dog", "owner": NAME}


@pytest.mark.parametrize(("tag", "pointer"), [
    ({"category": []}, "/properties/n/x-pii/category"),
    ({"categories": []}, "/properties/n/x-pii/categories"),
    ({"categories": ["email", "emial"]}, "/properties/n/x-pii/categories/1"),
])
def test_an_empty_or_bad_category_list_is_an_error_not_a_review(
        tag: dict[str, Any], pointer: str) -> None:
    with pytest.raises(SchemaError) as info:
        piimw.compile_schema({"properties": {"n": {"x-pii": tag}}}, name="s.json")
    assert info.value.pointer == pointer


@pytest.mark.parametrize(("tag", "pointer"), [
    ({"category": "email", "use": "sale"}, "/properties/n/x-pii/use"),
    ({"category": "email", "use": []}, "/properties/n/x-pii/use"),
    ({"category": "email", "uses": ["essential", "sale"]}, "/properties/n/x-pii/uses/1"),
])
def test_a_bad_use_is_named_where_it_is(tag: dict[str, Any], pointer: str) -> None:
    with pytest.raises(SchemaError) as info:
        piimw.compile_schema({"properties": {"n": {"x-pii": tag}}}, name="s.json")
    assert info.value.pointer == pointer


@pytest.mark.parametrize(("anchor", "ref"), [
    ({"$dynamicAnchor": "node"}, {"$dynamicRef": "#node"}),
    ({"$recursiveAnchor": True}, {"$recursiveRef": "#"}),
])
def test_a_schema_extending_a_recursive_one_tags_its_nested_values(
        anchor: dict[str, Any], ref: dict[str, Any]) -> None:
    store = SchemaStore()
    store.add_document({"$id": "https://example.com/tree", **anchor, "type": "object",
                        "properties": {"children": {"type": "array", "items": ref}}},
                       "https://example.com/tree")
    store.add_document({"$id": "https://example.com/people", **anchor, "$ref": "tree",
                        "properties": {"name": {"type": "string", "x-pii": "name"}}},
                       "https://example.com/people")
    plan = Compiler(store).compile("https://example.com/people")
    doc = {"name": "A", "children": [{"name": "Jane Doe", "children": [{"name": "B"}]}]}
    assert Scrubber(detect_undeclared=False).scrub(doc, plan).value == {
        "name": NAME, "children": [{"name": NAME, "children": [{"name": NAME}]}]}
