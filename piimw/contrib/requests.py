"""requests: an adapter that applies consent and scrubbing to requests sent to third parties.

Mount it for the vendors' URLs (or for every ``https://`` URL; unlisted hosts pass)::

    session = requests.Session()
    session.mount("https://", PIIAdapter(hosts={"api.segment.io": "analytics"}))

Requests to listed hosts raise :class:`~piimw.events.BlockedEvent` when the current subject
opted out of the host's use; otherwise their path segments, query values and JSON, form or
text bodies are scrubbed for sink ``event``. Streamed bodies (generators, files) to listed
hosts cannot be inspected and are blocked.

A request signed before it reaches piimw (AWS SigV4, OAuth 1 body hashes, an HMAC of the
body) and then scrubbed no longer matches its signature: the receiver refuses it, and
never gets the raw value. Sign in a layer after piimw, or send such hosts no PII.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from requests import PreparedRequest, Response
    from requests.adapters import HTTPAdapter
except ImportError as e:  # pragma: no cover - exercised without requests
    raise ImportError("piimw.contrib.requests needs requests: pip install requests") from e

from piimw.events import BlockedEvent, Outbound

__all__ = ["BlockedEvent", "PIIAdapter"]


class PIIAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that scrubs (or blocks) requests to the configured ``hosts``."""

    __attrs__ = [*HTTPAdapter.__attrs__, "hosts"]

    def __init__(self, hosts: Mapping[str, str], *args: Any, **kwargs: Any) -> None:
        self.hosts = dict(hosts)
        self._outbound = Outbound(self.hosts)
        super().__init__(*args, **kwargs)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._outbound = Outbound(self.hosts)

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname
        use = self._outbound.use_for(host)
        if use is None or host is None:
            return super().send(request, *args, **kwargs)
        body = request.body
        if isinstance(body, str):
            raw = body.encode("utf-8")
        elif body is None or isinstance(body, bytes):
            raw = body or b""
        else:
            self._outbound.check(host, use)  # consent first: a refusal names the real reason
            raise BlockedEvent(use, "streamed body", host=host)
        out = self._outbound.scrub(
            host, use, path=parts.path, query=parts.query,
            content_type=_text(request.headers.get("Content-Type")),
            content_encoding=_text(request.headers.get("Content-Encoding")), body=raw)
        # In place, not on a copy: the session builds a redirect (307, 308) from this request,
        # body and all, and sends it through whichever adapter its new URL is mounted on.
        if out.path is not parts.path or out.query is not parts.query:
            request.url = urlunsplit(parts._replace(path=out.path, query=out.query))
        if out.body is not raw:
            request.body = out.body
            request.headers["Content-Length"] = str(len(out.body))
        return super().send(request, *args, **kwargs)


def _text(value: str | bytes | None) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value
