"""Second review of the outbound, log filter and sanitizer fixes: what was still open."""

from __future__ import annotations

import io
import logging
from urllib.parse import unquote, unquote_plus

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from piimw.consent import from_session_flag
from piimw.events import Outbound, scrub_event
from piimw.logging import PIIFilter
from piimw.sanitize import scrub_data

CARD = "4242%204242%204242%204242"


def test_hosts_match_across_idna_2003_and_2008_spellings() -> None:
    """Python's codec (IDNA 2003) writes ``straße`` as ``strasse``; requests and httpx use
    the ``idna`` package (IDNA 2008): ``xn--strae-oqa``. Either configured spelling must
    match either client's (requests sent the listed host's data unscrubbed)."""
    for listed in ("straße.example", "xn--strae-oqa.example", "STRASSE.example"):
        out = Outbound({listed: "analytics"})
        expected = None if listed.startswith("STRASSE") else "analytics"
        assert out.use_for("xn--strae-oqa.example") == expected, listed
        assert out.use_for(httpx.URL("https://xn--strae-oqa.example/").host) == expected
    out = Outbound({".faß.example": "marketing"})
    assert out.use_for("ads.xn--fa-hia.example") == "marketing"
    assert out.use_for("ads.faß.example") == "marketing"
    assert out.use_for("fass.example") is None


@pytest.mark.parametrize("url", [
    f"https://app.example/#/checkout?card={CARD}",            # a fragment's parameters
    f"https://app.example/p#card={CARD}",
    f"went https://a.example/?x=1 then https://b.example/cards/{CARD} ok",  # a second URL
    "https://a.example/p?card=4242%25204242%25204242%25204242",  # encoded twice
    "https://a.example/p?next=https%3A%2F%2Fb.example%2Fc%3Fcard%3D4242%25204242%25204242"
    "%25204242",
])
def test_encoded_values_the_first_decoding_missed_are_scrubbed(url: str) -> None:
    out = scrub_data({"u": url})["u"]
    assert "4242" not in out
    assert "[REDACTED:card]" in out
    assert scrub_event({"u": url}) == {"u": out}


def test_a_decoded_value_is_written_encoded_again() -> None:
    """A decoded ``%0D%0A`` forged a line in the access log (uvicorn quotes the path it
    writes), a decoded ``%3C`` wrote markup into a report."""
    forged = "%0D%0A127.0.0.1%20-%20%22GET%20/admin%22%20200%0D%0A"
    line = scrub_data({"u": f"/search?q={forged}{CARD}"})["u"]
    assert "\r" not in line
    assert "\n" not in line
    assert line.endswith("[REDACTED:card]")
    out = scrub_data({"u": f"https://x.example/p?q=%3Cscript%3E+{CARD}"})["u"]
    assert "<" not in out
    assert " " not in out
    clean = "https://x.example/p?q=hello%20world&next=%2Fa%0A"
    assert scrub_data({"u": clean}) == {"u": clean}


@given(st.text(alphabet="%+aZ09fF/ é\n", max_size=40))
def test_unquote_is_urllib_unquote(text: str) -> None:
    """The linear-time decoder reads as ``urllib.parse`` does."""
    from piimw.sanitize import _unquote, _unquote_plus

    assert _unquote(text) == unquote(text)
    assert _unquote_plus(text) == unquote_plus(text)


def _logged(name: str, *args: object, **kwargs: object) -> str:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.addFilter(PIIFilter())
    logger = logging.getLogger(f"review2d.{name}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        logger.removeHandler(handler)
    return buf.getvalue()


def test_an_encoded_url_in_a_log_message_is_read_decoded() -> None:
    """httpx logs every request it sends (``HTTP Request: GET https://...``): a card or
    phone number in a query value passed percent-encoded, in the fast path and the slow."""
    url = f"https://api.example/u?card={CARD}&phone=%2B1%20415%20555%200123"
    for args in (("HTTP Request: GET %s", url), ("HTTP Request: GET %s", httpx.URL(url)),
                 (f"HTTP Request: GET {url}",), ("GET %.60s", url)):
        line = _logged("msg", *args)
        assert "4242" not in line, args
        assert "555" not in line, args
    try:
        raise ValueError(f"Client error for url '{url}'")
    except ValueError:
        line = _logged("exc", "failed", exc_info=True)
    assert "4242" not in line
    assert "[REDACTED:card]" in line


def test_a_clean_message_with_encoded_text_keeps_its_template() -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "GET %s done 50%%",
                               ("https://a.example/p?q=hello%20world",), None)
    PIIFilter().filter(record)
    assert record.args == ("https://a.example/p?q=hello%20world",)


@pytest.mark.parametrize("flag", ["0", "false", "False", " no ", "off", "none"])
def test_a_session_flag_string_that_says_no_is_no_opt_out(flag: str) -> None:
    """A form's or cookie's "false" opted every subject out of everything non-essential
    once unknown names did ("1" and "true" already meant yes)."""
    assert from_session_flag(flag) is None
    assert from_session_flag("yes") is not None
    assert from_session_flag("1") is not None


def test_escaped_json_lines_sent_as_text_are_refused() -> None:
    """Several JSON documents a line (an NDJSON beacon) are no one JSON document: the body
    was scanned as text, where ``\\u0040`` hid an e-mail address its receiver reads."""
    from piimw.contrib.httpx import PIITransport
    from piimw.events import BlockedEvent

    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(204)

    client = httpx.Client(transport=PIITransport(httpx.MockTransport(handler),
                                                 hosts={"api.segment.io": "analytics"}))
    hidden = b'{"e":"jane.doe\\u0040example.com"}\n{"e":"x"}\n'
    with pytest.raises(BlockedEvent, match="escaped text"):
        client.post("https://api.segment.io/v1/b", content=hidden,
                    headers={"content-type": "text/plain"})
    clean = b'{"e":"caf\\u00e9"}\n{"e":"x"}\n'
    client.post("https://api.segment.io/v1/b", content=clean,
                headers={"content-type": "text/plain"})
    assert sent == [clean]


def test_werkzeug_request_line_is_read_decoded() -> None:
    """Flask's development server logs the request line as sent, through the fast path (its
    arguments are strings): a percent-encoded card or phone number passed."""
    line = ("GET /cards/4242%204242%204242%204242?phone=%2B1%20415%20555%200123 HTTP/1.1")
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, '%s - - [%s] "%s" %s %s',
                               ("127.0.0.1", "29/Nov/2026 14:00:00", line, "200", "-"), None)
    PIIFilter().filter(record)
    message = record.getMessage()
    assert "4242" not in message
    assert "555" not in message
    assert '"GET /cards/[REDACTED:card]?phone=[REDACTED:phone] HTTP/1.1" 200' in message


@pytest.mark.parametrize("value", [
    CARD, "card: " + CARD, "saved card=" + CARD + " ok", "%2B1%20415%20555%200123",
])
def test_an_encoded_word_outside_a_url_is_read_decoded(value: str) -> None:
    """An extra holding a quoted value (``quote(card)``), or a line quoting one."""
    out = scrub_data({"v": value})["v"]
    assert "4242" not in out
    assert "555" not in out


_PIECES = st.sampled_from(["/", "?", "&", "#", "=", "+", " ", "%0A", "%0D", "%20", "%25",
                           "%2B", "a", "q", CARD, "4242+4242+4242+4242"])


@given(st.lists(_PIECES, max_size=12).map("".join))
def test_reading_decoded_writes_no_line_break(text: str) -> None:
    out = scrub_data({"v": text})["v"]
    assert ("\n" in out) <= ("\n" in text)
    assert ("\r" in out) <= ("\r" in text)
    # No decoded card in clear; the pieces themselves can join into "4242 4242"
    # ("4242+4242+4242+4242 4242+4242+4242+4242", two plus-written groups around a space).
    assert ("4242 4242" in out) <= ("4242 4242" in text)


def test_a_page_url_sent_as_a_query_value_form_path_or_text_is_read_decoded() -> None:
    """JSON bodies' strings were read decoded, query values (a pixel's ``dl=``, holding the
    page URL with its own query encoded twice), forms, path segments and text were not."""
    from piimw.contrib.httpx import PIITransport

    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        sent.append(request)
        return httpx.Response(204)

    client = httpx.Client(transport=PIITransport(httpx.MockTransport(handler),
                                                 hosts={"www.google-analytics.com": "analytics"}))
    page = "https%3A%2F%2Fshop.example%2Fc%3Fcard%3D4242%25204242%25204242%25204242"
    base = "https://www.google-analytics.com/collect"
    client.get(f"{base}?v=1&dl={page}")
    client.get(f"{base}/4242%25204242%25204242%25204242")
    client.post(base, content=f"v=1&dl={page}".encode(),
                headers={"content-type": "application/x-www-form-urlencoded"})
    client.post(base, content=f"visited https://shop.example/c?card={CARD}".encode(),
                headers={"content-type": "text/plain"})
    for request in sent:
        shown = str(request.url) + request.content.decode()
        assert "4242" not in shown, shown
        assert "REDACTED" in shown
    clean = f"{base}?v=1&dl=https%3A%2F%2Fshop.example%2Fc%3Fq%3Dred%2520shoes"
    client.get(clean)
    assert str(sent[-1].url) == clean
