from __future__ import annotations

import gzip
import logging
from typing import Any

import orjson
import pytest
from asgi_driver import call

import piimw
from piimw.asgi import PIIMiddleware

SIGNUP_SCHEMA = {
    "type": "object",
    "required": ["email"],
    "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "format": "email", "x-pii": "email"},
        "name": {"type": "string", "x-pii": "name"},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
        "age": {"type": "integer", "minimum": 0},
    },
}
USER_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}},
        "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
    },
}


def openapi() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/signup": {"post": {
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Signup"}}}},
                "responses": {"201": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/User"}}}}},
            }},
            "/users/{id}": {"get": {
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "integer"}},
                               {"name": "email", "in": "query", "x-pii": "email",
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/User"}}}}},
            }},
        },
        "components": {"schemas": {"Signup": SIGNUP_SCHEMA, "User": USER_SCHEMA}},
    }


@pytest.fixture
def config(tmp_path: Any) -> piimw.Config:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(openapi()))
    return piimw.Config.from_dict({"openapi": [str(spec)]})


class Recorder:
    """An app that records what it received and answers with a canned body."""

    def __init__(self, status: int = 200, body: Any = None,
                 content_type: bytes = b"application/json", chunks: int = 1) -> None:
        self.status, self.body, self.content_type, self.chunks = status, body, content_type, chunks
        self.received: bytes = b""
        self.scope: dict[str, Any] = {}
        self.exchange: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.exchange = piimw.current()
        if scope["type"] != "http":
            return
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        self.received = body
        out = self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", self.content_type),
                                (b"content-length", str(len(out)).encode())]})
        step = max(1, len(out) // self.chunks)
        parts = [out[i:i + step] for i in range(0, len(out), step)] or [b""]
        for i, p in enumerate(parts):
            await send({"type": "http.response.body", "body": p,
                        "more_body": i < len(parts) - 1})


async def test_request_passes_and_response_masked(config: piimw.Config) -> None:
    app = Recorder(201, {"id": 1, "email": "jane@example.com", "card": "4242424242424242"})
    mw = PIIMiddleware(app, config)
    body = orjson.dumps({"email": "jane@example.com", "name": "Jane Doe"})
    r = await call(mw, "POST", "/signup", body=body,
                   headers=[("content-type", "application/json")])
    assert r.status == 201
    assert orjson.loads(app.received) == {"email": "jane@example.com", "name": "Jane Doe"}
    assert r.json() == {"id": 1, "email": "j***@example.com", "card": "************4242"}
    assert r.header("content-length") == str(len(r.body))


async def test_gpc_drops_marketing_field_and_sets_vary(config: piimw.Config) -> None:
    app = Recorder(201, {"id": 1})
    mw = PIIMiddleware(app, config)
    body = orjson.dumps({"email": "jane@example.com", "phone": "+14155550100"})
    r = await call(mw, "POST", "/signup", body=body,
                   headers=[("content-type", "application/json"), ("sec-gpc", "1")])
    assert r.status == 201
    received = orjson.loads(app.received)
    assert "phone" not in received
    assert dict(app.scope["headers"])[b"content-length"] == str(len(app.received)).encode()
    assert r.header("vary") == "Sec-GPC"


@pytest.mark.parametrize(("header", "consent", "vary"), [
    (("cookie", "sid=1; usprivacy=1YYN"), {}, "Cookie"),
    (("x-usp", "1YYN"), {"usprivacy_sources": ["header:X-USP"]}, "x-usp"),
    (("dnt", "1"), {}, "DNT, X-Do-Not-Track"),
])
async def test_vary_names_the_header_a_signal_came_from(
        tmp_path: Any, header: tuple[str, str], consent: dict[str, Any], vary: str) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(openapi()))
    config = piimw.Config.from_dict({"openapi": [str(spec)], "consent": consent})
    app = Recorder(201, {"id": 1})
    body = orjson.dumps({"email": "jane@example.com", "phone": "+14155550100"})
    r = await call(PIIMiddleware(app, config), "POST", "/signup", body=body,
                   headers=[("content-type", "application/json"), header])
    assert "phone" not in orjson.loads(app.received)
    assert r.header("vary") == vary


async def test_validation_error_is_problem_json_without_values(config: piimw.Config) -> None:
    app = Recorder()
    mw = PIIMiddleware(app, config)
    body = orjson.dumps({"email": "not-an-email-secretvalue", "age": "old-secretvalue",
                         "extra": "x"})
    r = await call(mw, "POST", "/signup", body=body,
                   headers=[("content-type", "application/json")])
    assert r.status == 422
    assert r.header("content-type") == "application/problem+json"
    assert b"secretvalue" not in r.body
    doc = r.json()
    assert {"pointer": "/age", "keyword": "type"} in doc["errors"]
    assert app.received == b""  # the app never ran


@pytest.mark.parametrize(
    ("body", "ctype", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"<xml/>", "application/xml", 415),
        (b"", "application/json", 422),
    ],
)
async def test_bad_requests_fail_closed(config: piimw.Config, body: bytes, ctype: str,
                                        status: int) -> None:
    app = Recorder()
    r = await call(PIIMiddleware(app, config), "POST", "/signup", body=body,
                   headers=[("content-type", ctype)])
    assert r.status == status
    assert r.header("content-type") == "application/problem+json"


async def test_oversized_body_is_413(config: piimw.Config) -> None:
    config.max_body_bytes = 100
    app = Recorder()
    big = orjson.dumps({"email": "a@example.com", "name": "x" * 200})
    r = await call(PIIMiddleware(app, config), "POST", "/signup", body=[big[:50], big[50:]],
                   headers=[("content-type", "application/json")])
    assert r.status == 413


async def test_chunked_request_body_is_reassembled(config: piimw.Config) -> None:
    app = Recorder(201, {"id": 1})
    body = orjson.dumps({"email": "jane@example.com", "name": "Jane"})
    r = await call(PIIMiddleware(app, config), "POST", "/signup",
                   body=[body[:5], body[5:20], body[20:]],
                   headers=[("content-type", "application/json")])
    assert r.status == 201
    assert app.received == body


async def test_chunked_response_is_buffered_and_rewritten(config: piimw.Config) -> None:
    app = Recorder(200, {"id": 7, "email": "zed@example.com"}, chunks=4)
    r = await call(PIIMiddleware(app, config), "GET", "/users/7")
    assert r.json()["email"] == "z***@example.com"
    assert len([m for m in r.messages if m["type"] == "http.response.body"]) == 1


async def test_gzip_response(config: piimw.Config) -> None:
    raw = orjson.dumps({"id": 7, "email": "zed@example.com"})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = gzip.compress(raw)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
            (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    r = await call(PIIMiddleware(app, config), "GET", "/users/7")
    assert orjson.loads(gzip.decompress(r.body))["email"] == "z***@example.com"
    assert r.header("content-length") == str(len(r.body))


async def test_unparseable_response_is_withheld(config: piimw.Config,
                                                caplog: pytest.LogCaptureFixture) -> None:
    app = Recorder(200, b"{broken jane@example.com")
    with caplog.at_level(logging.WARNING, logger="piimw"):
        r = await call(PIIMiddleware(app, config), "GET", "/users/7")
    assert r.status == 500
    assert b"jane" not in r.body
    assert "jane" not in caplog.text


async def test_oversized_response_is_withheld(config: piimw.Config) -> None:
    config.max_response_bytes = 50
    app = Recorder(200, {"id": 7, "email": "zed@example.com", "pad": "x" * 100}, chunks=3)
    r = await call(PIIMiddleware(app, config), "GET", "/users/7")
    assert r.status == 500
    assert b"zed" not in r.body


async def test_query_string_plan_and_known_values(config: piimw.Config) -> None:
    app = Recorder(200, {"id": 7})
    r = await call(PIIMiddleware(app, config), "GET", "/users/7",
                   query=b"email=q%40example.com&x=1")
    assert r.status == 200
    assert app.exchange is not None
    assert app.exchange.known.find("contact q@example.com")


async def test_error_page_scrubbed_by_known_values(config: piimw.Config) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        name = orjson.loads(body)["name"]
        page = f"<h1>Error</h1><pre>IntegrityError: Key (name)=({name}) exists</pre>".encode()
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": page})

    body = orjson.dumps({"email": "jane@example.com", "name": "Zebulon Quark"})
    r = await call(PIIMiddleware(app, config), "POST", "/signup", body=body,
                   headers=[("content-type", "application/json")])
    assert r.status == 500
    assert b"Zebulon" not in r.body
    assert b"[REDACTED:name]" in r.body


async def test_unplanned_route_passes_through_untouched(config: piimw.Config) -> None:
    app = Recorder(200, {"email": "free@example.com"})
    body = b"raw bytes"
    r = await call(PIIMiddleware(app, config), "POST", "/other", body=body,
                   headers=[("content-type", "text/plain")])
    assert r.status == 200
    assert app.received == body
    assert r.json() == {"email": "free@example.com"}


async def test_unplanned_route_with_a_signal_passes_through_and_keeps_the_consent(
        config: piimw.Config) -> None:
    """A signal does not make a route without a plan inspected (nothing there would change);
    the app, its logs and its error pages still see the consent through the exchange."""
    app = Recorder(200, {"email": "free@example.com"})
    body = b"raw bytes"
    r = await call(PIIMiddleware(app, config), "POST", "/other", body=body,
                   headers=[("content-type", "text/plain"), ("sec-gpc", "1")])
    assert r.status == 200
    assert app.received == body
    assert "vary" not in dict(r.headers)
    assert app.exchange.passthrough
    assert app.exchange.consent.opted_out_of("marketing") == "gpc"

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        exchange = piimw.current()
        assert exchange is not None
        assert exchange.consent.opted_out_of("marketing") == "gpc"
        page = b"<pre>lookup failed for jane@example.com</pre>"
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": page})

    r = await call(PIIMiddleware(failing, config), "GET", "/other",
                   headers=[("sec-gpc", "1")])
    assert r.status == 500
    assert b"jane@example.com" not in r.body


async def test_websocket_and_lifespan_pass_through(config: piimw.Config) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = PIIMiddleware(app, config)
    await mw({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    await mw({"type": "websocket", "path": "/ws"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan", "websocket"]


async def test_disconnect_while_reading_body(config: piimw.Config) -> None:
    app = Recorder()
    mw = PIIMiddleware(app, config)
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(m: Any) -> None:
        messages.append(m)

    scope = {"type": "http", "method": "POST", "path": "/signup", "query_string": b"",
             "headers": [(b"content-type", b"application/json")]}
    await mw(scope, receive, send)
    assert messages == []
    assert app.received == b""


async def test_replayed_receive_then_disconnect(config: piimw.Config) -> None:
    got: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        got.append((await receive())["type"])
        got.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    body = orjson.dumps({"email": "jane@example.com"})
    r = await call(PIIMiddleware(app, config), "POST", "/signup", body=body,
                   headers=[("content-type", "application/json")])
    assert r.status == 204
    assert got == ["http.request", "http.disconnect"]


async def test_app_exception_propagates_without_response(config: piimw.Config) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await call(PIIMiddleware(app, config), "GET", "/users/1")


async def test_streaming_sse_passes_through(config: piimw.Config) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    r = await call(PIIMiddleware(app, config), "GET", "/users/1")
    assert len([m for m in r.messages if m["type"] == "http.response.body"]) == 4


async def test_trailers_pass_after_rewritten_body(config: piimw.Config) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = orjson.dumps({"id": 1, "email": "zed@example.com"})
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")]})

    r = await call(PIIMiddleware(app, config), "GET", "/users/1")
    assert [m["type"] for m in r.messages] == ["http.response.start", "http.response.body",
                                               "http.response.trailers"]
    assert r.json()["email"] == "z***@example.com"


@pytest.mark.parametrize("body", [orjson.dumps({"id": 1}), b"{not json"])
async def test_trailers_after_an_inspected_body_are_scrubbed(config: piimw.Config,
                                                             body: bytes) -> None:
    """Trailers passed raw after an inspected body, and after a withheld one (found by
    review): a gRPC-style status message may repeat what the body held."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        await send({"type": "http.response.trailers", "headers": [
            (b"grpc-message", b"no account for zed@example.com"), (b"x-checksum", b"1")]})

    r = await call(PIIMiddleware(app, config), "GET", "/users/1")
    assert [m["type"] for m in r.messages] == ["http.response.start", "http.response.body",
                                               "http.response.trailers"]
    trailers = dict(r.messages[-1]["headers"])
    assert b"zed@example.com" not in b"".join(trailers.values())
    if body.startswith(b"{not"):
        assert r.status == 500
        assert trailers == {}
    else:
        assert trailers[b"x-checksum"] == b"1"


async def test_forwarded_client_address_is_a_known_value(config: piimw.Config) -> None:
    app = Recorder(200, {"id": 7})
    await call(PIIMiddleware(app, config), "GET", "/users/7",
               headers=[("x-forwarded-for", "198.51.100.23, 10.0.0.1"),
                        ("forwarded", 'for="[2001:db8::7]";proto=https')])
    known = app.exchange.known
    assert known.find("GET /users/7 from 198.51.100.23")
    assert known.find("client 2001:db8::7 said hi")
    assert not known.find("proto=https")


def _reject_config(tmp_path: Any) -> piimw.Config:
    schema = {"type": "object", "properties": {
        "ssn": {"type": "string", "x-pii": {"category": "ssn", "action": "reject"}}}}
    (tmp_path / "q.json").write_bytes(orjson.dumps(schema))
    return piimw.Config.from_dict({"routes": [{"route": "GET /lookup",
                                               "query": str(tmp_path / "q.json")}]})


async def test_a_query_parameter_the_policy_rejects_refuses_the_request(tmp_path: Any) -> None:
    """``reject`` on a query parameter let the value through to the app, where the same
    tag in a body gets a 422 (found by review)."""
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["query_string"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    mw = PIIMiddleware(app, _reject_config(tmp_path))
    r = await call(mw, "GET", "/lookup", query=b"ssn=123-45-6789&q=x")
    assert r.status == 422
    assert seen == []
    problem = orjson.loads(r.body)
    assert problem["errors"] == [{"parameter": "ssn", "keyword": "x-pii"}]
    assert b"123-45-6789" not in r.body
    r = await call(mw, "GET", "/lookup", query=b"q=x")
    assert r.status == 204


def test_a_query_parameter_the_policy_rejects_refuses_the_request_wsgi(tmp_path: Any) -> None:
    from werkzeug.test import Client

    from piimw.wsgi import PIIMiddleware as WSGIMiddleware

    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["QUERY_STRING"])
        start_response("204 No Content", [])
        return []

    r = Client(WSGIMiddleware(app, _reject_config(tmp_path))).get(
        "/lookup?ssn=123-45-6789")
    assert r.status_code == 422
    assert seen == []
    assert b"123-45-6789" not in r.data


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE"])
async def test_methods_frameworks_answer_with_the_get_view_follow_its_plan(
        tmp_path: Any, method: str) -> None:
    """HEAD runs the GET view (OPTIONS and TRACE too, in Django's function views), but
    found no route: the view got the raw query, and the response went out unread with the
    ETag of the unscrubbed body (found by review)."""
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(openapi()))
    config = piimw.Config.from_dict({"openapi": [str(spec)], "rules": [
        {"id": "no-email-in", "action": "redact", "category": "email", "sink": "app"}]})
    app = Recorder(200, {"id": 7, "email": "jane@example.com", "card": "4242424242424242"})

    async def with_etag(scope: Any, receive: Any, send: Any) -> None:
        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], (b"etag", b'"raw-body"')]
            await send(message)
        await app(scope, receive, tagged)

    r = await call(PIIMiddleware(with_etag, config), method, "/users/7",
                   query=b"email=jane%40example.com")
    assert app.exchange is not None
    assert app.exchange.route is not None
    assert b"jane" not in app.scope["query_string"]
    assert r.status == 200
    if method == "HEAD":
        assert r.header("etag") is None
        assert r.body == b""
    assert b"jane@example.com" not in r.body
    assert b"4242424242424242" not in r.body
