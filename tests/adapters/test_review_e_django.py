"""Django: an exception leaving piimw's middleware is sanitized before Django logs it.

Found by a black-box run under gunicorn and uvicorn: a streaming body that raised while piimw
read it (a planned JSON response) left the middleware with the request's tagged name in its
message; Django's handler logged it (and a debug page would show it) after the request's
known values were gone, so the name reached the error log raw.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("django")

from adapters import django_settings
from asgiref.sync import async_to_sync
from django.http import HttpRequest, StreamingHttpResponse
from django.test import RequestFactory, override_settings

from piimw.contrib.django import PIIMiddleware

django_settings.setup()

NICK = "Zebulon Quixote"
OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {
        "/e": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"nick": {"type": "string", "x-pii": "name"}}}}}},
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}}}},
        "/n": {"post": {"responses": {"200": {"description": "a feed", "content": {
            "application/x-ndjson": {"schema": {"type": "object", "properties": {
                "who": {"type": "string", "x-pii": "name"}}}}}}},
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"nick": {"type": "string", "x-pii": "name"}}}}}}}},
    },
}


def _chunks(nick: str) -> Iterator[bytes]:
    yield b'{"id": 1, '
    raise RuntimeError(f"stream died for {nick}")


async def _achunks(nick: str) -> AsyncIterator[bytes]:
    yield b'{"id": 1, '
    raise RuntimeError(f"stream died for {nick}")


def _view(request: HttpRequest) -> StreamingHttpResponse:
    nick = orjson.loads(request.body)["nick"]
    media = "application/json" if request.path == "/e" else "application/x-ndjson"
    return StreamingHttpResponse(_chunks(nick), content_type=media)


async def _async_view(request: HttpRequest) -> StreamingHttpResponse:
    nick = orjson.loads(request.body)["nick"]
    media = "application/json" if request.path == "/e" else "application/x-ndjson"
    return StreamingHttpResponse(_achunks(nick), content_type=media)


def _middleware(mode: str, tmp_path: Path) -> Any:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        if mode == "sync":
            return PIIMiddleware(_view)
        return async_to_sync(PIIMiddleware(_async_view))


def _request(path: str) -> HttpRequest:
    return RequestFactory().post(path, orjson.dumps({"nick": NICK}),
                                 content_type="application/json")


def _assert_sanitized(exc: BaseException) -> None:
    assert NICK not in "".join(traceback.format_exception(exc))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_exception_from_a_streaming_body_is_sanitized(mode: str, tmp_path: Path) -> None:
    """Read by piimw (a planned JSON response): it raises inside the middleware."""
    with pytest.raises(Exception, match="stream died for") as caught:
        _middleware(mode, tmp_path)(_request("/e"))
    _assert_sanitized(caught.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_exception_from_a_streamed_body_is_sanitized(mode: str, tmp_path: Path) -> None:
    """Streamed on (tagged JSON lines): it raises while the server reads the body, which
    gunicorn logs after closing the response, the request's known values gone."""
    response = _middleware(mode, tmp_path)(_request("/n"))
    consume = list if mode == "sync" else async_to_sync(_consume)
    with pytest.raises(Exception, match="stream died for") as caught:
        consume(response.streaming_content)
    response.close()
    _assert_sanitized(caught.value)


async def _consume(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass
