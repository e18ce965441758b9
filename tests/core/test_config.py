from __future__ import annotations

import json
from pathlib import Path

import pytest

import piimw
from piimw.errors import ConfigError, SchemaError


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_from_file_loads_routes_and_rules(tmp_path: Path) -> None:
    write(tmp_path / "signup.json", {"properties": {"email": {"x-pii": "email"}}})
    (tmp_path / "piimw.toml").write_text(
        'environment = "staging"\n'
        "[[routes]]\n"
        'route = "POST /signup"\n'
        'request = "signup.json"\n'
        "[[rules]]\n"
        'id = "staging-mask"\n'
        'action = "mask"\n'
        'categories = ["email"]\n'
        'sinks = ["log"]\n'
        'environments = ["staging"]\n'
    )
    cfg = piimw.Config.from_file(tmp_path / "piimw.toml")
    assert cfg.environment == "staging"
    route = cfg.routes.match("POST", "/signup")
    assert route is not None
    assert route.request is not None
    res = cfg.scrubber.scrub({"email": "jane@example.com"}, route.request.plan, sink="log")
    assert res.value == {"email": "j***@example.com"}


@pytest.mark.parametrize(
    ("settings", "pointer", "message"),
    [
        ({"detect_undeclared": "yes"}, "/detect_undeclared", "expected boolean"),
        ({"colour": 1}, "", "unknown setting"),
        # Sections nothing reads are unknown: a typo in them was accepted silently.
        ({"logging": {"level": "debug"}}, "", "unknown setting"),
        ({"events": {"hosts": {}}}, "", "unknown setting"),
        ({"rules": [{"id": "x", "action": "burn"}]}, "/rules/0/action", "expected one of"),
        ({"rules": [{"action": "mask"}]}, "/rules/0", "missing required setting"),
        ({"rules": [{"id": "x", "action": "mask", "categories": ["emial"]}]},
         "/rules/0/categories/0", "unknown data category"),
        ({"rules": [{"id": "x", "action": "mask", "uses": ["sale"]}]},
         "/rules/0/uses/0", "unknown use"),
        ({"rules": [{"id": "x", "action": "reject", "sinks": ["log"]}]},
         "/rules/0", "only applies to sink 'app'"),
        ({"routes": [{"route": "/no-method"}]}, "/routes/0/route", "must match"),
        ({"routes": [{"route": "POST /x", "request": "missing.json"}]},
         "/routes/0/request", "does not exist"),
        ({"hash": {"key": "abc"}}, "/hash/key", "secrets never go in configuration"),
    ],
)
def test_config_errors_name_pointer(settings: dict[str, object], pointer: str,
                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        piimw.Config.from_dict(settings, source="piimw.toml")
    assert info.value.pointer == pointer
    assert str(info.value).startswith("piimw.toml")


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    (tmp_path / "piimw.toml").write_text("environment = \n")
    with pytest.raises(ConfigError, match="invalid TOML") as info:
        piimw.Config.from_file(tmp_path / "piimw.toml")
    assert info.value.source.endswith("piimw.toml")


def test_bad_schema_file_names_file_and_pointer(tmp_path: Path) -> None:
    write(tmp_path / "s.json", {"properties": {"a": {"x-pii": "nope"}}})
    with pytest.raises(SchemaError) as info:
        piimw.Config.from_dict({"routes": [{"route": "POST /a", "request": str(tmp_path /
                                                                              "s.json")}]})
    assert info.value.source.endswith("s.json")
    assert info.value.pointer == "/properties/a/x-pii"


def test_invalid_json_schema_file(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text("{oops")
    with pytest.raises(SchemaError, match="invalid JSON at line 1"):
        piimw.Config.from_dict({"schemas": [str(tmp_path)]})


def test_hash_needs_key_from_environment(tmp_path: Path) -> None:
    rules = [{"id": "h", "action": "hash", "sinks": ["log"]}]
    with pytest.raises(ConfigError, match="PIIMW_HASH_KEY"):
        piimw.Config.from_dict({"rules": rules}, environ={})
    cfg = piimw.Config.from_dict({"rules": rules},
                                 environ={"PIIMW_HASH_KEY": "k" * 32, "PIIMW_HASH_KEY_ID": "k9"})
    assert cfg.hasher is not None
    assert cfg.hasher.key_id == "k9"
    with pytest.raises(ConfigError, match="too short"):
        piimw.Config.from_dict({"rules": rules}, environ={"PIIMW_HASH_KEY": "short"})


def test_hash_action_in_schema_needs_key(tmp_path: Path) -> None:
    write(tmp_path / "s.json", {"properties": {"a": {"x-pii": {"category": "email",
                                                                "action": "hash"}}}})
    with pytest.raises(ConfigError, match="PIIMW_HASH_KEY"):
        piimw.Config.from_dict({"routes": [{"route": "POST /a",
                                            "request": str(tmp_path / "s.json")}]}, environ={})


def test_openapi_30_nullable_and_yaml(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is an optional extra")
    spec = {
        "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
        "paths": {"/p": {"post": {
            "requestBody": {"$ref": "#/components/requestBodies/P"},
            "responses": {"200": {"description": "x"}}}}},
        "components": {
            "requestBodies": {"P": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "email": {"type": "string", "nullable": True, "x-pii": "email"},
                    "n": {"type": "integer", "minimum": 1, "exclusiveMinimum": True}}}}}}},
        },
    }
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(spec))
    cfg = piimw.Config.from_dict({"openapi": str(tmp_path / "api.yaml")})
    route = cfg.routes.match("POST", "/p")
    assert route is not None
    assert route.request is not None
    v = route.request.validator
    assert v is not None
    assert v.is_valid({"email": None, "n": 2})
    assert not v.is_valid({"n": 1})


def test_validation_problems_never_quote_values(tmp_path: Path) -> None:
    write(tmp_path / "s.json", {
        "type": "object", "additionalProperties": False,
        "properties": {"email": {"type": "string", "format": "email", "x-pii": "email"},
                       "age": {"type": "integer", "maximum": 150},
                       "kind": {"enum": ["a", "b"]}},
    })
    cfg = piimw.Config.from_dict({"routes": [{"route": "POST /a",
                                              "request": str(tmp_path / "s.json")}]})
    route = cfg.routes.match("POST", "/a")
    assert route is not None
    assert route.request is not None
    assert route.request.validator
    bad = {"email": "SECRETVAL-no-at-sign", "age": 9999, "kind": "SECRETVAL2",
           "SECRETKEY": 1}
    problems = route.request.validator.problems(bad)
    text = repr(problems)
    assert "SECRETVAL" not in text
    assert "9999" not in text
    assert {(p.pointer, p.keyword) for p in problems} >= {("/email", "format"),
                                                          ("/age", "maximum"),
                                                          ("/kind", "enum"),
                                                          ("", "additionalProperties")}


def test_route_matching(tmp_path: Path) -> None:
    write(tmp_path / "s.json", {"properties": {"e": {"x-pii": "email"}}})
    s = str(tmp_path / "s.json")
    cfg = piimw.Config.from_dict({"routes": [
        {"route": "GET /users/{id}", "response": s},
        {"route": "GET /users/me", "response": s},
        {"route": "* /any/{x}/y", "request": s},
    ]})
    r = cfg.routes.match("GET", "/users/42")
    assert r is not None
    assert r.template == "/users/{id}"
    r = cfg.routes.match("GET", "/users/me")
    assert r is not None
    assert r.template == "/users/me"
    assert cfg.routes.match("POST", "/users/42") is None
    assert cfg.routes.match("GET", "/users/42/extra") is None
    r = cfg.routes.match("PATCH", "/any/1/y")
    assert r is not None
    assert r.template == "/any/{x}/y"
    assert cfg.routes.get("GET", "/users/{id}") is not None
