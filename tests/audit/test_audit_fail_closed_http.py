"""``on_failure = "fail_closed"`` through each middleware: while the trail cannot record, a
request whose route touches sensitive-tier data (a card) gets a 503 problem before the app
runs; other requests, and every request once the trail recovers, are served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_driver import call
from audit_helpers import FlakySink, flaky_trail, make_config
from werkzeug.test import Client
from werkzeug.wrappers import Response

from piimw.asgi import PIIMiddleware as ASGIMiddleware
from piimw.audit import AuditTrail
from piimw.audit.records import AuditKey
from piimw.config import Config
from piimw.wsgi import PIIMiddleware as WSGIMiddleware

SIGNUP = json.dumps({"email": "jane.canary@example.com", "card": "4111 1111 1111 1111"}).encode()
PROFILE = b'{"nickname": "x"}'

#: (method, path, body) -> (status, content type, body): one framework's request.
Send = Callable[[str, str, bytes], tuple[int, str, bytes]]


@pytest.fixture
def audited(schemas: Path, audit_key: AuditKey) -> Iterator[tuple[Config, AuditTrail, FlakySink]]:
    config = make_config(schemas)
    trail, sink = flaky_trail("fail_closed", audit_key)
    config.audit = trail
    yield config, trail, sink
    trail.close()


def asgi_sender(config: Config, served: list[str]) -> Send:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        served.append(scope["path"])
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"id": 1}'})

    middleware = ASGIMiddleware(app, config)

    def send(method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        r = asyncio.run(call(middleware, method, path, body=body,
                             headers=[("content-type", "application/json")]))
        return r.status, r.header("content-type") or "", r.body

    return send


def wsgi_sender(config: Config, served: list[str]) -> Send:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        served.append(environ["PATH_INFO"])
        environ["wsgi.input"].read()
        return Response(b'{"id": 1}', content_type="application/json")(environ, start_response)

    client = Client(WSGIMiddleware(app, config))

    def send(method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        r = client.open(path, method=method, data=body, content_type="application/json")
        with r:  # closing the body ends the request (a server does it after sending)
            return r.status_code, r.headers.get("content-type", ""), r.get_data()

    return send


def django_sender(config: Config, served: list[str]) -> Send:
    pytest.importorskip("django")
    from adapters import django_settings
    from django.test import Client as DjangoClient
    from django.test import override_settings

    django_settings.setup()

    def send(method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        # /signup is the adapter tests' view; it records nothing here, so count by status.
        with override_settings(PIIMW=config, MIDDLEWARE=[django_settings.PIIMW]):
            r = DjangoClient(raise_request_exception=False).generic(
                method, path, body, content_type="application/json")
        if r.status_code != 503:
            served.append(path)
        return r.status_code, r.headers.get("content-type", ""), bytes(r.content)

    return send


@pytest.mark.parametrize("sender", [asgi_sender, wsgi_sender, django_sender],
                         ids=["asgi", "wsgi", "django"])
def test_sensitive_requests_get_503_while_the_trail_is_down(
        sender: Callable[[Config, list[str]], Send],
        audited: tuple[Config, AuditTrail, FlakySink]) -> None:
    config, trail, sink = audited
    served: list[str] = []
    send = sender(config, served)
    assert send("POST", "/signup", SIGNUP)[0] in (200, 201)
    sink.down = True
    trail.record({"kind": "request", "n": 1})
    trail.flush()
    assert not trail.healthy()
    served.clear()
    status, content_type, body = send("POST", "/signup", SIGNUP)
    assert status == 503
    assert content_type == "application/problem+json"
    assert json.loads(body)["type"].endswith("audit-unavailable")
    assert b"canary" not in body
    assert served == []  # the app never saw it
    # Nothing sensitive on this route: availability first. (The Django URLconf has no
    # /profile view; a 404 from Django still shows piimw let the request through.)
    assert send("PUT", "/profile", PROFILE)[0] != 503
    sink.down = False
    assert _wait(trail.healthy)  # recovered by probing
    assert send("POST", "/signup", SIGNUP)[0] in (200, 201)


def _wait(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False
