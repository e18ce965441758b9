"""WSGI and Django: a request without a plan converts its headers on first use.

Converting every environ key costs more than the rest of a request passed through, and most
such requests never need the headers. They must still be the request's own (as it arrived,
whatever the app changes in its environ) when they are needed: a log line, an error page.
The opt-out signals are read at once, from the signal headers alone, and must give the very
consent the converted headers give.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import piimw
from piimw.consent import Consent
from piimw.exchange import Exchange
from piimw.logging import PIIFilter
from piimw.wsgi import PIIMiddleware, _environ_keys, deferred_headers, environ_headers

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


def test_a_signal_header_is_read_without_converting_the_rest() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        exchange = piimw.current()
        assert exchange is not None
        seen["deferred"] = exchange._request_headers is None
        seen["gpc"] = exchange.consent.opted_out_of("marketing")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    _run(app, _environ(HTTP_SEC_GPC="1"))
    assert seen == {"deferred": True, "gpc": "gpc"}


def test_environ_keys_of_the_signal_headers() -> None:
    names = piimw.Config().consent_settings.signal_headers
    assert set(_environ_keys(names)) == {"HTTP_COOKIE", "HTTP_DNT", "HTTP_SEC_GPC",
                                        "HTTP_X_DO_NOT_TRACK", "HTTP_X_PII_OPT_OUT"}
    assert _environ_keys(frozenset({b"content-type"})) == ("CONTENT_TYPE",)


#: A GPP string whose US section opts out of sale (as in test_signal_headers_fast).
GPP = "DBABL~BVVaAAAAAAA"
header_names = st.sampled_from(["COOKIE", "DNT", "SEC_GPC", "X_DO_NOT_TRACK", "X_PII_OPT_OUT",
                                "X_GPP", "X_USP", "USER_AGENT", "AUTHORIZATION",
                                "X_FORWARDED_FOR"])
header_values = st.sampled_from([
    "1", "0", "x", "", "analytics, marketing", "all",
    "usprivacy=1YYN", "sid=q8w7e6; usprivacy=1YNN", f"usprivacy=1YNN; __gpp={GPP}",
    f"__gpp={GPP}", GPP, "DBABL~a~b", "1YYN", "1---", "\xe9t\xe9"])
SETTINGS = [
    piimw.Config(),
    piimw.Config.from_dict({"consent": {"gpp_sources": ["cookie:__gpp", "header:X-GPP"],
                                        "usprivacy_sources": ["header:X-USP",
                                                              "cookie:usprivacy"]}}),
    piimw.Config.from_dict({"consent": {"usprivacy_sources": ["header:Cookie"]}}),
]


@pytest.mark.parametrize("config", SETTINGS, ids=["default", "sources", "whole-cookie"])
@pytest.mark.parametrize("framework", ["wsgi", "django"])
@settings(max_examples=400)
@given(headers=st.dictionaries(header_names, header_values, max_size=6))
def test_deferred_or_not_the_consent_is_the_same(
        config: piimw.Config, framework: str, headers: dict[str, str]) -> None:
    """The consent read from the signal headers alone is the one all the headers give."""
    convert: Callable[[dict[str, Any]], list[tuple[bytes, bytes]]] = environ_headers
    if framework == "django":
        pytest.importorskip("django")  # tox's Flask and Starlette environments have none
        from piimw.contrib.django.middleware import _meta_headers
        convert = _meta_headers
    environ = _environ(**{f"HTTP_{k}": v for k, v in headers.items()})
    given_headers, signals = deferred_headers(environ, config.consent_settings, convert)
    deferred = Exchange(config, "GET", "/", given_headers, b"", None, signals)
    eager = Exchange(config, "GET", "/", convert(environ))
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


def test_a_cookie_is_read_only_if_it_may_hold_a_signal() -> None:
    settings = piimw.Config().consent_settings
    plain = _environ(HTTP_COOKIE="sessionid=q8w7e6r5t4; csrftoken=Zx81Kq0L")
    headers, signals = deferred_headers(plain, settings)
    assert signals is None
    assert headers() == environ_headers(plain)
    usp = _environ(HTTP_COOKIE="sessionid=q8w7e6r5t4; usprivacy=1YYN")
    headers, signals = deferred_headers(usp, settings)
    assert headers() == environ_headers(usp)
    assert signals is not None
    assert signals().opted_out_of("marketing") == "usprivacy"


def test_a_header_outside_latin1_still_gives_the_request_s_values(
        caplog: pytest.LogCaptureFixture) -> None:
    """PEP 3333 says latin-1; an outer layer that sets another value must not cost the other
    headers their protection (found by review: the deferred conversion raised on first use,
    and every later use saw no known values at all)."""
    logger = logging.getLogger("test.deferred.utf8")
    logger.addFilter(PIIFilter())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        logger.warning("first line")
        logger.warning("auth header was %s", TOKEN)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    environ = _environ(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_X_REMOTE_USER="\u5c71\u7530")
    with caplog.at_level(logging.WARNING, "test.deferred.utf8"):
        assert _run(app, environ) == b"ok"
    assert TOKEN not in caplog.text
    assert "first line" in caplog.text
    assert "auth header was" in caplog.text


def test_known_values_are_never_left_half_harvested() -> None:
    """If reading the headers fails, every use fails (closed) alike, not only the first."""
    def broken() -> list[tuple[bytes, bytes]]:
        raise RuntimeError("unreadable")

    exchange = Exchange(piimw.Config(), "GET", "/", broken, b"q=ann%40example.com")
    for _ in range(2):
        with pytest.raises(RuntimeError):
            exchange.known  # noqa: B018 (the property is the call under test)


def test_a_query_string_outside_latin1_is_read_not_raised_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """Its values are still known values (a log line repeating one is scrubbed)."""
    logger = logging.getLogger("test.deferred.query")
    logger.addFilter(PIIFilter())

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        logger.warning("looked up %s", TOKEN)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    environ = _environ(QUERY_STRING=f"name=\u5c71\u7530&token={TOKEN}")
    with caplog.at_level(logging.WARNING, "test.deferred.query"):
        assert _run(app, environ) == b"ok"
    assert TOKEN not in caplog.text
    assert "looked up" in caplog.text


def test_the_signals_are_read_when_the_consent_is_first_asked_for() -> None:
    """A request with ``Sec-GPC: 1`` on a route without a plan builds no consent unless
    something (a log line, an error page, the audit trail) asks for it, and then once."""
    consent_settings = piimw.Config().consent_settings
    headers, signals = deferred_headers(_environ(HTTP_SEC_GPC="1"), consent_settings)
    assert signals is not None
    calls: list[int] = []

    def counted() -> Consent:
        calls.append(1)
        return signals()

    exchange = Exchange(piimw.Config(), "GET", "/", headers, b"", None, counted)
    assert calls == []
    assert exchange.consent.opted_out_of("marketing") == "gpc"
    assert exchange.consent is exchange.consent
    assert calls == [1]


@pytest.mark.parametrize(("key", "value"), [
    ("HTTP_SEC_GPC", "1,1"), ("HTTP_SEC_GPC", "1, 1"), ("HTTP_DNT", "0,1"),
    ("HTTP_X_DO_NOT_TRACK", "0, 1"),
])
def test_a_signal_sent_twice_counts_when_the_server_joined_the_headers(key: str,
                                                                      value: str) -> None:
    """WSGI servers and Django's META join repeated headers with commas: ``Sec-GPC: 1``
    sent twice read as ``1,1`` and was ignored, where ASGI honoured it (review)."""
    seen: dict[str, bool] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen["marketing"] = piimw.allows("marketing")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    _run(app, _environ(**{key: value}))
    assert seen == {"marketing": False}
    _run(app, _environ(**{key: value.replace("1", "0")}))
    assert seen == {"marketing": True}
