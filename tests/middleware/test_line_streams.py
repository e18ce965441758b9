"""Responses streaming JSON lines (NDJSON) whose items are tagged: read line by line.

Buffering such a stream whole stalled it (and past ``max_response_bytes`` made it a 500);
passing it unread let its tagged fields out. Each complete line is scrubbed by the items'
plan and sent on at once; a line that is not JSON is scanned as text.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from asgi_driver import call

import piimw
from piimw.asgi import PIIMiddleware

EMAIL = "jane.doe@example.com"
ITEM = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}},
    "event": {"type": "string"}}}


def _config(tmp_path: Any, content: dict[str, Any]) -> piimw.Config:
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/feed": {
        "get": {"responses": {"200": {"description": "ok", "content": content}}}}}}
    (tmp_path / "openapi.json").write_bytes(orjson.dumps(doc))
    return piimw.Config.from_dict({"openapi": [str(tmp_path / "openapi.json")]})


@pytest.mark.parametrize("content", [
    {"application/x-ndjson": {"itemSchema": ITEM}},  # OpenAPI 3.2, a streaming operation
    {"application/x-ndjson": {"schema": ITEM}},  # how 3.1 documents write it
    {"application/json": {"schema": {"type": "array", "items": ITEM}},
     "application/x-ndjson": {"itemSchema": ITEM}},
])
async def test_lines_are_scrubbed_as_they_stream(tmp_path: Any, content: Any) -> None:
    config = _config(tmp_path, content)
    sent_before_next: list[int] = []
    forwarded: list[bytes] = []
    lines = [orjson.dumps({"event": f"tick {i}", "email": EMAIL}) + b"\n" for i in range(3)]
    chunks = [lines[0] + lines[1][:10], lines[1][10:], b"not json: mail " + EMAIL.encode()
              + b"\n", lines[2][:-1]]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/x-ndjson"), (b"content-length", b"999")]})
        for i, chunk in enumerate(chunks):
            sent_before_next.append(len(forwarded))
            await send({"type": "http.response.body", "body": chunk,
                        "more_body": i < len(chunks) - 1})

    async def record(message: Any) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            forwarded.append(message["body"])

    mw = PIIMiddleware(app, config)
    r = await call(mw, "GET", "/feed")
    assert r.status == 200
    assert r.header("content-length") is None  # the length changes
    assert EMAIL.encode() not in r.body
    out = r.body.split(b"\n")
    assert [orjson.loads(line)["event"] for line in (out[0], out[1], out[3])] == [
        "tick 0", "tick 1", "tick 2"]
    assert orjson.loads(out[0])["email"] == "j***@example.com"
    assert out[2] == b"not json: mail [REDACTED:email]"

    # streamed: the first line went out before the app sent its second chunk
    from piimw.asgi import _Responder
    from piimw.exchange import Exchange

    ex = Exchange(config, "GET", "/feed", [])
    responder = _Responder(ex, record)
    await responder.send({"type": "http.response.start", "status": 200,
                          "headers": [(b"content-type", b"application/x-ndjson")]})
    await responder.send({"type": "http.response.body", "body": lines[0], "more_body": True})
    assert len(forwarded) == 1
    assert EMAIL.encode() not in forwarded[0]


async def test_a_line_longer_than_the_limit_ends_the_stream(tmp_path: Any) -> None:
    config = _config(tmp_path, {"application/x-ndjson": {"itemSchema": ITEM}})
    config.max_response_bytes = 64

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})
        await send({"type": "http.response.body", "body": b'{"event": "ok"}\n',
                    "more_body": True})
        await send({"type": "http.response.body", "body": b'{"email": "' + EMAIL.encode()
                    + b'", "event": "' + b"x" * 100, "more_body": True})
        await send({"type": "http.response.body", "body": b'"}\n', "more_body": False})

    r = await call(PIIMiddleware(app, config), "GET", "/feed")
    assert r.status == 200
    assert r.body == b'{"event": "ok"}\n'


def test_wsgi_lines_are_scrubbed_as_they_stream(tmp_path: Any) -> None:
    from werkzeug.test import Client

    from piimw.wsgi import PIIMiddleware as WSGIMiddleware

    config = _config(tmp_path, {"application/x-ndjson": {"itemSchema": ITEM}})
    pulled: list[int] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "application/x-ndjson"),
                                  ("Content-Length", "999")])
        for i in range(3):
            pulled.append(i)
            yield orjson.dumps({"event": f"tick {i}", "email": EMAIL}) + b"\n"

    r = Client(WSGIMiddleware(app, config)).get("/feed", buffered=False)
    assert "Content-Length" not in r.headers
    first = next(r.response)
    assert pulled == [0]  # streamed: one line read, one line sent
    body = first + b"".join(r.response)
    r.close()
    assert EMAIL.encode() not in body
    assert [orjson.loads(line)["email"] for line in body.splitlines()] == ["j***@example.com"] * 3


# -- found by review of the line streams -------------------------------------------------------
async def _run(config: piimw.Config, messages: list[dict[str, Any]], method: str = "GET",
               headers: list[tuple[bytes, bytes]] | None = None) -> list[dict[str, Any]]:
    """The messages the server gets when the app sends ``messages`` after its start."""
    from piimw.asgi import _Responder
    from piimw.exchange import Exchange

    sent: list[dict[str, Any]] = []

    async def server(message: Any) -> None:
        sent.append(message)

    responder = _Responder(Exchange(config, method, "/feed", []), server)
    await responder.send({"type": "http.response.start", "status": 200, "headers": headers
                          or [(b"content-type", b"application/x-ndjson")],
                          **({"trailers": True} if any(
                              m["type"] == "http.response.trailers" for m in messages) else {})})
    for message in messages:
        await responder.send(message)
    return sent


def _body(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


async def test_lines_only_the_standard_library_reads(tmp_path: Any) -> None:
    """NaN (json.dumps writes it), a BOM, a lone surrogate: scanned as text only, the
    tagged name went out."""
    config = _config(tmp_path, {"application/x-ndjson": {"itemSchema": {
        "type": "object", "properties": {"name": {"type": "string", "x-pii": {
            "category": "name", "action": "redact"}}}}}})
    body = (b'{"name": "Zoe Example", "score": NaN}\n\xef\xbb\xbf{"name": "Zoe Example"}\n'
            b'{"name": "Zoe Example", "s": "\\ud800"}\n')
    sent = await _run(config, [{"type": "http.response.body", "body": body}])
    assert b"Zoe" not in _body(sent)
    assert _body(sent).count(b"[REDACTED:name]") == 3


async def test_a_compressed_stream_gets_the_items_plan(tmp_path: Any) -> None:
    import gzip

    config = _config(tmp_path, {"application/x-ndjson": {"itemSchema": ITEM}})
    raw = orjson.dumps({"email": EMAIL, "event": "e"}) + b"\n"
    sent = await _run(config, [{"type": "http.response.body", "body": gzip.compress(raw)}],
                      headers=[(b"content-type", b"application/x-ndjson"),
                               (b"content-encoding", b"gzip")])
    assert orjson.loads(gzip.decompress(_body(sent)))["email"] == "j***@example.com"


async def test_trailers_files_head_and_vary(tmp_path: Any) -> None:
    marketing = {"type": "object", "properties": {"phone": {"type": "string", "x-pii": {
        "category": "phone", "uses": ["marketing"]}}}}
    config = _config(tmp_path, {"application/jsonl": {"itemSchema": marketing}})
    config.max_response_bytes = 32
    # announced trailers are sent (empty) after a line over the limit ended the stream
    sent = await _run(config, [
        {"type": "http.response.body", "body": b"x" * 40, "more_body": True},
        {"type": "http.response.body", "body": b"\n", "more_body": False},
        {"type": "http.response.trailers", "headers": [(b"x-n", b"1")]}],
        headers=[(b"content-type", b"application/x-ndjson")])  # another name of the type
    assert [m["type"] for m in sent][-1] == "http.response.trailers"
    assert dict(sent[0]["headers"])[b"vary"] == b"DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"
    # a file the server would read itself: never forwarded unread; the stream ends empty
    # (its start goes out at once: a long poll's client must see it; review)
    for kind in ("http.response.pathsend", "http.response.zerocopysend"):
        sent = await _run(config, [{"type": kind, "path": "/etc/hostname"}])
        assert kind not in [m["type"] for m in sent]
        assert _body(sent) == b""
    sent = await _run(config, [])
    assert [m["type"] for m in sent] == ["http.response.start"]
    # HEAD: no body, the GET's headers (its length kept, no ETag, the same Vary; review)
    sent = await _run(config, [{"type": "http.response.body", "body": b""}], method="HEAD",
                      headers=[(b"content-type", b"application/x-ndjson"),
                               (b"content-length", b"42"), (b"etag", b'"v1"')])
    head = dict(sent[0]["headers"])
    assert head[b"content-length"] == b"42"
    assert b"etag" not in head
    assert head[b"vary"] == b"DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"


async def test_a_default_response_is_matched(tmp_path: Any) -> None:
    """``default`` was stored upper-cased and never matched: its body went out unread."""
    config = _config(tmp_path, {"application/json": {"schema": ITEM}})
    doc = orjson.loads((tmp_path / "openapi.json").read_bytes())
    responses = doc["paths"]["/feed"]["get"]["responses"]
    responses["default"] = responses.pop("200")
    (tmp_path / "openapi.json").write_bytes(orjson.dumps(doc))
    config = piimw.Config.from_dict({"openapi": [str(tmp_path / "openapi.json")]})
    sent = await _run(config, [{"type": "http.response.body",
                                "body": orjson.dumps({"email": EMAIL})}],
                      headers=[(b"content-type", b"application/json")])
    assert orjson.loads(_body(sent))["email"] == "j***@example.com"
