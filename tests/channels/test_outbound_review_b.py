"""Outbound requests to third parties: what review found leaving unscrubbed (redirects,
charsets, path segments, host spellings), each checked with real clients."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
from pii_canary import Canary

from piimw.contrib.httpx import PIITransport
from piimw.contrib.requests import PIIAdapter
from piimw.events import BlockedEvent, Outbound
from piimw.exchange import activate

#: ``localhost`` is listed, ``127.0.0.1`` (the same server) is not.
HOSTS = {"localhost": "analytics", "api.segment.io": "analytics"}


class _Capture(BaseHTTPRequestHandler):
    """Records each request's path and body; ``/redirect/<status>?to=URL`` redirects."""

    seen: list[tuple[str, bytes]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.path, body))
        parts = urlsplit(self.path)
        if parts.path.startswith("/redirect/"):
            self.send_response(int(parts.path.rsplit("/", 1)[1]))
            self.send_header("Location", parse_qs(parts.query)["to"][0])
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def server() -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    seen: list[tuple[str, bytes]] = []
    handler = type("Capture", (_Capture,), {"seen": seen})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1], seen
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def _redirect_url(port: int, status: int) -> tuple[str, dict[str, str]]:
    return (f"http://localhost:{port}/redirect/{status}",
            {"to": f"http://127.0.0.1:{port}/collect"})


@pytest.mark.parametrize("status", [307, 308])
def test_httpx_redirect_to_an_unlisted_host_sends_the_scrubbed_body(
        canary: Canary, server: tuple[int, list[tuple[str, bytes]]], status: int) -> None:
    """httpx builds a 307/308 redirect from the request the client holds: a new request made
    by the transport left it holding the raw body, sent as it was to the redirect's host."""
    port, seen = server
    url, params = _redirect_url(port, status)
    transport = PIITransport(httpx.HTTPTransport(), hosts=HOSTS)
    with httpx.Client(transport=transport, follow_redirects=True) as client, \
            activate(canary.exchange()):
        r = client.post(url, params=params, json={"email": canary.email, "name": canary.name})
    assert [p for p, _ in seen][1:] == ["/collect"]
    canary.assert_clean([body for _, body in seen], "a redirected event")
    canary.assert_clean(r.history[0].request.content, "the request event hooks see")


async def test_async_httpx_redirect_sends_the_scrubbed_body(
        canary: Canary, server: tuple[int, list[tuple[str, bytes]]]) -> None:
    port, seen = server
    url, params = _redirect_url(port, 307)
    transport = PIITransport(httpx.AsyncHTTPTransport(), hosts=HOSTS)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
        with activate(canary.exchange()):
            await client.post(url, params=params, json={"email": canary.email})
    assert len(seen) == 2
    canary.assert_clean([body for _, body in seen], "a redirected event")


@pytest.mark.parametrize("status", [307, 308])
def test_requests_redirect_to_an_unlisted_host_sends_the_scrubbed_body(
        canary: Canary, server: tuple[int, list[tuple[str, bytes]]], status: int) -> None:
    """The session builds the redirect from the request it prepared, not the adapter's copy."""
    port, seen = server
    url, params = _redirect_url(port, status)
    session = requests.Session()
    session.mount("http://", PIIAdapter(hosts=HOSTS))
    with activate(canary.exchange()):
        session.post(url, params=params, json={"email": canary.email, "name": canary.name})
    assert len(seen) == 2
    canary.assert_clean([body for _, body in seen], "a redirected event")


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return httpx.Response(200)


def _httpx_client() -> tuple[httpx.Client, _Recorder]:
    rec = _Recorder()
    return httpx.Client(transport=PIITransport(httpx.MockTransport(rec), hosts=HOSTS)), rec


@pytest.mark.parametrize(("content_type", "codec"), [
    ("text/plain; charset=utf-16le", "utf-16-le"),
    ("text/plain; charset=UTF-16", "utf-16"),
    ("text/plain; charset=\"utf-32-be\"", "utf-32-be"),
    ("application/x-www-form-urlencoded; charset=utf-16be", "utf-16-be"),
    ("application/json; charset=utf-16le", "utf-16-le"),
    ("text/plain; charset=cp500", "cp500"),
])
def test_a_body_is_read_in_the_charset_it_declares(canary: Canary, content_type: str,
                                                   codec: str) -> None:
    """UTF-16 text of ASCII is valid UTF-8 (with NULs), in which no detector saw a value."""
    client, rec = _httpx_client()
    if "json" in content_type:
        text = json.dumps({"email": canary.email, "card": canary.card})
    else:
        text = f"email={canary.email}&name={canary.name}"
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/t", content=text.encode(codec),
                    headers={"content-type": content_type})
    sent = rec.requests[0].content
    assert int(rec.requests[0].headers["content-length"]) == len(sent)
    decoded = sent.decode(codec)
    assert "REDACTED" in decoded
    canary.assert_clean([decoded, sent], f"a {content_type} body")


def test_a_body_in_an_unknown_charset_is_refused(canary: Canary) -> None:
    client, rec = _httpx_client()
    with activate(canary.exchange()), pytest.raises(BlockedEvent, match="charset"):
        client.post("https://api.segment.io/v1/t", content=canary.email.encode(),
                    headers={"content-type": "text/plain; charset=x-no-such-codec"})
    assert rec.requests == []


def test_a_value_visible_only_as_utf8_is_refused(canary: Canary) -> None:
    """Labelled latin-1 but written in UTF-8: a receiver that reads UTF-8 sees the name."""
    client, rec = _httpx_client()
    name = f"Zoë{canary.hex}"  # holds no other planted value
    exchange = canary.exchange()
    exchange.known.add(name, "user.name")
    with activate(exchange), pytest.raises(BlockedEvent, match="UTF-8"):
        client.post("https://api.segment.io/v1/t", content=f"hi {name}".encode(),
                    headers={"content-type": "text/plain; charset=iso-8859-1"})
    assert rec.requests == []


def test_httpx_scrubs_path_segments(canary: Canary) -> None:
    client, rec = _httpx_client()
    with activate(canary.exchange()):
        client.get(f"https://api.segment.io/v1/users/{canary.email}/traits?x=1")
        client.get("https://api.segment.io/v1/users/u-42/traits")
    scrubbed, clean = (r.url for r in rec.requests)
    assert scrubbed.raw_path == b"/v1/users/%5BREDACTED%3Aemail%5D/traits?x=1"
    assert clean.raw_path == b"/v1/users/u-42/traits"


def test_requests_scrubs_path_segments(canary: Canary,
                                       server: tuple[int, list[tuple[str, bytes]]]) -> None:
    port, seen = server
    session = requests.Session()
    session.mount("http://", PIIAdapter(hosts=HOSTS))
    with activate(canary.exchange()):
        session.post(f"http://localhost:{port}/v1/users/{canary.card}?uid={canary.email}")
    ((path, _),) = seen
    assert path.startswith("/v1/users/%5BREDACTED%3Acard%5D?")
    canary.assert_clean(path, "the request target")


def test_hosts_match_in_either_spelling_of_an_international_name() -> None:
    """requests sends the IDNA form of the name, httpx reports the Unicode one."""
    out = Outbound({"bücher.example": "analytics", ".café.example": "marketing",
                    "*.xn--mnchen-3ya.example": "third_party"})
    assert out.use_for("xn--bcher-kva.example") == "analytics"
    assert out.use_for("BÜCHER.example.") == "analytics"
    assert out.use_for("ads.xn--caf-dma.example") == "marketing"
    assert out.use_for("ads.café.example") == "marketing"
    assert out.use_for("a.münchen.example") == "third_party"
    assert httpx.URL("https://xn--bcher-kva.example/").host == "bücher.example"


def test_a_mislabelled_utf8_body_is_still_scrubbed_where_both_readings_agree(
        canary: Canary) -> None:
    client, rec = _httpx_client()
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/t", content=f"Zoë {canary.email}".encode(),
                    headers={"content-type": "text/plain; charset=latin-1"})
    assert rec.requests[0].content == "Zoë [REDACTED:email]".encode()


def test_json_sent_as_text_is_read_as_json(canary: Canary) -> None:
    """A beacon's JSON goes as text/plain; its receiver undoes the escapes that hid the
    values from a scan of the text (``\\u0040`` for ``@``, ``\\u0034`` for a digit)."""
    client, rec = _httpx_client()
    card = "".join(f"\\u{ord(c):04x}" for c in canary.card[:4]) + canary.card[4:]
    email = canary.email.replace("@", "\\u0040")
    hidden = f'{{"e": "{email}", "c": "{card}"}}'
    with activate(canary.exchange()):
        client.post("https://api.segment.io/v1/t", content=hidden.encode(),
                    headers={"content-type": "text/plain"})
        client.post("https://api.segment.io/v1/t", content=b"[INFO] plain text",
                    headers={"content-type": "text/plain"})
    scrubbed, plain = (r.content for r in rec.requests)
    assert json.loads(scrubbed) == {"e": "[REDACTED:email]", "c": "[REDACTED:card]"}
    assert plain == b"[INFO] plain text"


def test_a_body_under_several_content_types_is_refused(canary: Canary) -> None:
    """httpx joins them (``text/plain, application/x-www-form-urlencoded``): read as text,
    a percent-encoded value passed to a receiver that reads the form."""
    client, rec = _httpx_client()
    request = httpx.Request("POST", "https://api.segment.io/v1/t",
                            content=f"e={canary.email.replace('@', '%40')}".encode(),
                            headers=[("content-type", "text/plain"),
                                     ("content-type", "application/x-www-form-urlencoded")])
    with activate(canary.exchange()), pytest.raises(BlockedEvent, match="several"):
        client.send(request)
    assert rec.requests == []


@pytest.mark.parametrize("url", [
    "https://shop.example/t?card=4242%204242%204242%204242&q=shoes+red",
    "https://shop.example/t?phone=%2B1+415+555+0100",
    "https://shop.example/cards/4242%204242%204242%204242/receipt",
])
def test_an_encoded_url_in_an_event_or_report_is_read_decoded(url: str) -> None:
    """A URL's percent-encoded query value or path segment hid a card or phone number's
    shape from the detectors in an event, a Sentry breadcrumb or a log extra (only access
    lines were read decoded; found by review)."""
    from piimw.contrib.sentry import scrub_event_tree
    from piimw.events import scrub_event
    from piimw.sanitize import scrub_data

    event = scrub_event({"page": url}, use="analytics")
    crumb = scrub_event_tree({"data": {"url": url}}, sink="log")
    extra = scrub_data({"url": url})
    for out in (event["page"], crumb["data"]["url"], extra["url"]):
        assert "4242" not in out
        assert "555" not in out
        assert "[REDACTED:" in out
        assert out.startswith("https://shop.example/")
    clean = "https://shop.example/t?q=shoes+red&page=%2F2"
    assert scrub_event({"page": clean}, use="analytics") == {"page": clean}
