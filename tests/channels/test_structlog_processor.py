"""The structlog channel: ``scrub_processor`` before the renderer."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
from pii_canary import Canary, HookedAccount

from piimw.contrib.structlog import WITHHELD, PIIProcessor, scrub_processor
from piimw.exchange import activate
from piimw.sanitize import ScrubContext


def _logger(stream: io.StringIO, *, scrub: bool) -> Any:
    processors: list[Any] = [structlog.processors.add_log_level]
    if scrub:
        processors.append(scrub_processor)
    processors += [structlog.processors.format_exc_info,
                   structlog.processors.JSONRenderer(default=repr)]
    return structlog.wrap_logger(structlog.PrintLogger(stream), processors=processors)


class _User:
    def __init__(self, email: str) -> None:
        self.email = email

    def __repr__(self) -> str:
        return f"<User {self.email}>"


def _emit(log: Any, c: Canary) -> None:
    log.info("signup", payload=c.payload(), ip=c.ip, user=_User(c.email),
             note=f"called {c.phone}", nested=[{"card": c.card}], token=(c.token,))
    log.info(f"f-string event for {c.name}")
    try:
        raise ValueError(f"charge failed for {c.card}")
    except ValueError:
        log.exception("payment failed", customer=c.name)
    try:
        raise KeyError(c.email)
    except KeyError as e:
        log.error("lookup", exc_info=e)


def test_processor_scrubs_every_value(canary: Canary) -> None:
    stream = io.StringIO()
    with activate(canary.exchange()):
        _emit(_logger(stream, scrub=True), canary)
    out = stream.getvalue()
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["event"] == "signup"
    assert lines[0]["payload"]["plan"] == "pro"
    assert "ValueError: charge failed for [REDACTED:card]" in lines[2]["exception"]
    assert "exc_info" not in lines[3]
    assert "KeyError" in lines[3]["exception"]
    canary.assert_clean(out, "structlog output")


def test_negative_control_without_the_processor(canary: Canary) -> None:
    stream = io.StringIO()
    with activate(canary.exchange()):
        _emit(_logger(stream, scrub=False), canary)
    assert {"email", "name", "card", "phone", "ip", "token"} <= set(
        canary.leaks(stream.getvalue()))


def test_processor_fails_closed(canary: Canary, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ScrubContext, value: Any, *, render: bool = True) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(ScrubContext, "data", broken)
    out = PIIProcessor()(None, "info", {"event": canary.email, "level": "info"})
    assert out == {"event": WITHHELD, "level": "info"}


class _HookedUser(_User):
    def __structlog__(self) -> dict[str, str]:
        return {"email": self.email}


def _json_logger(stream: io.StringIO) -> Any:
    return structlog.wrap_logger(structlog.PrintLogger(stream), processors=[
        scrub_processor, structlog.processors.JSONRenderer()])


def test_render_hooks_are_scrubbed_before_the_renderer(canary: Canary) -> None:
    stream = io.StringIO()
    with activate(canary.exchange()):
        log = _json_logger(stream)
        log.info("signup", user=_HookedUser(canary.email), account=HookedAccount(canary.email),
                 nested={"who": [HookedAccount(canary.email)]})
    canary.assert_clean(stream.getvalue(), "structlog JSON")
    line = json.loads(stream.getvalue())
    assert line["account"]["id"] == 42  # the hook's shape is kept, its values scrubbed
    assert line["nested"]["who"][0]["id"] == 42


def test_multi_value_dicts_and_sets_are_scrubbed(canary: Canary) -> None:
    from werkzeug.datastructures import MultiDict

    params = MultiDict([("email", "x"), ("email", canary.email)])
    stream = io.StringIO()
    with activate(canary.exchange()):
        log = structlog.wrap_logger(structlog.PrintLogger(stream), processors=[
            scrub_processor, structlog.processors.KeyValueRenderer()])
        log.info("bad request", params=params, tags={canary.phone}, plan="pro", n=3)
        out = scrub_processor(None, "info", {"event": "e", "params": params, "n": 3})
    canary.assert_clean(stream.getvalue(), "structlog key=value")
    canary.assert_clean(repr(out), "structlog event dict")
    assert out["params"]["email"][0] == "x"  # every value, as data
    assert out["n"] == 3


def test_ordinary_data_keeps_its_shape() -> None:
    """Counters, ordered dicts, namedtuples and dataclasses without PII reach the renderer
    as they are (review of the change above: they all became repr text)."""
    import collections
    import dataclasses

    @dataclasses.dataclass
    class Stats:
        hits: int
        misses: int

    point = collections.namedtuple("point", "x y")(1, 2)
    values = {"counts": collections.Counter(a=2), "by_day": collections.OrderedDict(mon=1),
              "pt": point, "stats": Stats(3, 4)}
    out = PIIProcessor()(None, "info", {"event": "cache stats", **values})
    assert all(out[k] is v for k, v in values.items())


def test_a_dataclass_field_hidden_from_repr_is_scrubbed(canary: Canary) -> None:
    """orjson renders every field of a dataclass, ``repr=False`` ones too."""
    import dataclasses

    @dataclasses.dataclass
    class Account:
        id: int
        email: str = dataclasses.field(repr=False)

    with activate(canary.exchange()):
        out = PIIProcessor()(None, "info", {"event": "e", "account": Account(7, canary.email)})
    assert out["account"]["id"] == 7
    canary.assert_clean(repr(out), "dataclass fields")


def test_non_string_keys_are_scrubbed(canary: Canary) -> None:
    stream = io.StringIO()
    with activate(canary.exchange()):
        log = structlog.wrap_logger(structlog.PrintLogger(stream), processors=[
            scrub_processor, structlog.processors.KeyValueRenderer()])
        log.info("throttled", attempts={(canary.email, "login"): 3},
                 cards={int(canary.card): "declined"}, ok={7: "kept"})
    canary.assert_clean(stream.getvalue(), "structlog keys")
    assert "ok={7: 'kept'}" in stream.getvalue()


def test_processor_formatter_record_keeps_its_object(canary: Canary) -> None:
    import logging

    record = logging.LogRecord("app", logging.INFO, __file__, 1, "plain", (), None)
    with activate(canary.exchange()):
        out = scrub_processor(None, "info", {"event": "e", "_record": record,
                                             "_from_structlog": False})
    assert out["_record"] is record  # stdlib processors after this one read its attributes


def test_dates_uuids_and_decimals_stay_native() -> None:
    """orjson and rich render them natively: turning them into repr text changed every such
    log line (a review note on the fix above)."""
    import datetime
    import decimal
    import uuid

    values = {"at": datetime.datetime(2026, 11, 29, 10, 0, tzinfo=datetime.timezone.utc),
              "day": datetime.date(2026, 11, 29), "took": datetime.timedelta(seconds=3),
              "id": uuid.UUID(int=7), "total": decimal.Decimal("19.90")}
    out = PIIProcessor()(None, "info", {"event": "paid", **values})
    assert {k: out[k] for k in values} == values
    assert all(type(out[k]) is type(v) for k, v in values.items())


def test_a_dataclass_inside_a_dict_subclass_is_scrubbed(canary: Canary) -> None:
    """orjson writes dict subclasses as dicts and dataclasses field by field: one nested in
    an OrderedDict or defaultdict went out whole (review of the change above)."""
    import collections
    import dataclasses

    @dataclasses.dataclass
    class Account:
        id: int
        email: str = dataclasses.field(repr=False)

    nested = {"ordered": collections.OrderedDict(a=Account(7, canary.email)),
              "default": collections.defaultdict(list, a=[Account(8, canary.email)])}
    with activate(canary.exchange()):
        out = PIIProcessor()(None, "info", {"event": "e", **nested})
    assert out["ordered"]["a"]["id"] == 7
    canary.assert_clean(repr(out), "dataclasses in dict subclasses")


def test_every_value_of_a_multi_value_dict_is_walked(canary: Canary) -> None:
    """Its own items() shows one value per key; orjson writes them all (review of the change
    above: a dataclass in another value went out whole)."""
    import dataclasses

    from werkzeug.datastructures import MultiDict

    @dataclasses.dataclass
    class Account:
        id: int
        email: str = dataclasses.field(repr=False)

    params = MultiDict([("a", Account(1, "x")), ("a", Account(2, canary.email))])
    with activate(canary.exchange()):
        out = PIIProcessor()(None, "info", {"event": "e", "params": params})
    first, second = out["params"]["a"]
    assert first == Account(1, "x")  # nothing to scrub: kept as it is
    assert second["id"] == 2
    canary.assert_clean(repr(out), "multi-value dict of dataclasses")
