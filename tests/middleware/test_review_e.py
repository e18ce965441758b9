"""Responses on a planned route that piimw passed on unread (found by a black-box run of
small Starlette, Flask and Django apps under uvicorn and gunicorn).

A status the operation does not describe (a 201 where 200 is declared, a 202 declared
without content) had no plan, so a text or JSON body quoting the request's tagged name went
to the client as it was; so did an SVG image (``image/svg+xml``) or a ``multipart/mixed``
body where JSON was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi_driver import call
from werkzeug.test import Client

import piimw
from piimw.asgi import PIIMiddleware as ASGIMiddleware
from piimw.wsgi import PIIMiddleware as WSGIMiddleware

NICK = "Zebulon Quixote"
SSN = "123-45-6789"
BODY = orjson.dumps({"nick": NICK})
OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {"/e": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"nick": {"type": "string", "x-pii": "name"}}}}}},
        "responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"id": {"type": "integer"}}}}}},
            "202": {"description": "accepted, no content declared"}}}}},
}
CASES = {
    "text at an undeclared status": (201, "text/plain", f"created {NICK}".encode()),
    "JSON at a status declared without content": (
        202, "application/json", orjson.dumps({"queued": NICK, "ssn": SSN})),
    "an SVG image where JSON is declared": (
        200, "image/svg+xml", f"<svg><text>{NICK}</text></svg>".encode()),
    "a multipart/mixed body where JSON is declared": (
        200, "multipart/mixed", f"--X\r\nContent-Type: text/plain\r\n\r\n{NICK}\r\n--X--".encode()),
}


@pytest.fixture
def config(tmp_path: Path) -> piimw.Config:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))
    return piimw.Config.from_dict({"openapi": [str(spec)]})


def _asgi_app(status: int, media: str, body: bytes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", media.encode())]})
        await send({"type": "http.response.body", "body": body})
    return app


def _wsgi_app(status: int, media: str, body: bytes) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read()
        start_response(f"{status} X", [("Content-Type", media)])
        return [body]
    return app


def _assert_scrubbed(body: bytes) -> None:
    assert NICK.encode() not in body
    assert SSN.encode() not in body


@pytest.mark.parametrize("case", list(CASES))
async def test_asgi_scans_what_the_plan_does_not_describe(case: str,
                                                          config: piimw.Config) -> None:
    status, media, body = CASES[case]
    app = ASGIMiddleware(_asgi_app(status, media, body), config=config)
    res = await call(app, "POST", "/e", body=BODY,
                     headers=[("content-type", "application/json")])
    assert res.status == status
    _assert_scrubbed(res.body)
    assert b"[REDACTED:name]" in res.body


@pytest.mark.parametrize("case", list(CASES))
def test_wsgi_scans_what_the_plan_does_not_describe(case: str, config: piimw.Config) -> None:
    status, media, body = CASES[case]
    app = WSGIMiddleware(_wsgi_app(status, media, body), config=config)
    res = Client(app).post("/e", data=BODY, headers={"Content-Type": "application/json"})
    data = res.data
    res.close()
    assert res.status_code == status
    _assert_scrubbed(data)
    assert b"[REDACTED:name]" in data


async def test_a_route_without_a_plan_still_streams_untouched(config: piimw.Config) -> None:
    """The fast path stays: a route piimw has no plan for is not read at any 2xx status."""
    app = ASGIMiddleware(_asgi_app(201, "text/plain", f"hi {NICK}".encode()), config=config)
    res = await call(app, "POST", "/elsewhere", body=BODY,
                     headers=[("content-type", "application/json")])
    assert res.body == f"hi {NICK}".encode()
