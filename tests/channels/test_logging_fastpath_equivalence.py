"""PIIFilter's fast path: every record is still checked (detectors, and inside a request the
request's known values), clean records come out exactly as without the filter, and anything
unusual (renderers it cannot vouch for, broken formats, odd records) takes the slow path."""

from __future__ import annotations

import io
import logging
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pii_canary import Canary

from piimw.detect import known as known_module
from piimw.exchange import activate
from piimw.logging import WITHHELD, PIIFilter

FORMAT = "%(levelname)s %(name)s %(message)s"


class Pair:
    """The same records through a bare handler and a filtered one."""

    def __init__(self, name: str) -> None:
        self.bare, self.filtered = io.StringIO(), io.StringIO()
        self.seen: list[logging.LogRecord] = []
        bare = logging.StreamHandler(self.bare)
        filtered = logging.StreamHandler(self.filtered)
        filtered.addFilter(PIIFilter())
        filtered.addFilter(lambda r: self.seen.append(r) or True)
        for h in (bare, filtered):
            h.setFormatter(logging.Formatter(FORMAT))
        self.logger = logging.Logger(name)
        self.logger.handlers = [bare, filtered]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def handle(self, record: logging.LogRecord) -> None:
        self.logger.handle(record)


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Pair:
    return Pair(f"piimw.tests.fastpath.{request.node.name}")


_SIMPLE = st.one_of(st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
                    st.integers(), st.floats(allow_nan=True), st.booleans(), st.none())


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.sampled_from(["order", "shipped", "in", "ms", "ok", "id", "=", ":"]),
                      max_size=6),
       args=st.lists(_SIMPLE, max_size=4), in_request=st.booleans())
def test_clean_records_are_untouched(words: list[str], args: list[Any], in_request: bool) -> None:
    pair = Pair("piimw.tests.fastpath.clean")
    canary = Canary()
    template = " ".join(words + ["%r"] * len(args))
    record = logging.LogRecord(pair.logger.name, logging.INFO, __file__, 1, template,
                               tuple(args), None)
    if in_request:
        with activate(canary.exchange()):
            pair.handle(record)
    else:
        pair.handle(record)
    if pair.filtered.getvalue() == pair.bare.getvalue():  # nothing was found: untouched
        assert record.msg == template
        assert record.args == tuple(args)
    else:  # a detector found something in the random text: scrubbed, never left raw
        assert "[REDACTED:" in pair.filtered.getvalue()


def test_known_values_are_checked_before_and_after_the_program_is_built(pair: Pair) -> None:
    canary = Canary()
    exchange = canary.exchange()
    with activate(exchange):
        for i in range(known_module._PROBE_CALLS + 20):
            pair.logger.info("item %d of %s", i, "A-1")
            if i in (3, known_module._PROBE_CALLS + 10):
                pair.logger.info("hello %s, order %s", canary.name, "A-1")
                pair.logger.info("f-string for %s", canary.token[:-3] + "...")  # truncated
    out = pair.filtered.getvalue()
    assert out.count("hello [REDACTED:") == 2
    assert canary.name not in out
    assert canary.token[:16] not in out
    assert exchange.known._matcher is not None  # the second time, the program answered


def test_a_record_class_with_its_own_message_is_rendered_by_it(pair: Pair) -> None:
    canary = Canary()

    class Tagged(logging.LogRecord):
        def getMessage(self) -> str:
            return f"{super().getMessage()} for {canary.email}"

    record = Tagged(pair.logger.name, logging.INFO, __file__, 1, "order %s", ("A-1",), None)
    pair.handle(record)
    assert canary.email in pair.bare.getvalue()
    # The filter checked what the class renders, found the address and scrubbed the message;
    # the class would add it again when the formatter renders, so the checked text is pinned.
    assert pair.seen[0].msg == "order A-1 for [REDACTED:email]"
    assert pair.seen[0].args == ()
    assert canary.email not in pair.filtered.getvalue()
    assert "order A-1 for [REDACTED:email]" in pair.filtered.getvalue()
    # QueueHandler pickles records (as plain LogRecords, from their attributes).
    plain = pickle.loads(pickle.dumps(logging.makeLogRecord(dict(pair.seen[0].__dict__))))
    assert plain.getMessage() == "order A-1 for [REDACTED:email]"


def test_a_patched_get_message_is_honoured(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = Canary()
    real = logging.LogRecord.getMessage
    monkeypatch.setattr(logging.LogRecord, "getMessage",
                        lambda self: f"{real(self)} ip {canary.ip}")
    pair.logger.info("order %s", "A-1")
    assert canary.ip in pair.bare.getvalue()
    assert pair.seen[0].msg == "order A-1 ip [REDACTED:ip]"  # checked what it renders
    assert canary.ip not in pair.filtered.getvalue()


def test_dict_arguments(pair: Pair) -> None:
    canary = Canary()
    with activate(canary.exchange()):
        pair.logger.info("%(who)s ordered %(n)d", {"who": "someone", "n": 3})
        pair.logger.info("%(who)s ordered %(n)d", {"who": canary.name, "n": 3})
    bare, out = pair.bare.getvalue().splitlines(), pair.filtered.getvalue().splitlines()
    assert out[0] == bare[0]
    assert pair.seen[0].args == {"who": "someone", "n": 3}
    assert canary.name not in out[1]


def test_other_arguments_take_the_slow_path(pair: Pair) -> None:
    class Shown:
        def __str__(self) -> str:
            return "shown"

    pair.logger.info("value %s", Shown())
    assert pair.filtered.getvalue() == pair.bare.getvalue()
    assert pair.seen[0].args == ()  # rendered once, by the slow path
    assert pair.seen[0].msg == "value shown"


def test_an_empty_message_is_untouched(pair: Pair) -> None:
    with activate(Canary().exchange()):
        pair.logger.info("")
        pair.logger.info("%s", "")
    assert pair.filtered.getvalue() == pair.bare.getvalue()
    assert pair.seen[1].args == ("",)


def test_a_broken_format_takes_the_slow_path(pair: Pair) -> None:
    with activate(Canary().exchange()):
        pair.logger.info("two %s %s", "one")
    assert "could not be formatted" in pair.filtered.getvalue()
    assert WITHHELD not in pair.filtered.getvalue()


def test_a_record_missing_a_standard_field_is_withheld() -> None:
    canary = Canary()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %s", (canary.card,), None)
    del record.stack_info
    assert PIIFilter().filter(record)  # never raises, never drops
    assert record.msg == WITHHELD
    assert canary.card not in repr(record.__dict__)


def test_extras_take_the_slow_path(pair: Pair) -> None:
    canary = Canary()
    pair.logger.handlers[1].setFormatter(logging.Formatter(FORMAT + " %(user)s"))
    with activate(canary.exchange()):
        pair.logger.info("login", extra={"user": canary.email})
    assert canary.email not in pair.filtered.getvalue()


def test_access_loggers_take_the_slow_path() -> None:
    canary = Canary()
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/x?q={canary.name}", "1.1", 200), None)
    with activate(canary.exchange()):
        PIIFilter().filter(record)
    assert isinstance(record.args, tuple)
    assert canary.name not in record.getMessage()
