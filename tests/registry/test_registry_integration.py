"""The integrated middleware: registry consent per request, gpc.json, the opt-out API.

Active once the integration diff (Exchange.resolve_consent, Config.registry, the middleware's
privacy endpoints) is applied; until then it is skipped with that reason.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from asgi_driver import call

from piimw.asgi import PIIMiddleware
from piimw.exchange import Exchange

pytestmark = pytest.mark.skipif(not hasattr(Exchange, "resolve_consent"),
                                reason="registry integration diff not applied yet")


class AuthMiddleware(PIIMiddleware):
    """What an adapter adds: the signed-in user (here from a fake header, for the test)."""

    def user_id(self, scope: Any) -> str | None:
        for k, v in scope["headers"]:
            if k == b"x-test-user":
                return v.decode()
        return None


async def echo(scope: Any, receive: Any, send: Any) -> None:
    consent = scope["piimw"].consent
    body = orjson.dumps({u: consent.opted_out_of(u) for u in sorted(consent.opted_out_uses)})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def test_registry_in_the_middleware(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", "registry-test-key-0123456789")
    app = AuthMiddleware(echo, {
        "registry": {"url": f"sqlite:///{tmp_path / 'r.db'}",
                     "api": {"path": "/privacy/preferences"}},
        "consent": {"gpc_json": {"last_update": "2024-05-01"}}})
    r = await call(app, "GET", "/.well-known/gpc.json")
    assert r.json() == {"gpc": True, "lastUpdate": "2024-05-01"}
    alice = [("x-test-user", "alice")]
    r = await call(app, "GET", "/x", headers=[*alice, ("sec-gpc", "1")])
    assert r.json() == {"marketing": "gpc", "third_party": "gpc"}
    r = await call(app, "GET", "/x", headers=alice)
    assert r.json() == {"marketing": "registry", "third_party": "registry"}
    r = await call(app, "GET", "/x")
    assert r.json() == {}
    r = await call(app, "PUT", "/privacy/preferences", body=orjson.dumps(
        {"opt_out": {"uses": ["analytics"]}}), headers=[
        *alice, ("sec-fetch-site", "same-origin"), ("content-type", "application/json")])
    assert r.status == 200
    r = await call(app, "GET", "/x", headers=alice)
    assert r.json() == {"analytics": "registry", "marketing": "registry",
                        "third_party": "registry"}
    r = await call(app, "GET", "/x", headers=[("cookie", "usprivacy=1YYN")])
    assert r.json() == {"marketing": "usprivacy", "third_party": "usprivacy"}
    app.config.registry.close()
