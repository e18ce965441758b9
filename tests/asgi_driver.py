"""A tiny ASGI client for raw-ASGI tests: exact control over chunks and disconnects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    messages: list[dict[str, Any]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.decode().lower() == name.lower():
                return v.decode()
        return None

    def json(self) -> Any:
        return orjson.loads(self.body)


async def call(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    body: bytes | Sequence[bytes] = b"",
    headers: Sequence[tuple[str, str]] = (),
    query: bytes = b"",
    client: tuple[str, int] = ("203.0.113.9", 5555),
    disconnect_after_body: bool = True,
) -> Response:
    chunks = [body] if isinstance(body, bytes) else list(body)
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers]
    if isinstance(body, bytes) and body and not any(k == b"content-length" for k, _ in hdrs):
        hdrs.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": hdrs, "client": client, "server": ("127.0.0.1", 8000),
    }
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
               for i, c in enumerate(chunks)]
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body_bytes = b"".join(m.get("body", b"") for m in messages
                          if m["type"] == "http.response.body")
    return Response(start["status"], list(start.get("headers", [])), body_bytes, messages)
