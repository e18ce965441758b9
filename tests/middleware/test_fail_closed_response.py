"""An internal error while inspecting a response withholds it, in every adapter.

The fail-closed handling lives in the exchange (``wants_response_body``, ``response_body``),
so ASGI, WSGI and Django share it; these tests break the scrubber and look at what leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
from asgi_driver import call
from werkzeug.test import Client

import piimw
from piimw.asgi import PIIMiddleware as ASGIMiddleware
from piimw.exchange import Exchange
from piimw.wsgi import PIIMiddleware as WSGIMiddleware

EMAIL = "withheld.canary@example.com"
SCHEMA = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}}}}
JSON = [(b"content-type", b"application/json")]


@pytest.fixture
def config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> piimw.Config:
    (tmp_path / "resp.json").write_bytes(orjson.dumps(SCHEMA))
    cfg = piimw.Config.from_dict({"routes": [
        {"route": "GET /me", "response": str(tmp_path / "resp.json")}]})

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"internal failure near {EMAIL}")  # must not be logged

    monkeypatch.setattr(cfg.scrubber, "scrub", broken)
    return cfg


def test_exchange_withholds_and_logs_without_values(
        config: piimw.Config, caplog: pytest.LogCaptureFixture) -> None:
    ex = Exchange(config, "GET", "/me", [])
    with caplog.at_level(logging.ERROR, logger="piimw"):
        out = ex.response_body(200, JSON, orjson.dumps({"email": EMAIL}))
    assert out.status == 500
    assert EMAIL.encode() not in out.body
    assert "inspection failed (RuntimeError); withheld" in caplog.text
    assert EMAIL not in caplog.text


def test_exchange_buffers_when_it_cannot_decide(
        config: piimw.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Exchange, status: int, headers: Any) -> bool:
        raise KeyError("internal")

    monkeypatch.setattr(Exchange, "_wants_response_body", broken)
    ex = Exchange(config, "GET", "/elsewhere", [])
    assert ex.wants_response_body(200, JSON) is True


async def test_asgi_withholds(config: piimw.Config) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": orjson.dumps({"email": EMAIL})})

    r = await call(ASGIMiddleware(app, config), "GET", "/me")
    assert r.status == 500
    assert EMAIL.encode() not in r.body


def test_wsgi_withholds(config: piimw.Config) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [orjson.dumps({"email": EMAIL})]

    r = Client(WSGIMiddleware(app, config)).get("/me", buffered=True)  # closes the iterable
    assert r.status_code == 500
    assert EMAIL.encode() not in r.data
    assert piimw.current() is None  # the request's context was left
