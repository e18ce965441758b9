"""httpx: a transport that applies consent and scrubbing to requests sent to third parties.

Analytics and marketing SDKs built on httpx send events straight to their vendors; nothing in
the web app's request/response cycle sees them. Wrap the client's transport::

    hosts = {"api.segment.io": "analytics", ".doubleclick.net": "marketing"}
    client = httpx.Client(transport=PIITransport(httpx.HTTPTransport(), hosts=hosts))

Requests to listed hosts raise :class:`~piimw.events.BlockedEvent` when the current subject
opted out of the host's use; otherwise their path segments, query values and JSON, form or
text bodies are scrubbed for sink ``event`` (bodies piimw cannot parse are blocked). Other
hosts pass untouched. The request is rewritten in place, so a redirect built from it carries
what was scrubbed.

A request signed before it reaches piimw (AWS SigV4, OAuth 1 body hashes, an HMAC of the
body) and then scrubbed no longer matches its signature: the receiver refuses it, and
never gets the raw value. Sign in a layer after piimw, or send such hosts no PII.

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

    def _scrub(self, request: httpx.Request, body: bytes) -> None:
        """Rewrite ``request`` in place: the client builds a redirect (307, 308) from it, body
        and all; a new request left it holding the raw body, sent on to the redirect's host."""
        host = request.url.host
        use = self._outbound.use_for(host)
        if use is None:
            return
        path, _, query = request.url.raw_path.decode("ascii", "replace").partition("?")
        out = self._outbound.scrub(
            host, use, path=path, query=query,
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"), body=body)
        if out.path is not path or out.query is not query:
            target = out.path + ("?" + out.query if out.query else "")
            request.url = request.url.copy_with(raw_path=target.encode("ascii"))
        if out.body is not body:
            for name in _DROP_HEADERS:
                request.headers.pop(name, None)
            request.headers["Content-Length"] = str(len(out.body))
            request.stream = httpx.ByteStream(out.body)
            request._content = out.body  # what ``request.content`` (and event hooks) show

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._outbound.use_for(request.url.host) is not None:
            self._scrub(request, request.read())
        wrapped = self._wrapped
        if wrapped is None:
            wrapped = self._wrapped = httpx.HTTPTransport()
        if not isinstance(wrapped, httpx.BaseTransport):
            raise TypeError("PIITransport wraps an async transport; use it with AsyncClient")
        return wrapped.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._outbound.use_for(request.url.host) is not None:
            self._scrub(request, await request.aread())
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
