"""The structlog channel: ``scrub_processor`` before the renderer."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import structlog
from pii_canary import Canary

from piimw.contrib.structlog import WITHHELD, PIIProcessor, scrub_processor
from piimw.exchange import activate
from piimw.sanitize import ScrubContext


@pytest.fixture
def canary() -> Canary:
    return Canary()


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
