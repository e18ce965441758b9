"""A WSGI response nobody closes does not stay the current request forever.

Servers close every response, and piimw keeps the request current until they do (gunicorn
writes its access line between the last chunk and ``close()``). Werkzeug's and Flask's test
clients close a response only when the test does. A request started in the same context
while an earlier response only waits to be closed ends that earlier request for the app:
otherwise every later request restored it on leaving, and code outside any request (a log
line, an analytics event) saw the stale request's consent and values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("flask")  # tox's Django and Starlette environments have no Flask

from flask import Flask, Response, request, stream_with_context

import piimw
from piimw.contrib.flask import PIIMW
from piimw.exchange import Exchange


def _app(seen: list[Exchange], inner: Flask | None = None) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        seen.append(request.environ["piimw"])
        return "ok"

    @app.get("/nested")
    def nested() -> str:
        outer = piimw.current()
        assert inner is not None
        with inner.test_client().get("/") as r:
            assert r.status_code == 200
        assert piimw.current() is outer, "a nested request's close lost the outer request"
        seen.append(outer)  # type: ignore[arg-type]
        return "ok"

    @app.get("/stream")
    def stream() -> Response:
        outer = request.environ["piimw"]

        def body() -> Iterator[bytes]:
            yield b"a"
            assert inner is not None
            # The body makes a request of its own while the server iterates it: nested in
            # this one, which must stay current for the rest of the body.
            inner.test_client().get("/").close()
            seen.append(piimw.current())  # type: ignore[arg-type]
            yield b"b"

        seen.append(outer)
        return Response(stream_with_context(body()))

    PIIMW(app, {})
    return app


def test_the_next_request_ends_an_unclosed_one() -> None:
    seen: list[Exchange] = []
    client = _app(seen).test_client()
    first = client.get("/", headers={"Sec-GPC": "1"})  # never closed, as tests often do
    assert first.text == "ok"
    assert piimw.current() is seen[0]  # its response waits to be closed, as on a server
    with client.get("/") as second:
        assert second.text == "ok"
        assert piimw.current() is seen[1]
    assert piimw.current() is None, "the unclosed request became current again"
    # Code outside any request gets the default consent, not the first request's opt-out.
    assert piimw.scrub_event({"email": "ann@example.com"}, use="analytics") is not None
    first.close()  # late: harmless
    assert piimw.current() is None


def test_closing_out_of_order_keeps_the_later_request_current() -> None:
    seen: list[Exchange] = []
    client = _app(seen).test_client()
    first = client.get("/")
    second = client.get("/")
    first.close()
    assert piimw.current() is seen[1]
    second.close()
    assert piimw.current() is None


def test_a_fully_read_response_stays_current_until_closed() -> None:
    """What the server's access line relies on: the body is sent, the response not closed."""
    seen: list[Exchange] = []
    client = _app(seen).test_client()
    with client.get("/") as r:
        assert r.get_data() == b"ok"
        assert piimw.current() is seen[0]
    assert piimw.current() is None


def test_a_request_made_inside_a_view_is_nested() -> None:
    seen: list[Exchange] = []
    inner_seen: list[Exchange] = []
    client = _app(seen, inner=_app(inner_seen)).test_client()
    with client.get("/nested") as r:
        assert r.text == "ok"
    assert len(inner_seen) == 1
    assert inner_seen[0] is not seen[0]
    assert piimw.current() is None


def test_a_request_made_by_a_streaming_body_is_nested() -> None:
    seen: list[Exchange] = []
    inner_seen: list[Exchange] = []
    client = _app(seen, inner=_app(inner_seen)).test_client()
    with client.get("/stream") as r:
        assert r.get_data() == b"ab"
    outer, during_body = seen
    assert during_body is outer, "the nested request ended the one streaming its body"
    assert piimw.current() is None


def test_django_streaming_response_left_unclosed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("django")  # tox's Flask environments have none
    from adapters import django_settings

    django_settings.setup()
    from django.http import StreamingHttpResponse
    from django.test import RequestFactory, override_settings

    import piimw.contrib.django.middleware as django_middleware
    from piimw.contrib.django import PIIMiddleware

    seen: list[Exchange] = []
    ended: list[Exchange] = []
    monkeypatch.setattr(django_middleware, "_end", ended.append)

    def view(req: Any) -> StreamingHttpResponse:
        seen.append(piimw.current())  # type: ignore[arg-type]
        return StreamingHttpResponse(iter([b"x"]))

    with override_settings(PIIMW={}):
        mw = PIIMiddleware(view)
        first = mw(RequestFactory().get("/", HTTP_SEC_GPC="1"))  # never closed
        assert piimw.current() is seen[0]
        second = mw(RequestFactory().get("/"))
        second.close()
    assert piimw.current() is None
    first.close()
    assert piimw.current() is None
    # Ended by the second request, the first is still handed on (audit) when closed.
    assert ended == [seen[1], seen[0]]


def test_a_request_made_inside_and_never_closed_ends_with_the_outer_one() -> None:
    """An app that calls another app and drops its body (found by review: the inner request
    stayed current after the outer response was closed)."""
    seen: list[Exchange] = []
    inner = _app(seen)
    outer = Flask("outer")

    @outer.get("/")
    def call_inner() -> str:
        inner.test_client().get("/", headers={"Sec-GPC": "1"})  # never closed
        return "ok"

    PIIMW(outer, {})
    with outer.test_client().get("/") as r:
        assert r.text == "ok"
    assert piimw.current() is None


def test_django_streaming_body_that_makes_a_request_stays_current() -> None:
    """Found by review: the outer request counted as awaiting its close while its streaming
    body still ran, so a request the body made ended it."""
    pytest.importorskip("django")  # tox's Flask environments have none
    from adapters import django_settings

    django_settings.setup()
    from django.http import HttpResponse, StreamingHttpResponse
    from django.test import RequestFactory, override_settings

    from piimw.contrib.django import PIIMiddleware

    during: list[Any] = []

    def body() -> Iterator[bytes]:
        yield b"a"
        before = piimw.current()
        nested(RequestFactory().get("/inner")).close()
        during.append((before, piimw.current()))
        yield b"b"

    def view(req: Any) -> StreamingHttpResponse | HttpResponse:
        if req.path == "/inner":
            return HttpResponse(b"inner")
        return StreamingHttpResponse(body())

    with override_settings(PIIMW={}):
        nested = PIIMiddleware(view)
        response = PIIMiddleware(view)(RequestFactory().get("/outer"))
        assert b"".join(response.streaming_content) == b"ab"  # type: ignore[attr-defined]
        response.close()
    (before, after), = during
    assert before is not None
    assert after is before, "the nested request ended the one streaming its body"
    assert piimw.current() is None


def test_a_django_file_response_stays_a_file(tmp_path: Any) -> None:
    """Servers send a FileResponse with wsgi.file_wrapper (sendfile): piimw must not wrap it."""
    pytest.importorskip("django")  # tox's Flask environments have none
    from adapters import django_settings

    django_settings.setup()
    from django.http import FileResponse
    from django.test import RequestFactory, override_settings

    from piimw.contrib.django import PIIMiddleware

    path = tmp_path / "report.bin"
    path.write_bytes(b"\x00" * 10)
    with override_settings(PIIMW={}):
        response = PIIMiddleware(lambda req: FileResponse(path.open("rb")))(
            RequestFactory().get("/report"))
        assert response.file_to_stream is not None  # type: ignore[attr-defined]
        response.close()
