"""The Flask adapter through ``app.test_client()``: routes, session flag, signals, problems."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("flask")

from flask import Flask, jsonify, request, session
from flask.testing import FlaskClient
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import EnvironBuilder, TestResponse

import piimw
from piimw.contrib.flask import (
    _ENVIRON_TEMPLATE,
    PIIMW,
    PIIMWState,
    route_template,
    session_consent,
)

SIGNUP = {
    "type": "object", "required": ["email"], "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "name": {"type": "string", "x-pii": "name"},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
        "password": {"type": "string", "writeOnly": True},
    },
}
USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}},
        "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
    },
}


def _json_body(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _ok(schema: str) -> dict[str, Any]:
    return {"description": "ok", **_json_body(schema)}


OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "test", "version": "1"},
    "paths": {
        "/signup": {"post": {"requestBody": _json_body("Signup"),
                             "responses": {"201": _ok("User")}}},
        "/users/{user_id}": {"get": {"responses": {"200": _ok("User")}}},
        "/users/me": {"get": {"responses": {"200": _ok("User")}}},
        # The framework names this parameter differently: matched by path instead.
        "/accounts/{id}": {"get": {"responses": {"200": _ok("User")}}},
    },
    "components": {"schemas": {"Signup": SIGNUP, "User": USER}},
}
PROFILE = {"id": 7, "email": "jane.doe@example.com", "card": "4242424242424242",
           "phone": "+14155550100"}


def settings_for(spec: Path) -> dict[str, Any]:
    return {"openapi": [str(spec)]}


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_bytes(orjson.dumps(OPENAPI))
    return path


class BufferedClient(FlaskClient):
    """Close each response at once, as servers do: that is when piimw leaves the context."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def _no_exchange_leaks() -> Iterator[None]:
    yield
    assert piimw.current() is None


class Seen:
    """What the views received, and the exchange they ran under."""

    def __init__(self) -> None:
        self.body: Any = None
        self.exchange: piimw.Exchange | None = None


def make_app(settings: dict[str, Any] | None = None, *, root_path: str | None = None,
             seen: Seen | None = None) -> Flask:
    """An app factory, the way applications write them (the extension is bound later)."""
    app = Flask(__name__, root_path=root_path)
    app.config.update({"SECRET_KEY": "test-secret", **(settings or {})})
    app.test_client_class = BufferedClient
    seen = seen if seen is not None else Seen()

    def record() -> None:
        seen.exchange = piimw.current()

    @app.post("/signup")
    def signup() -> Any:
        record()
        seen.body = request.get_json()
        return jsonify({"id": 1, **{k: v for k, v in seen.body.items() if k != "password"}}), 201

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> Any:
        record()
        return jsonify({**PROFILE, "id": user_id})

    @app.get("/users/me")
    def me() -> Any:
        record()
        return jsonify(PROFILE)

    @app.get("/accounts/<int:account_id>")
    def account(account_id: int) -> Any:
        record()
        return jsonify(PROFILE)

    @app.get("/about")
    def about() -> Any:
        record()
        return jsonify(contact="privacy@example.com")

    @app.post("/opt-out")
    def opt_out() -> Any:
        session[app.config.get("PIIMW_SESSION_KEY", "piimw_opt_out")] = request.get_json()
        return "", 204

    @app.errorhandler(404)
    def not_found(error: Exception) -> Any:
        record()
        return jsonify(detail="not found"), 404

    return app


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def app(spec: Path, seen: Seen) -> Flask:
    app = make_app({"PIIMW": settings_for(spec)}, seen=seen)
    PIIMW(app)
    return app


@pytest.mark.parametrize(("rule", "template"), [
    ("/users/<int:user_id>", "/users/{user_id}"),
    ("/files/<path:name>/raw", "/files/{name}/raw"),
    ("/pages/<slug>", "/pages/{slug}"),
    ("/kinds/<any(a, b):kind>", "/kinds/{kind}"),
    ("/codes/<string(length=2):code>/<float:x>", "/codes/{code}/{x}"),
    ("/plain/", "/plain/"),
])
def test_rule_to_openapi_template(rule: str, template: str) -> None:
    assert route_template(rule) == template


def test_exchange_carries_flask_route_template(app: Flask, seen: Seen) -> None:
    r = app.test_client().get("/users/42")
    assert r.status_code == 200
    assert seen.exchange is not None
    assert seen.exchange.route_template == "/users/{user_id}"
    assert seen.exchange.route is not None


def test_literal_rule_wins_over_template(app: Flask, seen: Seen) -> None:
    app.test_client().get("/users/me")
    assert seen.exchange is not None
    assert seen.exchange.route is not None
    assert seen.exchange.route.template == "/users/me"


def test_parameter_names_may_differ_from_openapi(app: Flask, seen: Seen) -> None:
    r = app.test_client().get("/accounts/3")
    assert r.get_json()["email"] == "j***@example.com"
    assert seen.exchange is not None
    assert seen.exchange.route is not None
    assert seen.exchange.route.template == "/accounts/{id}"


def test_no_match_has_no_template(app: Flask, seen: Seen) -> None:
    r = app.test_client().get("/nowhere")
    assert r.status_code == 404
    assert seen.exchange is not None
    assert seen.exchange.route_template is None


def test_response_masked(app: Flask) -> None:
    r = app.test_client().get("/users/7")
    assert r.status_code == 200
    body = r.get_json()
    assert body["email"] == "j***@example.com"
    assert body["card"] == "************4242"
    assert "4242424242424242" not in r.get_data(as_text=True)
    assert r.headers["Content-Length"] == str(len(r.data))


def test_unplanned_route_untouched(app: Flask, seen: Seen) -> None:
    r = app.test_client().get("/about")
    assert r.get_json() == {"contact": "privacy@example.com"}
    assert seen.exchange is not None
    assert seen.exchange.route is None
    assert seen.exchange.passthrough
    assert seen.exchange.route_template == "/about"  # a label for logs, not a plan
    assert "Vary" not in r.headers


def test_gpc_drops_marketing_field_and_varies(app: Flask, seen: Seen) -> None:
    r = app.test_client().post(
        "/signup", json={"email": "jane@example.com", "phone": "+14155550100"},
        headers={"Sec-GPC": "1"})
    assert r.status_code == 201
    assert seen.body == {"email": "jane@example.com"}
    assert "Sec-GPC" in r.headers["Vary"]


def test_problem_json_on_invalid_json(app: Flask, seen: Seen) -> None:
    r = app.test_client().post("/signup", data=b'{"email": "jane@exa',
                               content_type="application/json")
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.get_json()["type"].endswith("/malformed-json")
    assert seen.exchange is None  # the view never ran


def test_problem_json_on_validation_error_never_echoes(app: Flask) -> None:
    r = app.test_client().post("/signup", json={"name": "Canary Q. Person", "extra": "x"})
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert b"Canary" not in r.data
    assert {e["keyword"] for e in r.get_json()["errors"]} >= {"required"}


@pytest.mark.parametrize(("flag", "kept"), [
    (["marketing"], {"email"}),
    (True, {"email"}),
    ("analytics", {"email", "phone"}),  # phone is only used for marketing
])
def test_session_flag_opts_out(app: Flask, seen: Seen, flag: Any, kept: set[str]) -> None:
    client = app.test_client()
    assert client.post("/opt-out", json=flag).status_code == 204
    client.post("/signup", json={"email": "jane@example.com", "phone": "+14155550100"})
    assert set(seen.body) == kept
    assert seen.exchange is not None
    assert "session" in seen.exchange.consent.signals


def test_session_key_is_configurable(spec: Path, seen: Seen) -> None:
    app = make_app({"PIIMW": settings_for(spec), "PIIMW_SESSION_KEY": "privacy"}, seen=seen)
    PIIMW(app)
    client = app.test_client()
    client.post("/opt-out", json=["marketing"])
    client.post("/signup", json={"email": "jane@example.com", "phone": "+14155550100"})
    assert seen.body == {"email": "jane@example.com"}


def test_forged_session_cookie_is_ignored(app: Flask, seen: Seen) -> None:
    client = app.test_client()
    client.set_cookie("session", "not-a-signed-value")
    r = client.post("/signup", json={"email": "jane@example.com", "phone": "+14155550100"})
    assert r.status_code == 201
    assert seen.body == {"email": "jane@example.com", "phone": "+14155550100"}


def test_no_secret_key_no_session(spec: Path, seen: Seen) -> None:
    app = make_app({"PIIMW": settings_for(spec), "SECRET_KEY": None}, seen=seen)
    PIIMW(app)
    client = app.test_client()
    client.set_cookie("session", "anything")
    r = client.post("/signup", json={"email": "jane@example.com", "phone": "+14155550100"})
    assert r.status_code == 201
    assert "phone" in seen.body


def test_session_consent_shapes() -> None:
    assert session_consent(None) is None
    assert session_consent(False) is None
    assert session_consent([]) is None
    everything = session_consent(True)
    assert everything is not None
    # A name piimw does not know opts out of everything (it was ignored: a misspelt flag
    # left the subject opted in).
    unknown = session_consent(["no-such-use"])
    assert unknown is not None
    assert unknown.opted_out_uses == everything.opted_out_uses
    assert "essential" not in everything.opted_out_uses
    assert everything.opted_out_uses >= {"marketing", "analytics", "third_party"}
    odd = session_consent({"weird": 1})  # a shape we do not know: most restrictive
    assert odd is not None
    assert odd.opted_out_uses == everything.opted_out_uses


def test_app_factory_one_extension_many_apps(spec: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_bytes(orjson.dumps({**OPENAPI, "paths": {}}))
    ext = PIIMW()
    first = make_app({"PIIMW": settings_for(spec)})
    second = make_app({"PIIMW": settings_for(other)})
    ext.init_app(first)
    ext.init_app(second)
    assert isinstance(first.extensions["piimw"], PIIMWState)
    assert PIIMW.state(first).config is not PIIMW.state(second).config
    assert first.test_client().get("/users/1").get_json()["email"] == "j***@example.com"
    assert second.test_client().get("/users/1").get_json()["email"] == PROFILE["email"]
    with pytest.raises(RuntimeError, match="already"):
        ext.init_app(first)
    with pytest.raises(RuntimeError, match="not set up"):
        PIIMW.state(make_app())


def test_config_argument_wins_and_accepts_config_objects(spec: Path) -> None:
    config = piimw.Config.from_dict({"openapi": [str(spec)]})
    app = make_app({"PIIMW": {"max_body_bytes": 1}})
    assert PIIMW(app, config=config).state(app).config is config


def test_relative_paths_resolve_against_root_path(spec: Path) -> None:
    root = str(spec.parent)
    app = make_app({"PIIMW": {"openapi": [spec.name]}}, root_path=root)
    PIIMW(app)
    assert app.test_client().get("/users/1").get_json()["email"] == "j***@example.com"
    (spec.parent / "piimw.toml").write_text(f'openapi = "{spec.name}"\n')
    app = make_app({"PIIMW": "piimw.toml"}, root_path=root)
    PIIMW(app)
    assert app.test_client().get("/users/1").get_json()["email"] == "j***@example.com"


def test_bad_config_fails_at_init_naming_the_pointer() -> None:
    app = make_app({"PIIMW": {"max_body_bytes": "big"}})
    with pytest.raises(piimw.ConfigError) as info:
        PIIMW(app)
    assert "/max_body_bytes" in str(info.value)
    assert 'app.config["PIIMW"]' in str(info.value)


def test_without_config_uses_defaults(seen: Seen) -> None:
    app = make_app(seen=seen)
    PIIMW(app)
    r = app.test_client().get("/users/1")
    assert r.get_json()["email"] == PROFILE["email"]  # no schema, no plan


def test_wsgi_compliance_under_lint(spec: Path, seen: Seen) -> None:
    app = make_app({"PIIMW": settings_for(spec)}, seen=seen)
    app.wsgi_app = LintMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    PIIMW(app)
    app.wsgi_app = LintMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    client = app.test_client()
    r = client.post("/signup", json={"email": "jane@example.com"}, headers={"Sec-GPC": "1"})
    assert r.get_json()["email"] == "j***@example.com"
    r.close()
    r = client.get("/about")
    assert r.status_code == 200
    r.close()


@pytest.mark.parametrize(("module", "framework", "extra"), [
    ("piimw.contrib.flask", "flask", "piimw[flask]"),
    ("piimw.contrib.django", "django", "piimw[django]"),
])
def test_import_error_names_the_extra(module: str, framework: str, extra: str) -> None:
    code = (f"import sys; sys.modules[{framework!r}] = None\n"
            f"try:\n    import {module}\n"
            f"except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert f"pip install '{extra}'" in out.stdout


def test_rule_memo_keeps_hosts_apart() -> None:
    # Templates are remembered per (host, scheme, script root, path, method): the same path
    # on another host may be another rule, or none.
    app = Flask("hosts", host_matching=True, static_host="static.example.com")
    app.add_url_rule("/p/<int:n>", "a", lambda n: "a", host="a.example.com")
    app.add_url_rule("/p/<slug>", "b", lambda slug: "b", host="b.example.com")
    PIIMW(app, {})
    mw = app.extensions["piimw"].middleware

    def template(host: str) -> str | None:
        env = EnvironBuilder(path="/p/1", base_url=f"http://{host}").get_environ()
        assert mw.route_template(env) is None  # no planned route: nothing for the table
        return env[_ENVIRON_TEMPLATE]  # Flask's rule, a label for logs and audit

    for _ in range(2):  # the second round answers from the memo
        assert template("a.example.com") == "/p/{n}"
        assert template("b.example.com") == "/p/{slug}"
        assert template("c.example.com") is None


def test_rule_memo_sees_routes_added_to_the_table() -> None:
    app = Flask("late")
    app.add_url_rule("/u/<int:uid>", "u", lambda uid: "u")
    PIIMW(app, {})
    mw = app.extensions["piimw"].middleware
    env = EnvironBuilder(path="/u/3").get_environ
    assert mw.route_template(env()) is None
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/u/{id}": {
        "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "object", "properties": {
                "email": {"type": "string", "x-pii": "email"}}}}}}}}}}}
    (route,) = piimw.Config.from_dict({}, source="<t>", openapi_documents={"<t>": doc}).routes
    mw.config.routes.add(route)
    assert mw.route_template(env()) == "/u/{uid}"  # the memo was filled before the add
