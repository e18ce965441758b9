"""Threads of one request reading its lazily computed consent (found by review).

The consent is read from the headers on first use. Two threads of one request (Django's
``sync_to_async``, an app fanning work out with a copied context) may ask at once, or one may
ask while another adds a session or registry opt-out: no reader may store a consent that
drops what another found or added. Each interleaving is forced with a trace hook.
"""

from __future__ import annotations

import inspect
import sys
import threading

import piimw
from piimw.consent import Consent
from piimw.exchange import Exchange
from piimw.wsgi import deferred_headers


def _environ(**extra: str) -> dict[str, str]:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "",
            "SERVER_NAME": "x", "SERVER_PORT": "80", "HTTP_HOST": "x", **extra}


def _exchange() -> Exchange:
    config = piimw.Config()
    environ = _environ(HTTP_SEC_GPC="1")
    headers, signals = deferred_headers(environ, config.consent_settings)
    # Exactly what piimw.wsgi.PIIMiddleware.__call__ builds for a route without a plan.
    return Exchange(config, "GET", "/", headers, b"", None, signals, None, None)


def test_concurrent_first_reads_of_a_deferred_consent_never_lose_the_opt_out() -> None:
    ex = _exchange()
    prop = Exchange.__dict__.get("consent")
    target = None
    if isinstance(prop, property):
        code = prop.fget.__code__
        lines, start = inspect.getsourcelines(prop.fget)
        target = next(start + i for i, line in enumerate(lines)
                      if line.strip() == "if consent is None:")
    b_paused, a_done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line" and frame.f_lineno == target and not b_paused.is_set():
            b_paused.set()
            a_done.wait(5)
        return local

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if target is not None and frame.f_code is code:
            return local
        return None

    def thread_b() -> None:
        sys.settrace(tracer)
        try:
            seen["b"] = ex.consent.opted_out_of("marketing")
        finally:
            sys.settrace(None)

    t = threading.Thread(target=thread_b)
    t.start()
    assert b_paused.wait(5)
    seen["a"] = ex.consent.opted_out_of("marketing")  # thread A (this one)
    a_done.set()
    t.join(5)
    assert (seen["a"], seen["b"], ex.consent.opted_out_of("marketing")) == (
        "gpc", "gpc", "gpc"), "(thread A, thread B, consent stored afterwards)"



def test_a_first_read_does_not_undo_a_concurrent_set_consent() -> None:
    config = piimw.Config()
    ex = Exchange(config, "GET", "/", [(b"host", b"x"), (b"sec-gpc", b"1")], b"", None,
                  None, None, None)  # ASGI, route without a plan
    paused, resume = threading.Event(), threading.Event()

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "return" and not paused.is_set():  # _header_signals has its answer
            paused.set()
            resume.wait(5)
        return local

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        if frame.f_code.co_name == "_header_signals":
            return local
        return None

    def reader() -> None:
        sys.settrace(tracer)
        try:
            ex.consent  # noqa: B018 (the first read is the call under test)
        finally:
            sys.settrace(None)

    t = threading.Thread(target=reader)
    t.start()
    assert paused.wait(5)
    adder = threading.Thread(
        target=ex.set_consent, args=(Consent.opt_out(["analytics"], signal="session"),))
    adder.start()
    adder.join(0.2)  # it waits for the first read to finish
    resume.set()
    t.join(5)
    adder.join(5)
    assert ex.consent.opted_out_of("marketing") == "gpc"
    assert ex.consent.opted_out_of("analytics") == "session", "session opt-out lost"
