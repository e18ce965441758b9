"""Mounting the sans-IO pieces in a raw ASGI app: what an adapter does, in ~40 lines.

The app resolves consent per request (headers + GPP/usprivacy + session + registry), serves
``/.well-known/gpc.json``, and mounts the opt-out API for the signed-in user, who comes from the
app's own authentication (here: a fake session cookie), never from the URL or the body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from asgi_driver import call

from piimw import consent as consent_mod
from piimw import signals
from piimw.optout_api import GPC_JSON_PATH, OptOutAPI, gpc_json_response
from piimw.registry import Registry
from piimw.signals import ConsentSettings, GpcJson, Source
from piimw.transform import Hasher

SESSIONS = {"s-alice": "alice", "s-bob": "bob"}


def make_app(registry: Registry, settings: ConsentSettings) -> Any:
    api = OptOutAPI(registry)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = list(scope["headers"])
        cookies = dict(p.strip().split("=", 1) for h in (v for k, v in headers if k == b"cookie")
                       for p in h.decode().split(";") if "=" in p)
        user = SESSIONS.get(cookies.get("session", ""))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == GPC_JSON_PATH:
            answer = gpc_json_response(settings, scope["method"])
            assert answer is not None
        elif scope["path"] == "/privacy/preferences":
            answer = api.handle(scope["method"], user, body, headers)
        else:
            header_consent = consent_mod.from_headers(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in headers).merge(
                signals.from_request(headers, settings))
            subject = registry.subject_for(user) if user else None
            consent = registry.consent_for(subject, header_consent)
            doc = {"opted_out": sorted(consent.opted_out_uses),
                   "why": {u: consent.opted_out_of(u) for u in sorted(consent.opted_out_uses)}}
            payload = orjson.dumps(doc)
            answer = (200, [(b"content-type", b"application/json")], payload)
        status, out_headers, payload = answer
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": payload})

    return app


@pytest.fixture
def registry(hasher: Hasher, tmp_path: Any) -> Iterator[Registry]:
    with Registry(f"sqlite:///{tmp_path / 'r.db'}", hasher) as registry:
        yield registry


async def test_mounted_endpoints(registry: Registry) -> None:
    settings = ConsentSettings(gpp_sources=(Source("cookie", "__gpp"),),
                               gpc_json=GpcJson(last_update="2024-05-01"))
    app = make_app(registry, settings)
    r = await call(app, "GET", GPC_JSON_PATH)
    assert r.status == 200
    assert r.json() == {"gpc": True, "lastUpdate": "2024-05-01"}

    alice = [("cookie", "session=s-alice"), ("host", "app.example")]
    r = await call(app, "GET", "/page", headers=[*alice, ("sec-gpc", "1")])
    assert r.json()["why"] == {"marketing": "gpc", "third_party": "gpc"}
    r = await call(app, "GET", "/page", headers=alice)  # sticky: no signal, still opted out
    assert r.json()["why"] == {"marketing": "registry", "third_party": "registry"}

    r = await call(app, "PUT", "/privacy/preferences", headers=[
        *alice, ("origin", "https://evil.example"), ("content-type", "application/json")],
        body=orjson.dumps({"opt_in": {"uses": ["marketing"]}}))
    assert r.status == 403
    r = await call(app, "PUT", "/privacy/preferences", headers=[
        *alice, ("sec-fetch-site", "same-origin"), ("content-type", "application/json")],
        body=orjson.dumps({"opt_in": {"uses": ["marketing"]}}))
    assert r.status == 200
    r = await call(app, "GET", "/page", headers=[*alice, ("sec-gpc", "1")])
    assert r.json()["opted_out"] == ["third_party"]  # her later opt-in beats the GPC signal

    r = await call(app, "GET", "/privacy/preferences")
    assert r.status == 401
    r = await call(app, "GET", "/page", headers=[("cookie", "session=s-bob; usprivacy=1YYN")])
    assert r.json()["why"] == {"marketing": "usprivacy", "third_party": "usprivacy"}
