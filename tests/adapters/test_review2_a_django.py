"""Django: a large download on a planned route streams on (found by review).

Since a type the operation does not declare is read, a file sent where the operation
declares untagged JSON was drained, and one past ``max_response_bytes`` withheld with a 500,
though bytes that are not text pass at a status whose schema tags nothing. Sync and async
streams, and a response held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

pytest.importorskip("django")

from adapters import django_settings
from asgiref.sync import async_to_sync
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.test import RequestFactory, override_settings

from piimw.contrib.django import PIIMiddleware

django_settings.setup()

OPENAPI = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {"/e": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "properties": {"nick": {"type": "string", "x-pii": "name"}}}}}},
        "responses": {
            "200": {"description": "ok", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"id": {"type": "integer"}}}}}},
            "201": {"description": "tagged", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"who": {"type": "string", "x-pii": "name"}}}}}},
        }}}},
}
LIMIT = 1000
CHUNKS = [b"\x89PNG\r\n\x1a\n" + b"\x00" * 592, b"\xff" * 600, b"\x01" * 600]


def _sync() -> Iterator[bytes]:
    yield from CHUNKS


async def _async() -> AsyncIterator[bytes]:
    for chunk in CHUNKS:
        yield chunk


def _response(kind: str, status: int) -> HttpResponseBase:
    if kind == "in memory":
        return HttpResponse(b"".join(CHUNKS), content_type="image/png", status=status)
    content = _sync() if kind == "sync stream" else _async()
    return StreamingHttpResponse(content, content_type="image/png", status=status)


async def _aread(response: HttpResponseBase) -> bytes:
    """The body, read as an ASGI server does: in the loop that ran the middleware."""
    if not response.streaming:
        return response.content
    if response.is_async:
        return b"".join([chunk async for chunk in response.streaming_content])
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", ["in memory", "sync stream", "async stream"])
@pytest.mark.parametrize(("status", "passes"), [(200, True), (201, False)])
def test_a_large_download_streams_on(mode: str, kind: str, status: int, passes: bool,
                                     tmp_path: Path) -> None:
    """(A sync middleware cannot stream an async body on: Django itself reads one whole
    there. It stays withheld.)"""
    spec = tmp_path / "openapi.json"
    spec.write_bytes(orjson.dumps(OPENAPI))

    def view(request: HttpRequest) -> HttpResponseBase:
        return _response(kind, status)

    async def aview(request: HttpRequest) -> HttpResponseBase:
        return _response(kind, status)

    request = RequestFactory().post("/e", b'{"nick": "Ann"}', content_type="application/json")
    with override_settings(PIIMW={"openapi": [str(spec)], "max_response_bytes": LIMIT}):
        if mode == "sync":
            response = PIIMiddleware(view)(request)
            body = async_to_sync(_aread)(response)  # Django's own sync read of an async body
        else:
            async def serve() -> tuple[HttpResponseBase, bytes]:
                response = await PIIMiddleware(aview)(request)
                return response, await _aread(response)

            response, body = async_to_sync(serve)()
    response.close()
    passes = passes and not (mode == "sync" and kind == "async stream")
    if passes:
        assert (response.status_code, body) == (status, b"".join(CHUNKS))
    else:
        assert response.status_code == 500
        assert b"PNG" not in body
