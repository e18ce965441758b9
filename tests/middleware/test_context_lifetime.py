"""The request's exchange is current for the request, not for what outlives it.

Event loops copy the context into callbacks scheduled during a request (uvicorn's keep-alive
timer, ``loop.call_later`` in a handler): those copies must neither keep the exchange (and the
values it remembers) alive nor see a finished request as current.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import orjson
from asgi_driver import call

import piimw
from piimw.asgi import PIIMiddleware
from piimw.exchange import Exchange, activate, current

SCHEMA = {"type": "object", "properties": {"email": {"type": "string", "x-pii": "email"}}}


def config() -> piimw.Config:
    return piimw.Config.from_dict({}, openapi_documents={"<t>": {
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/signup": {"post": {
            "requestBody": {"content": {"application/json": {"schema": SCHEMA}}},
            "responses": {"200": {"description": "ok"}}}}}}})


async def test_a_callback_scheduled_during_the_request_outlives_it_without_the_exchange(
) -> None:
    loop = asyncio.get_running_loop()
    seen: dict[str, Any] = {}
    fired = asyncio.Event()

    def later() -> None:  # runs in a copy of the request's context, after the request
        seen["later"] = current()
        fired.set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen["during"] = weakref.ref(current())  # type: ignore[arg-type]
        loop.call_later(0.05, later)  # like uvicorn's keep-alive timer
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    for path in ("/signup", "/elsewhere"):  # a route with a plan, and one passed through
        r = await call(PIIMiddleware(app, config()), "POST", path,
                       body=orjson.dumps({"email": "ann@example.com"}),
                       headers=[("content-type", "application/json")])
        assert r.status == 200
        gc.collect()
        assert seen["during"]() is None, f"{path}: the exchange outlived its request"
        await asyncio.wait_for(fired.wait(), 5)
        fired.clear()
        assert seen["later"] is None, f"{path}: a finished request was still current"


def test_activate_nests_and_empties_its_slot() -> None:
    cfg = config()
    outer = Exchange(cfg, "GET", "/a", [])
    inner = Exchange(cfg, "GET", "/b", [])
    with activate(outer):
        with activate(inner):
            assert current() is inner
        assert current() is outer
    assert current() is None


def test_a_context_never_left_frees_its_exchange_without_the_garbage_collector() -> None:
    """A request whose context is never left (an exception an outer middleware answers) must
    not keep its exchange in a reference cycle: freed with the context, not at the next
    collection."""
    import contextvars

    from piimw.exchange import enter

    exchange = Exchange(config(), "GET", "/a", [])
    ref = weakref.ref(exchange)
    context = contextvars.copy_context()
    gc.disable()
    try:
        context.run(enter, exchange)  # the activation is dropped, as when never left
        assert context.run(current) is exchange
        del exchange, context
        assert ref() is None, "the exchange outlived its context (a reference cycle)"
    finally:
        gc.enable()
