"""httpx: a transport that applies consent and scrubbing to requests sent to third parties.

Analytics and marketing SDKs built on httpx send events straight to their vendors; nothing in
the web app's request/response cycle sees them. Wrap the client's transport::

    hosts = {"api.segment.io": "analytics", ".doubleclick.net": "marketing"}
    client = httpx.Client(transport=PIITransport(httpx.HTTPTransport(), hosts=hosts))

Requests to listed hosts raise :class:`~piimw.events.BlockedEvent` when the current subject
opted out of the host's use; otherwise their query values and JSON, form or text bodies are
scrubbed for sink ``event`` (bodies piimw cannot parse are blocked). Other hosts pass untouched.
One class serves ``Client`` and ``AsyncClient``.
"""

from __future__ import annotations

from collections.abc import Mapping

try:
    import httpx
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError("piimw.contrib.httpx needs httpx: pip install 'piimw[httpx]'") from e

from piimw.events import BlockedEvent, Outbound

__all__ = ["BlockedEvent", "PIITransport"]

_DROP_HEADERS = ("content-length", "transfer-encoding")


class PIITransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Wraps a transport (sync or async); ``hosts`` maps host names to uses."""

    def __init__(self, wrapped: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
                 *, hosts: Mapping[str, str]) -> None:
        self._wrapped = wrapped
        self._outbound = Outbound(hosts)

    def _rewrite(self, request: httpx.Request, body: bytes) -> httpx.Request:
        host = request.url.host
        use = self._outbound.use_for(host)
        if use is None:
            return request
        query = request.url.query.decode("ascii", "replace")
        out = self._outbound.scrub(
            host, use, query=query, content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"), body=body)
        if not out.changed:
            return request
        headers = [(k, v) for k, v in request.headers.multi_items()
                   if k.lower() not in _DROP_HEADERS]
        url = request.url.copy_with(query=out.query.encode("ascii")) \
            if out.query is not query else request.url
        return httpx.Request(request.method, url, headers=headers, content=out.body,
                             extensions=request.extensions)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._outbound.use_for(request.url.host) is not None:
            request = self._rewrite(request, request.read())
        wrapped = self._wrapped
        if wrapped is None:
            wrapped = self._wrapped = httpx.HTTPTransport()
        if not isinstance(wrapped, httpx.BaseTransport):
            raise TypeError("PIITransport wraps an async transport; use it with AsyncClient")
        return wrapped.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._outbound.use_for(request.url.host) is not None:
            request = self._rewrite(request, await request.aread())
        wrapped = self._wrapped
        if wrapped is None:
            wrapped = self._wrapped = httpx.AsyncHTTPTransport()
        if not isinstance(wrapped, httpx.AsyncBaseTransport):
            raise TypeError("PIITransport wraps a sync transport; use it with Client")
        return await wrapped.handle_async_request(request)

    def close(self) -> None:
        if isinstance(self._wrapped, httpx.BaseTransport):
            self._wrapped.close()

    async def aclose(self) -> None:
        if isinstance(self._wrapped, httpx.AsyncBaseTransport):
            await self._wrapped.aclose()
