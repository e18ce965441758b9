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
    "paths": {"/e": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"nick": {"type": "string", "x-pii": "name"}}}}}},
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}}}}},
}


def _chunks(nick: str) -> Iterator[bytes]:
    yield b'{"id": 1, '
    raise RuntimeError(f"stream died for {nick}")


async def _achunks(nick: str) -> AsyncIterator[bytes]:
    yield b'{"id": 1, '
    raise RuntimeError(f"stream died for {nick}")


def _view(request: HttpRequest) -> StreamingHttpResponse:
    nick = orjson.loads(request.body)["nick"]
    return StreamingHttpResponse(_chunks(nick), content_type="application/json")


async def _async_view(request: HttpRequest) -> StreamingHttpResponse:
    nick = orjson.loads(request.body)["nick"]
    return StreamingHttpResponse(_achunks(nick), content_type="application/json")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_exception_from_a_streaming_body_is_sanitized(mode: str, tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))
    request = RequestFactory().post("/e", orjson.dumps({"nick": NICK}),
                                    content_type="application/json")
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        if mode == "sync":
            middleware: Any = PIIMiddleware(_view)
            call = middleware
        else:
            middleware = PIIMiddleware(_async_view)
            call = async_to_sync(middleware)
        with pytest.raises(Exception) as caught:
            call(request)
    shown = "".join(traceback.format_exception(caught.value))
    assert "stream died for" in shown
    assert NICK not in shown
