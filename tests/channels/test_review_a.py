"""Log and exception channels: defects found in review, each with the scenario that showed it."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import logging.handlers
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pii_canary import Canary

from piimw.exchange import activate
from piimw.logging import PIIFilter
from piimw.sanitize import sanitize_exception, scrub_data


@contextmanager
def _lines_of(name: str, formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """``name``'s records, filtered and formatted into the stream yielded, for the block."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(PIIFilter())
    log = logging.getLogger(name)
    saved = log.handlers, log.propagate, log.level
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        log.handlers, log.propagate, log.level = saved


class SentForm(logging.handlers.HTTPHandler):
    """``HTTPHandler`` as it is, but keeping the form it would POST instead of sending it."""

    def __init__(self, name: str) -> None:
        super().__init__("logs.invalid", "/log", method="POST")
        self.sent: list[str] = []
        self.addFilter(PIIFilter())
        self.log = logging.getLogger(name)
        self.log.handlers = [self]
        self.log.propagate = False
        self.log.setLevel(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        self.sent.append(urlencode(self.mapLogRecord(record)))


@pytest.fixture
def sent(request: pytest.FixtureRequest) -> Iterator[SentForm]:
    handler = SentForm(f"piimw.tests.review_a.{request.node.name}")
    yield handler
    handler.log.handlers = []


def test_arguments_a_format_hides_are_checked_too(sent: SentForm, canary: Canary) -> None:
    """``%.8s``, ``%.0s``, ``%x`` and a mapping's unused keys keep the whole value out of the
    message, not out of ``record.args``, which ``HTTPHandler`` sends (and Sentry as params)."""
    log = sent.log
    with activate(canary.exchange()):
        log.info("token %.8s...", canary.token)  # the known value, cut by the format
        log.info("user %(id)s", {"id": 7, "name": canary.name})  # an unused key
        log.info("card ending %.0s%s", canary.card, "52")
    log.info("card %.6s", canary.card)  # outside a request: the detectors
    log.info("card %x", int(canary.card))
    canary.assert_clean(sent.sent, "the form HTTPHandler posts")
    first = sent.sent[0]
    assert f"msg=token+{canary.token[:8]}..." in first  # the message itself is unchanged


def test_arguments_the_message_shows_whole_keep_the_template(sent: SentForm) -> None:
    """Sentry groups log events by template: clean arguments stay where the message shows
    them, and hidden ones that are clean too."""
    log = sent.log
    log.info("order %s shipped in %d ms, %.2f%%", "A-1", 42, 99.5)
    log.info("%(who)s ordered", {"who": "someone", "unused": "nothing"})
    assert "msg=order+%25s+shipped" in sent.sent[0]
    assert "args=%28%27A-1%27%2C+42%2C+99.5%29" in sent.sent[0]
    assert "msg=%25%28who%29s+ordered" in sent.sent[1]


def test_uvicorn_colour_template_is_rendered_when_the_arguments_go(canary: Canary) -> None:
    """uvicorn's colour formatter renders ``color_message`` with ``record.args``: once the
    filter replaced the message and dropped the arguments, it printed bare placeholders."""
    from uvicorn.logging import DefaultFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=True))
    handler.addFilter(PIIFilter())
    log = logging.getLogger("piimw.tests.review_a.uvicorn_colours")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    message = "Uvicorn running on %s://%s:%d (Press CTRL+C to quit)"
    colour = "Uvicorn running on \x1b[1m%s://%s:%d\x1b[0m (Press CTRL+C to quit)"
    log.info(message, "http", "10.0.0.5", 8000, extra={"color_message": colour})
    with activate(canary.exchange()):
        log.info("welcome %s", canary.name, extra={"color_message": "welcome \x1b[1m%s\x1b[0m"})
    log.handlers = []
    out = stream.getvalue()
    assert "\x1b[1mhttp://[REDACTED:ip]:8000\x1b[0m" in out
    assert "welcome \x1b[1m[REDACTED:name]\x1b[0m" in out
    assert "%s" not in out
    canary.assert_clean(out)


class Notes:
    """``__notes__`` that is not a list: tracebacks print its ``repr``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Notes({self.text!r})"


@pytest.mark.parametrize("copy", [False, True])
def test_notes_that_are_not_a_list_are_checked(canary: Canary, copy: bool) -> None:
    """Tracebacks print a ``__notes__`` string by character (3.11) or whole (3.12+), and any
    other object that is not a sequence as its ``repr``; only lists and tuples were read."""
    for notes in (f"see {canary.name}", Notes(canary.name), {f"see {canary.email}"}):
        exc = ValueError("lookup failed")
        exc.__notes__ = notes  # type: ignore[attr-defined]
        with activate(canary.exchange()):
            clean = sanitize_exception(exc, copy=copy)
        text = "".join(traceback.format_exception(type(clean), clean, clean.__traceback__))
        canary.assert_clean(["".join(text.split()), repr(getattr(clean, "__notes__", None))],
                            f"the traceback of an exception with {type(notes).__name__} notes")


def test_an_access_line_reads_encoded_path_segments_decoded() -> None:
    """uvicorn quotes the path it logs: a card, phone or IBAN written with spaces in a path
    segment hid its shape from the detectors (only query values were read decoded)."""
    from uvicorn.logging import AccessFormatter
    from uvicorn.protocols.utils import get_path_with_query_string

    formatter = AccessFormatter('"%(request_line)s" %(status_code)s', use_colors=False)
    with _lines_of("uvicorn.access", formatter) as stream:
        for path in ("/cards/4242 4242 4242 4242", "/by-phone/+1 415 555 0100/orders",
                     "/iban/DE89 3704 0044 0532 0130 00", "/files/report 2024+v2.pdf"):
            full = get_path_with_query_string({"path": path, "query_string": b"q=a%20b"})
            logging.getLogger("uvicorn.access").info(
                '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", full, "1.1", 200)
    lines = stream.getvalue().splitlines()
    assert lines == ['"GET /cards/[REDACTED:card]?q=a%20b HTTP/1.1" 200 OK',
                     '"GET /by-phone/[REDACTED:phone]/orders?q=a%20b HTTP/1.1" 200 OK',
                     '"GET /iban/[REDACTED:iban]?q=a%20b HTTP/1.1" 200 OK',
                     '"GET /files/report%202024%2Bv2.pdf?q=a%20b HTTP/1.1" 200 OK']


@dataclasses.dataclass
class Account:
    """What a ``repr`` shows of it is clean; its hidden fields are not."""

    id: int
    email: str = dataclasses.field(repr=False)
    owner: Any = dataclasses.field(repr=False, default=None)


class DataclassJSON(logging.Formatter):
    """Extras written as JSON encoders write them (python-json-logger and orjson: every field
    of a dataclass, through ``dataclasses.asdict``)."""

    def format(self, record: logging.LogRecord) -> str:
        extra = {k: v for k, v in record.__dict__.items() if k in ("account", "accounts")}

        def default(obj: object) -> object:
            if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
                return dataclasses.asdict(obj)
            return str(obj)

        return json.dumps({"message": record.getMessage(), **extra}, default=default)


def test_dataclass_fields_a_repr_hides_are_checked(canary: Canary) -> None:
    """``repr=False`` keeps a field out of the ``repr`` the filter checked, not out of JSON."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(DataclassJSON())
    handler.addFilter(PIIFilter())
    log = logging.getLogger("piimw.tests.review_a.dataclass_json")
    log.handlers, log.propagate = [handler], False
    log.setLevel(logging.INFO)
    clean = Account(3, "ops-team")
    with activate(canary.exchange()):
        log.info("signed up", extra={"account": Account(7, canary.email, Account(8, canary.name))})
        log.info("listed", extra={"accounts": [clean, Account(9, "x", canary.token)]})
        log.info("clean", extra={"account": clean})
    log.handlers = []
    lines = stream.getvalue().splitlines()
    canary.assert_clean(lines)
    assert json.loads(lines[0])["account"] == "Account(id=7)"
    assert json.loads(lines[2])["account"] == {"id": 3, "email": "ops-team", "owner": None}
    assert scrub_data(clean) is clean


_CONVERSIONS = ("%s", "%r", "%.3s", "%.0s", "%-20s", "%10.6s")


@settings(max_examples=100, deadline=None)
@given(conversions=st.lists(st.sampled_from(_CONVERSIONS), min_size=1, max_size=4),
       at=st.integers(min_value=0, max_value=3), as_int=st.booleans(),
       in_request=st.booleans())
def test_no_format_keeps_a_value_in_the_arguments(conversions: list[str], at: int,
                                                  as_int: bool, in_request: bool) -> None:
    """Whatever the format shows of it, a card number is in neither the message nor
    ``record.args`` once the filter has run."""
    canary = Canary()
    at = at % len(conversions)
    card: object = int(canary.card) if as_int else canary.card
    if as_int:
        conversions[at] = "%x"
    args = tuple(card if i == at else f"v{i}" for i in range(len(conversions)))
    record = logging.LogRecord("piimw.tests.review_a.formats", logging.INFO, __file__, 1,
                               " ".join(conversions), args, None)
    if in_request:
        with activate(canary.exchange()):
            PIIFilter().filter(record)
    else:
        PIIFilter().filter(record)
    canary.assert_clean([record.getMessage(), repr(record.args)])


def test_django_runserver_access_line_reads_encoded_values_decoded() -> None:
    """``django.server`` writes its line after the request (detectors only), and writes the
    request line as the client sent it: a card written ``4242+4242+...`` in the query, or a
    phone percent-encoded in the path, hid its shape."""
    from adapters import django_settings

    django_settings.setup()
    from django.core.servers.basehttp import WSGIRequestHandler

    class Handler:
        request = object()

        def log_date_time_string(self) -> str:
            return "29/Nov/2026 12:00:00"

    with _lines_of("django.server", logging.Formatter("%(message)s %(status_code)s")) as stream:
        for line in ("GET /pay?card=4242+4242+4242+4242 HTTP/1.1",
                     "GET /by-phone/%2B1%20415%20555%200100 HTTP/1.1", "GET /a%20b HTTP/1.1"):
            WSGIRequestHandler.log_message(Handler(), '"%s" %s %s',  # type: ignore[arg-type]
                                           line, "200", "12")
    assert stream.getvalue().splitlines() == [
        '"GET /pay?card=[REDACTED:card] HTTP/1.1" 200 12 200',
        '"GET /by-phone/[REDACTED:phone] HTTP/1.1" 200 12 200',
        '"GET /a%20b HTTP/1.1" 200 12 200']
