"""WSGI: a request without a plan or a signal header converts its headers on first use.

Converting every environ key costs more than the rest of a request passed through, and most
such requests never need the headers. They must still be the request's own (as it arrived,
whatever the app changes in its environ) when they are needed: a log line, an error page.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import piimw
from piimw.exchange import Exchange
from piimw.logging import PIIFilter
from piimw.wsgi import PIIMiddleware, _environ_keys, environ_headers, exchange_headers

TOKEN = "tok_8f3Kq1Lw2Pn3Rt4Yv5"  # a fake bearer token: the value under test


def _environ(**headers: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/plain", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False}
    environ.update(headers)
    return environ


def _run(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> bytes:
    out = PIIMiddleware(app, piimw.Config())(environ, lambda status, headers, exc=None: None)
    try:
        return b"".join(out)
    finally:
        out.close()  # type: ignore[attr-defined]


def test_headers_are_the_request_s_own_when_first_used_after_the_app_changed_them(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, Any] = {}
    logger = logging.getLogger("test.deferred")
    logger.addFilter(PIIFilter())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        exchange = piimw.current()
        assert exchange is not None
        seen["deferred"] = exchange._request_headers is None
        del environ["HTTP_AUTHORIZATION"]  # e.g. an auth layer that consumed it
        environ["HTTP_X_ADDED_BY_APP"] = "1"
        logger.warning("auth failed for %s", TOKEN)  # the log line asks for known values
        seen["headers"] = exchange.request_headers
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    environ = _environ(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_USER_AGENT="test")
    expected = environ_headers(dict(environ))
    with caplog.at_level(logging.WARNING, "test.deferred"):
        assert _run(app, environ) == b"ok"
    assert seen["deferred"] is True
    assert seen["headers"] == expected
    assert TOKEN not in caplog.text
    assert "auth failed for" in caplog.text


def test_a_signal_header_is_read_at_once() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        exchange = piimw.current()
        assert exchange is not None
        seen["deferred"] = exchange._request_headers is None
        seen["gpc"] = exchange.consent.opted_out_of("marketing")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    _run(app, _environ(HTTP_SEC_GPC="1"))
    assert seen == {"deferred": False, "gpc": "gpc"}


def test_environ_keys_of_the_signal_headers() -> None:
    names = piimw.Config().consent_settings.signal_headers
    assert set(_environ_keys(names)) == {"HTTP_COOKIE", "HTTP_DNT", "HTTP_SEC_GPC",
                                        "HTTP_X_DO_NOT_TRACK", "HTTP_X_PII_OPT_OUT"}
    assert _environ_keys(frozenset({b"content-type"})) == ("CONTENT_TYPE",)


header_names = st.sampled_from(["COOKIE", "DNT", "SEC_GPC", "X_DO_NOT_TRACK", "X_PII_OPT_OUT",
                                "X_GPP", "USER_AGENT", "AUTHORIZATION", "X_FORWARDED_FOR"])


@given(st.dictionaries(header_names, st.sampled_from(["1", "0", "usprivacy=1YYN", "x"]),
                       max_size=5))
def test_deferred_or_not_the_consent_is_the_same(headers: dict[str, str]) -> None:
    """The exchange reads the same consent whether the middleware deferred the headers."""
    config = piimw.Config()
    environ = _environ(**{f"HTTP_{k}": v for k, v in headers.items()})
    given_headers = exchange_headers(environ, config.consent_settings)
    deferred = Exchange(config, "GET", "/", given_headers)
    eager = Exchange(config, "GET", "/", environ_headers(environ))
    assert deferred.consent == eager.consent
    assert deferred.request_headers == eager.request_headers


@pytest.mark.parametrize(("status", "media", "wanted"), [
    (200, "application/json", False),
    (302, "text/html", False),
    (404, "text/html", True),  # error pages of routes without a plan are inspected
    (500, "application/json", True),
    (503, "image/png", False),
])
def test_the_status_alone_rules_out_responses_without_a_plan(status: int, media: str,
                                                             wanted: bool) -> None:
    exchange = Exchange(piimw.Config(), "GET", "/plain", [])
    assert exchange.wants_response_body(status, [(b"content-type", media.encode())]) is wanted
    assert exchange.may_want_response(status) is (status >= 400)


def test_a_cookie_is_read_at_once_only_if_it_may_hold_a_signal() -> None:
    settings = piimw.Config().consent_settings
    plain = _environ(HTTP_COOKIE="sessionid=q8w7e6r5t4; csrftoken=Zx81Kq0L")
    assert callable(exchange_headers(plain, settings))
    usp = _environ(HTTP_COOKIE="sessionid=q8w7e6r5t4; usprivacy=1YYN")
    headers = exchange_headers(usp, settings)
    assert headers == environ_headers(usp)
    assert Exchange(piimw.Config(), "GET", "/", headers).consent.opted_out_of(
        "marketing") == "usprivacy"
