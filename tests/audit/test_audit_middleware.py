"""End to end through the ASGI middleware, as wired by the proposed integration: canaries
planted everywhere a request can carry them never reach the trail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asgi_driver import call
from audit_helpers import PLANTED, make_config, trail_for

from piimw.asgi import PIIMiddleware
from piimw.audit import AuditTrail
from piimw.audit.records import AuditKey
from piimw.audit.verify import verify


class AuditedMiddleware(PIIMiddleware):
    """What asgi.py does once integrated: record the exchange when the request ends."""

    def __init__(self, app: Any, config: Any, trail: AuditTrail) -> None:
        super().__init__(app, config)
        self.trail = trail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        seen: dict[str, Any] = {}

        def prepare(exchange: Any, scope: Any) -> None:
            seen["exchange"] = exchange

        self.prepare = prepare  # type: ignore[method-assign]
        try:
            await super().__call__(scope, receive, send)
        finally:
            if "exchange" in seen:
                self.trail.record_exchange(seen["exchange"])


async def app(scope: Any, receive: Any, send: Any) -> None:
    msg = await receive()
    body = json.loads(msg.get("body") or b"{}") if msg["type"] == "http.request" else {}
    out = json.dumps({"id": 1, "email": body.get("email", "x@example.com"),
                      "friends": [{"email": "bob.canary@example.org"}],
                      "debug": "card 4242 4242 4242 4242 of Janet Canary"}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})


async def test_canaries_never_reach_the_trail(tmp_path: Path, schemas: Path,
                                              audit_key: AuditKey) -> None:
    config = make_config(schemas)
    path = tmp_path / "audit.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key, checkpoint_every=3)
    mw = AuditedMiddleware(app, config, trail)
    body = json.dumps({"email": "jane.canary@example.com", "card": "4111 1111 1111 1111",
                       "name": "Janet Canary",
                       "extra": {"carol.canary@example.net": "dave.canary@example.com"}}).encode()
    for headers in ([("content-type", "application/json"), ("Sec-GPC", "1"),
                     ("Authorization", "Bearer tok-canary-secret-123456")],
                    [("content-type", "application/json"),
                     ("Cookie", "sid=tok-canary-secret-123456")]):
        r = await call(mw, "POST", "/signup", body=body, headers=headers,
                       query=b"ref=jane.canary%40example.com")
        assert r.status == 200
    await call(mw, "GET", "/people/jane.canary@example.com", headers=[("DNT", "1")])
    await call(mw, "PUT", "/profile", body=b'{"nickname": "subject-canary-42"}',
               headers=[("content-type", "application/json")])
    trail.close()
    text = path.read_text()
    kinds = [json.loads(line)["kind"] for line in text.splitlines()]
    # The two signups, the DNT request and the profile update: its answer, which the route
    # does not describe, is scanned as text and shows a card and addresses.
    assert kinds.count("request") == 4
    for value in (*PLANTED, "canary", "203.0.113.9", "people"):
        assert value not in text, value
    assert verify([str(path)], audit_key).ok
