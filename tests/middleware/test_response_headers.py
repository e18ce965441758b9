"""Response headers that say something are scrubbed like a page (found by review).

A redirect built from the request's email, a download named after a person, a cookie or an
``X-`` header holding a value the request brought in: the body was inspected and the same
value passed in a header. Framing headers are never read; a session cookie renewed with
the request's own value is left as it is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest
from asgi_driver import call
from werkzeug.test import Client

import piimw
from piimw.asgi import PIIMiddleware
from piimw.exchange import Exchange
from piimw.wsgi import PIIMiddleware as WSGIMiddleware

EMAIL = "jane.doe@example.com"
NAME = "Zebulon Quackenbush"
SESSION = "s3ss10n-0f3c9a7d5e2b41"


def _headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/plain"),
        (b"location", f"/welcome?email={quote(EMAIL)}&name={quote(NAME)}".encode()),
        (b"content-disposition", f'attachment; filename="{NAME}.pdf"'.encode()),
        (b"set-cookie", f"last_user={EMAIL}; Path=/".encode()),
        (b"set-cookie", f"session={SESSION}; Path=/; HttpOnly".encode()),
        (b"x-debug-user", f"{NAME} <{EMAIL}>".encode()),
        (b"x-request-id", b"req-12345678"),
    ]


def _check(headers: list[tuple[bytes, bytes]], *, name_tagged: bool = True) -> None:
    """The email (a detector finds it) never goes out; the name (a known value) only where
    it was tagged: an untagged query value is the app's to echo (``?next=``, ``?page=``)."""
    joined = b"\n".join(k + b": " + v for k, v in headers)
    assert EMAIL.encode() not in joined
    assert quote(EMAIL).encode() not in joined
    assert (NAME.encode() not in joined) is name_tagged
    assert (quote(NAME).encode() not in joined) is name_tagged
    assert f"session={SESSION}".encode() in joined  # the request's own cookie, renewed
    assert b"x-request-id: req-12345678" in joined.lower()
    assert b"content-type: text/plain" in joined.lower()


def _request_headers() -> list[tuple[str, str]]:
    return [("cookie", f"session={SESSION}")]


@pytest.mark.parametrize("status", [200, 302, 404])
async def test_asgi_route_without_a_plan(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": _headers()})
        await send({"type": "http.response.body", "body": b"ok"})

    r = await call(PIIMiddleware(app, piimw.Config()), "GET", "/signup",
                   query=f"email={quote(EMAIL)}&name={quote(NAME)}".encode(),
                   headers=_request_headers())
    assert r.status == status
    _check(r.headers, name_tagged=False)


async def test_asgi_route_with_a_plan(tmp_path: Any) -> None:
    schema = {"type": "object", "properties": {"email": {"type": "string", "x-pii": "email"},
                                               "name": {"type": "string", "x-pii": "name"}}}
    (tmp_path / "req.json").write_bytes(orjson.dumps(schema))
    config = piimw.Config.from_dict({"routes": [{"route": "POST /signup",
                                                 "request": str(tmp_path / "req.json")}]})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 303, "headers": _headers()})
        await send({"type": "http.response.body", "body": b""})

    r = await call(PIIMiddleware(app, config), "POST", "/signup",
                   body=orjson.dumps({"email": EMAIL, "name": NAME}),
                   headers=[("content-type", "application/json"), *_request_headers()])
    assert r.status == 303
    _check(r.headers)


@pytest.mark.parametrize("status", ["200 OK", "302 Found", "404 Not Found"])
def test_wsgi(status: str) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response(status, [(k.decode(), v.decode()) for k, v in _headers()])
        return [b"ok"]

    r = Client(WSGIMiddleware(app, piimw.Config())).get(
        "/signup", query_string=f"email={quote(EMAIL)}&name={quote(NAME)}",
        headers={"Cookie": f"session={SESSION}"}, buffered=True)
    _check([(k.lower().encode(), v.encode()) for k, v in r.headers.items()],
           name_tagged=False)


def test_a_failure_leaves_the_headers_that_say_something_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: on an internal error those headers are withheld, framing kept."""
    ex = Exchange(piimw.Config(), "GET", "/x", [], b"email=" + EMAIL.encode())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Exchange, "_scrubbed_value", broken)
    out = ex.response_headers(302, _headers())
    assert out == [(b"content-type", b"text/plain"), (b"x-request-id", b"req-12345678")]


def test_framing_alone_is_not_read() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    ex = Exchange(piimw.Config(), "GET", "/x", [])
    assert ex.response_headers(200, headers) is headers
    assert ex._known is None  # the request's values were never needed


async def test_what_an_app_echoes_by_design_is_kept() -> None:
    """Review of the change above: every query value is a known value, and redirects lost
    ``?next=/orders/history`` and ``?page=``; the IP detector took the server's own private
    address out of a redirect. A custom header without ``X-`` is read; a security header
    is not (nor are the request's values harvested for it)."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 302, "headers": [
            (b"location", b"http://10.0.0.5:8000/orders/history?page=1234&sort=newest"),
            (b"link", b'</search?q=garden+chairs&page=2>; rel="next"'),
            (b"customer-email", EMAIL.encode())]})
        await send({"type": "http.response.body", "body": b""})

    r = await call(PIIMiddleware(app, piimw.Config()), "GET", "/login",
                   query=b"next=/orders/history&page=1234&sort=newest&q=garden+chairs",
                   headers=[("host", "10.0.0.5:8000")])
    assert r.header("location") == "http://10.0.0.5:8000/orders/history?page=1234&sort=newest"
    assert r.header("link") == '</search?q=garden+chairs&page=2>; rel="next"'
    assert EMAIL not in (r.header("customer-email") or "")

    ex = Exchange(piimw.Config(), "GET", "/x", [], b"q=jane")
    safe = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff")]
    assert ex.response_headers(200, safe) is safe
    assert ex._known is None


@pytest.mark.parametrize(("cookie", "signed"), [
    (b"session=eyJfcGVybWFuZW50Ijp0cnVlfQ.awwRDx.Xy12AbCdEfGhIjKlMnOpQrStUvW; Path=/", True),
    (b"session=.eJyrVspMUbIyNDY2NDE3NzUyNjI2MjaoBQA5QAWd.ZXY12A.abc123XYZ", True),
    # Django's signed cookies keep their payload in clear: scanned (review)
    (b'sessionid="e30:1xXdGW:d3m8kGpuFv6y4zVTc_a32uoXgqmdNsgKZ95ICr5SsBM"', False),
    (b"ssn=123-45-6789:1xXeNh:xNd6aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z", False),
    (b"last_user=jane.doe@example.com; Path=/", False),
    (b"name=Maximilian.Schwarzenegger-Habsburg.2; Path=/", False),
    (b"phone=14155550100", False),
])
def test_a_signed_session_cookie_is_not_scanned(cookie: bytes, signed: bool) -> None:
    """Review: every response renewing a session ran the detectors over its token (the JWT
    detector finds Flask's), then left it alone: a cost on every request, for nothing."""
    from piimw.exchange import _token_payload

    assert (_token_payload(cookie.partition(b";")[0].partition(b"=")[2]) is not None) is signed


@pytest.mark.parametrize("cookie", [
    b'display_name="Zo\\303\\253 \\303\\205ngstr\\303\\266m"; Path=/',  # Werkzeug: UTF-8
    b'display_name="Zo\\353 \\305ngstr\\366m"; Path=/',  # http.cookies: Latin-1
])
def test_a_quoted_cookie_is_read_unquoted(cookie: bytes) -> None:
    """Octal escapes hid a tagged name in a cookie (found by review)."""
    ex = Exchange(piimw.Config(), "GET", "/x", [])
    ex.known.add("Zo\u00eb \u00c5ngstr\u00f6m", "user.name")
    out = ex.response_headers(200, [(b"set-cookie", cookie)])
    assert out == [(b"set-cookie", b'display_name="[REDACTED:name]"; Path=/')]


def test_a_cookie_s_name_and_attributes_are_read_too() -> None:
    """Review of the cookie exemptions: only the value is the app's own (a signed token);
    the name and the attributes were left unread, and an IBAN passed for a token."""
    ex = Exchange(piimw.Config(), "GET", "/x", [])
    ex.known.add("Zo\u00eb Example", "user.name")
    token = b"eyJfcGVybWFuZW50Ijp0cnVlfQ.awwRDx.Xy12AbCdEfGhIjKlMnOpQrStUvW"
    cookies = [
        b"session=" + token + b"; Path=/u/" + EMAIL.encode(),
        EMAIL.encode() + b"=" + token + b"; Path=/",
        b'greeting="Hi\\054 Zo\\303\\253 Example"; Path=/u/' + EMAIL.encode(),
        b"last_iban=iban:GB82WEST12345698765432; Path=/",
    ]
    out = ex.response_headers(200, [(b"set-cookie", c) for c in cookies])
    joined = b"\n".join(v for _, v in out)
    assert EMAIL.encode() not in joined
    assert b"GB82WEST12345698765432" not in joined
    assert b"Zo\\303\\253" not in joined
    assert joined.count(token) == 2  # the session tokens themselves are kept


def test_a_value_seen_untagged_then_tagged_is_not_the_app_s_to_echo() -> None:
    """A Referer query brought the name in first, as an untagged value: the tagged path
    parameter with the same value then stayed untagged, and a header echoed it (review)."""
    from piimw.detect import KnownValues

    known = KnownValues()
    known.add(NAME, "user")
    known.add(NAME, "name")
    assert [s.category for s in known.find(f"for {NAME}")] == ["user.name"]


def test_a_signed_cookie_s_clear_payload_is_scanned() -> None:
    """Django's set_signed_cookie writes ``<value>:<timestamp>:<signature>``: taken for an
    opaque token, an SSN or an IBAN in it went out (review)."""
    ex = Exchange(piimw.Config(), "GET", "/x", [])
    cookies = [b"ssn=123-45-6789:1xXeNh:xNd6aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z; Path=/",
               b"iban=GB82WEST12345698765432:1xXeP1:dvCEmO8Or7rigVMueY3zfuLn6_BVPxpzJO7oORn"]
    out = b"\n".join(v for _, v in ex.response_headers(200, [(b"set-cookie", c)
                                                            for c in cookies]))
    assert b"123-45-6789" not in out
    assert b"GB82WEST12345698765432" not in out
