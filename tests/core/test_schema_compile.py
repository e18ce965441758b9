from __future__ import annotations

import json
from pathlib import Path

import pytest

import piimw
from piimw.errors import SchemaError


def patterns(plan: piimw.Plan) -> dict[str, tuple[str, ...]]:
    return {e.pattern: e.tag.categories for e in plan.entries}


def test_simple_properties_and_aliases() -> None:
    plan = piimw.compile_schema({
        "type": "object",
        "properties": {
            "email": {"type": "string", "x-pii": "email"},
            "age": {"type": "integer"},
            "contact": {"type": "object", "properties": {"phone": {"x-pii": ["phone"]}}},
        },
    })
    assert patterns(plan) == {
        "/email": ("user.contact.email",),
        "/contact/phone": ("user.contact.phone_number",),
    }


def test_untagged_schema_compiles_to_empty_plan() -> None:
    plan = piimw.compile_schema({"type": "object", "properties": {"a": {"type": "string"}}})
    assert plan.empty
    assert plan.entries == ()


def test_refs_combinators_items_and_additional() -> None:
    schema = {
        "$defs": {
            "User": {
                "type": "object",
                "properties": {"email": {"x-pii": "email"}, "name": {"$ref": "#/$defs/Name"}},
            },
            "Name": {"type": "string", "x-pii": {"category": "name", "uses": ["essential",
                                                                              "marketing"]}},
        },
        "type": "object",
        "properties": {
            "users": {"type": "array", "items": {"$ref": "#/$defs/User"}},
            "pair": {"prefixItems": [{"x-pii": "ip"}, {"type": "string"}]},
            "meta": {"additionalProperties": {"x-pii": "secret"}},
            "either": {"anyOf": [{"properties": {"ssn": {"x-pii": "ssn"}}},
                                 {"properties": {"card": {"x-pii": "card"}}}]},
            "both": {"allOf": [{"properties": {"dob": {"x-pii": "dob"}}}]},
            "byPattern": {"patternProperties": {"^tel_": {"x-pii": "phone"}}},
        },
    }
    plan = piimw.compile_schema(schema)
    p = patterns(plan)
    assert p["/users/*/email"] == ("user.contact.email",)
    assert p["/users/*/name"] == ("user.name",)
    assert p["/pair/0"] == ("user.device.ip_address",)
    assert p["/meta/*"] == ("user.authorization.credentials",)
    assert p["/either/ssn"] == ("user.government_id.national_identification_number",)
    assert p["/either/card"] == ("user.financial.credit_card",)
    assert p["/both/dob"] == ("user.demographic.date_of_birth",)
    assert "/byPattern/*" in p
    name_entry = next(e for e in plan.entries if e.pattern == "/users/*/name")
    assert name_entry.tag.uses == ("essential", "marketing")


def test_recursive_schema_is_finite_and_applies_at_depth() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {
            "type": "object",
            "properties": {"owner": {"x-pii": "email"},
                           "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        }},
    }
    plan = piimw.compile_schema(schema)
    doc = {"owner": "a@example.com", "children": [
        {"owner": "b@example.com", "children": [{"owner": "c@example.com", "children": []}]}]}
    out = piimw.scrub(doc, plan=plan, sink="log").value
    assert "example.com" not in json.dumps(out)
    assert out["children"][0]["children"][0]["owner"] == "[REDACTED:email]"


def test_write_only_and_password_format_are_credentials() -> None:
    plan = piimw.compile_schema({"properties": {
        "pw": {"type": "string", "format": "password"},
        "token": {"type": "string", "writeOnly": True},
        "reviewed": {"type": "string", "writeOnly": True, "x-pii": False},
    }})
    p = patterns(plan)
    assert p["/pw"] == ("user.authorization.credentials",)
    assert p["/token"] == ("user.authorization.credentials",)
    assert p["/reviewed"] == ()


def test_cross_file_refs(tmp_path: Path) -> None:
    (tmp_path / "common.json").write_text(json.dumps(
        {"$defs": {"Email": {"type": "string", "x-pii": "email"}}}))
    (tmp_path / "user.json").write_text(json.dumps(
        {"type": "object", "properties": {"email": {"$ref": "common.json#/$defs/Email"}}}))
    cfg = piimw.Config.from_dict({
        "schemas": [str(tmp_path)],
        "routes": [{"route": "POST /users", "request": str(tmp_path / "user.json")}],
    })
    route = cfg.routes.get("POST", "/users")
    assert route is not None
    assert route.request is not None
    assert patterns(route.request.plan) == {"/email": ("user.contact.email",)}


@pytest.mark.parametrize(
    ("tag", "message", "pointer"),
    [
        ("emial", "unknown data category", "/properties/e/x-pii"),
        (True, "does not say which category", "/properties/e/x-pii"),
        (42, "must be a category", "/properties/e/x-pii"),
        ({"category": "email", "action": "burn"}, "action", "/properties/e/x-pii/action"),
        ({"category": "email", "uses": ["sale"]}, "unknown use", "/properties/e/x-pii/uses/0"),
        ({"uses": ["analytics"]}, "needs a 'category'", "/properties/e/x-pii"),
        (["email", "nope"], "unknown data category", "/properties/e/x-pii/1"),
    ],
)
def test_bad_tags_name_pointer(tag: object, message: str, pointer: str) -> None:
    with pytest.raises(SchemaError, match=message) as info:
        piimw.compile_schema({"properties": {"e": {"x-pii": tag}}}, name="s.json")
    assert info.value.pointer == pointer
    assert pointer in str(info.value)


def test_unresolvable_ref_is_an_error() -> None:
    with pytest.raises(SchemaError, match="cannot be resolved") as info:
        piimw.compile_schema({"properties": {"e": {"$ref": "https://example.com/x.json"}}})
    assert info.value.pointer == "/properties/e/$ref"


def test_ref_to_missing_pointer() -> None:
    with pytest.raises(SchemaError, match="points at nothing"):
        piimw.compile_schema({"properties": {"e": {"$ref": "#/$defs/Nope"}}})
