"""The Starlette adapter under Starlette's TestClient: route templates, session flag, config."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Host, Mount, Route, Router, WebSocketRoute
from starlette.testclient import TestClient

import piimw
from piimw.contrib.starlette import PIIMiddleware, openapi_template

CONTACT = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
    },
}
USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
    },
}


def openapi() -> dict[str, Any]:
    json_body = {"content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Contact"}}}}
    user_body = {"description": "ok", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/User"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            # The config names the parameter {id}; the Starlette route says {user_id:int}.
            "/users/{id}": {"get": {"responses": {"200": user_body}}},
            "/api/v1/accounts/{account_id}/contacts": {"post": {
                "requestBody": json_body, "responses": {"201": user_body}}},
            "/contacts": {"post": {"requestBody": json_body, "responses": {"201": user_body}}},
        },
        "components": {"schemas": {"Contact": CONTACT, "User": USER}},
    }


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_bytes(orjson.dumps(openapi()))
    return path


@pytest.fixture
def config(spec: Path) -> piimw.Config:
    return piimw.Config.from_dict({"openapi": [str(spec)]})


class Seen:
    """What the handlers received, and the exchange they ran in."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.exchanges: list[Any] = []


def make_app(config: Any, seen: Seen, *, session: bool = False, **kwargs: Any) -> Starlette:
    async def user(request: Request) -> Response:
        seen.exchanges.append(piimw.current())
        return JSONResponse({"id": request.path_params["user_id"], "email": "zed@example.com",
                             "phone": "+1 202 555 0143"})

    async def contacts(request: Request) -> Response:
        seen.exchanges.append(piimw.current())
        body = await request.json()
        seen.bodies.append(body)
        return JSONResponse({"id": 1, **body}, status_code=201)

    async def opt_out(request: Request) -> Response:
        request.session["flag"] = (await request.json())["flag"]
        return JSONResponse({})

    async def free(request: Request) -> Response:
        return Response(b"raw zed@example.com bytes", media_type="text/plain")

    api = Router(routes=[Mount("/v1", routes=[
        Route("/accounts/{account_id:str}/contacts", contacts, methods=["POST"])])])
    middleware = [Middleware(PIIMiddleware, config=config, **kwargs)]
    if session:  # added after ours: runs before ours, so scope["session"] is set for us
        middleware.insert(0, Middleware(SessionMiddleware, secret_key="test-secret"))
    return Starlette(
        routes=[
            Route("/users/{user_id:int}", user),
            Route("/contacts", contacts, methods=["POST"]),
            Route("/optout", opt_out, methods=["POST"]),
            Route("/free", free),
            Mount("/api", app=api),
        ],
        middleware=middleware,
    )


# -- route templates ------------------------------------------------------------------------
async def _endpoint(request: Request) -> Response:
    return Response()


async def _raw(scope: Any, receive: Any, send: Any) -> None:
    pass


@pytest.fixture
def routed() -> Starlette:
    sub = Starlette(routes=[Route("/items/{item_id}", _endpoint)])
    return Starlette(routes=[
        Route("/users/{user_id:int}", _endpoint, methods=["GET", "POST"]),
        Route("/users/me", _endpoint),
        Route("/files/{path:path}", _endpoint),
        Route("/things/", _endpoint),
        Mount("/api", routes=[Mount("/v{version:int}", routes=[
            Route("/accounts/{account_id}/contacts", _endpoint, methods=["POST"])])]),
        Mount("/sub", app=sub),
        Mount("/raw", app=_raw),
        Host("admin.example.com", app=Router(routes=[Route("/panel/{x}", _endpoint)])),
    ])


def scope_for(app: Starlette, method: str, path: str, host: str = "shop.example.com"
              ) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "",
            "query_string": b"", "headers": [(b"host", host.encode())], "app": app}


@pytest.mark.parametrize(("method", "path", "template"), [
    ("GET", "/users/42", "/users/{user_id}"),
    ("DELETE", "/users/42", "/users/{user_id}"),  # Starlette answers 405 on this route
    ("GET", "/files/a/b/c.txt", "/files/{path}"),
    ("GET", "/things/", "/things/"),
    ("POST", "/api/v2/accounts/a1/contacts", "/api/v{version}/accounts/{account_id}/contacts"),
    ("GET", "/sub/items/9", "/sub/items/{item_id}"),
    ("GET", "/raw/anything", None),  # a mounted ASGI app without routes: no template
    ("GET", "/nowhere", None),
])
def test_route_templates(routed: Starlette, method: str, path: str,
                         template: str | None) -> None:
    mw = PIIMiddleware(routed.router, {})
    assert mw.route_template(scope_for(routed, method, path)) == template


def test_first_full_match_wins_like_starlette(routed: Starlette) -> None:
    mw = PIIMiddleware(routed.router, {})
    # /users/me: {user_id:int} does not match "me", the literal route does.
    assert mw.route_template(scope_for(routed, "GET", "/users/me")) == "/users/me"


def test_host_routes(routed: Starlette) -> None:
    mw = PIIMiddleware(routed.router, {})
    assert mw.route_template(scope_for(routed, "GET", "/panel/1", host="admin.example.com")) \
        == "/panel/{x}"
    assert mw.route_template(scope_for(routed, "GET", "/panel/1")) is None


def test_matching_does_not_touch_the_scope(routed: Starlette) -> None:
    mw = PIIMiddleware(routed.router, {})
    scope = scope_for(routed, "POST", "/api/v1/accounts/a/contacts")
    before = dict(scope)
    mw.route_template(scope)
    assert scope == before


def test_routes_added_later_are_seen(routed: Starlette) -> None:
    mw = PIIMiddleware(routed.router, {})
    assert mw.route_template(scope_for(routed, "GET", "/late/1")) is None
    routed.router.routes.append(Route("/late/{n}", _endpoint))
    assert mw.route_template(scope_for(routed, "GET", "/late/1")) == "/late/{n}"


def _planned(template: str) -> piimw.Config:
    """A configuration with one planned route, ``GET template``."""
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {template: {
        "get": {"responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "object", "properties": {
                "email": {"type": "string", "x-pii": "email"}}}}}}}}}}}
    return piimw.Config.from_dict({}, source="<test>", openapi_documents={"<test>": doc})


def test_resolve_memo_follows_routes_and_the_route_table(routed: Starlette) -> None:
    """The per-path memo of (route, template) is refilled when either side changes."""
    config = _planned("/users/{id}")
    mw = PIIMiddleware(routed.router, config)
    route, template = mw.resolve(scope_for(routed, "GET", "/users/7"))
    assert template == "/users/{user_id}"
    assert route is not None
    assert route.template == "/users/{id}"
    assert mw.resolve(scope_for(routed, "GET", "/users/7")) == (route, template)  # memoised
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (None, None)
    routed.router.routes.append(Route("/late/{n}", _endpoint))  # the app's routes change
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (None, "/late/{n}")
    other = _planned("/late/{n}")
    (added,) = other.routes
    config.routes.add(added)  # the configuration's table changes
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (added, "/late/{n}")


def test_resolve_memo_follows_a_replaced_route_list_and_another_app(routed: Starlette) -> None:
    """The memo reads the router's list itself: a new list of the same length, or requests
    of a second app through the same middleware, are answered afresh."""
    mw = PIIMiddleware(routed.router, {})
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (None, None)
    routed.router.routes = [Route("/late/{n}", _endpoint), *routed.router.routes[1:]]
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (None, "/late/{n}")
    other = Starlette(routes=[Route("/late/{m}/x", _endpoint), Route("/late/{m}", _endpoint)])
    assert mw.resolve(scope_for(other, "GET", "/late/1")) == (None, "/late/{m}")
    assert mw.resolve(scope_for(routed, "GET", "/late/1")) == (None, "/late/{n}")


def test_resolve_does_not_memoise_host_dependent_matches(routed: Starlette) -> None:
    mw = PIIMiddleware(routed.router, _planned("/panel/{x}"))
    route, template = mw.resolve(scope_for(routed, "GET", "/panel/1", host="admin.example.com"))
    assert template == "/panel/{x}"
    assert route is not None
    # Same path, other host: Starlette would not dispatch to the Host route. The route table
    # still matches the path itself (a template miss never switches protection off).
    assert mw.resolve(scope_for(routed, "GET", "/panel/1"))[1] is None


def test_template_spelled_as_the_config_spells_it(config: piimw.Config) -> None:
    app = make_app(config, Seen())
    mw = PIIMiddleware(app.router, config)
    template = mw.route_template(scope_for(app, "GET", "/users/3"))
    assert template is not None
    route = config.routes.get("GET", template)  # parameter names need not agree
    assert route is not None
    assert route.template == "/users/{id}"


@pytest.mark.parametrize(("path", "template"), [
    ("/users/{id:int}", "/users/{id}"),
    ("/a/{x:path}", "/a/{x}"),
    ("/a/{x}/{y:float}", "/a/{x}/{y}"),
    ("/plain", "/plain"),
])
def test_openapi_template(path: str, template: str) -> None:
    assert openapi_template(path) == template


# -- end to end -----------------------------------------------------------------------------
def test_planned_route_through_convertor_is_masked(config: piimw.Config) -> None:
    seen = Seen()
    with TestClient(make_app(config, seen)) as client:
        r = client.get("/users/7")
    assert r.status_code == 200
    assert r.json() == {"id": 7, "email": "z***@example.com", "phone": "+1 202 555 0143"}
    assert seen.exchanges[0].route_template == "/users/{id}"


def test_mounted_route_gpc_drops_marketing_and_varies(config: piimw.Config) -> None:
    seen = Seen()
    client = TestClient(make_app(config, seen))
    body = {"email": "ann@example.com", "phone": "+1 202 555 0143"}
    r = client.post("/api/v1/accounts/a1/contacts", json=body, headers={"Sec-GPC": "1"})
    assert r.status_code == 201
    assert seen.bodies == [{"email": "ann@example.com"}]
    assert r.json() == {"id": 1, "email": "a***@example.com"}
    assert r.headers["vary"] == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"
    assert seen.exchanges[0].route_template == "/api/v1/accounts/{account_id}/contacts"


def test_unplanned_route_passes_through(config: piimw.Config) -> None:
    client = TestClient(make_app(config, Seen()))
    for headers in ({}, {"Sec-GPC": "1"}):
        r = client.get("/free", headers=headers)
        assert r.content == b"raw zed@example.com bytes"
        assert "vary" not in r.headers


def test_config_as_dict_path_and_toml(spec: Path, tmp_path: Path) -> None:
    toml = tmp_path / "piimw.toml"
    toml.write_text(f'openapi = "{spec.name}"\n')
    for cfg in ({"openapi": [str(spec)]}, str(toml), toml, piimw.Config.from_file(toml)):
        client = TestClient(make_app(cfg, Seen()))
        assert client.get("/users/7").json()["email"] == "z***@example.com", cfg


def test_bad_config_fails_when_the_app_is_built(tmp_path: Path) -> None:
    app = make_app({"bogus": 1}, Seen())
    with pytest.raises(piimw.ConfigError, match="bogus"):
        TestClient(app).get("/users/1")


def test_websocket_and_lifespan_pass_through(config: piimw.Config) -> None:
    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text("hello jane@example.com")
        await websocket.close()

    app = make_app(config, Seen())
    app.router.routes.append(WebSocketRoute("/ws", ws))
    with TestClient(app) as client, client.websocket_connect("/ws") as conn:
        assert conn.receive_text() == "hello jane@example.com"


# -- session flag ---------------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "phone_kept", "signal"), [
    (["marketing"], False, True),
    (True, False, True),
    ("marketing, analytics", False, True),
    (["analytics"], True, True),  # the phone's use is marketing
    # A truthy flag piimw cannot read opts out of everything non-essential (it was ignored).
    (["not-a-use", 7], False, True),
    ("yes", False, True),
    (["analytics", "marketting"], False, True),
    ([""], False, True),
    (False, True, False),
    (None, True, False),
])
def test_session_flag_opts_out(config: piimw.Config, flag: Any, phone_kept: bool,
                               signal: bool) -> None:
    seen = Seen()
    client = TestClient(make_app(config, seen, session=True, session_key="flag"))
    assert client.post("/optout", json={"flag": flag}).status_code == 200
    r = client.post("/contacts", json={"email": "ann@example.com", "phone": "+1 202 555 0143"})
    assert r.status_code == 201
    assert ("phone" in seen.bodies[0]) is phone_kept
    assert ("session" in seen.exchanges[0].consent.signals) is signal


def test_default_session_key(config: piimw.Config) -> None:
    seen = Seen()

    async def opt_out(request: Request) -> Response:
        request.session["piimw_opt_out"] = True
        return JSONResponse({})

    app = make_app(config, seen, session=True)
    app.router.routes.append(Route("/stop", opt_out, methods=["POST"]))
    client = TestClient(app)
    client.post("/stop")
    r = client.get("/users/1")
    assert "phone" not in r.json()
    assert seen.exchanges[-1].consent.opted_out_of("marketing") == "session"


def test_no_session_middleware_is_harmless(config: piimw.Config) -> None:
    seen = Seen()
    client = TestClient(make_app(config, seen))
    r = client.post("/contacts", json={"email": "ann@example.com", "phone": "+1 202 555 0143"})
    assert r.status_code == 201
    assert "phone" in seen.bodies[0]


# -- import without Starlette ---------------------------------------------------------------
def test_import_without_starlette_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "starlette" or m.startswith("starlette.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.delitem(sys.modules, "piimw.contrib.starlette")
    with pytest.raises(ImportError, match=r"pip install 'piimw\[starlette\]'"):
        importlib.import_module("piimw.contrib.starlette")
