"""The Sentry channel: real ``sentry_sdk`` clients with a capturing transport (no network)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from pii_canary import Canary
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

from piimw.contrib.sentry import (
    PIIIntegration,
    before_breadcrumb,
    before_send,
    before_send_transaction,
)
from piimw.exchange import activate
from piimw.logging import PIIFilter

DSN = "https://public@sentry.invalid/1"


class CapturingTransport(Transport):
    """Records envelopes instead of sending them."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def sent(self) -> bytes:
        return b"\n".join(e.serialize() for e in self.envelopes)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for env in self.envelopes:
            for item in env.items:
                payload = item.payload.json
                if isinstance(payload, dict):
                    out.append(payload)
        return out


def _init(transport: CapturingTransport, *, pii: bool, **options: Any) -> None:
    integrations: list[Any] = [LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)]
    if pii:
        integrations.append(PIIIntegration())
    sentry_sdk.init(dsn=DSN, transport=transport, integrations=integrations,
                    default_integrations=False, auto_enabling_integrations=False,
                    traces_sample_rate=1.0, include_local_variables=True,
                    **options)


@pytest.fixture
def canary() -> Canary:
    return Canary()


@pytest.fixture
def transport() -> Iterator[CapturingTransport]:
    t = CapturingTransport()
    yield t
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def _scenario(c: Canary) -> None:
    """An error with PII everywhere Sentry looks: message, frame locals, logs, request, scope."""
    log = logging.getLogger("piimw.tests.sentry.app")
    log.setLevel(logging.INFO)
    with sentry_sdk.new_scope() as scope:
        scope.set_user({"id": "42", "email": c.email, "ip_address": c.ip})
        scope.set_extra("payload", c.payload())
        scope.set_extra("note", f"retried with {c.token}")  # key-name denylists miss this
        scope.set_tag("customer", c.name)
        scope.set_context("billing", {"card": c.card, "phone": c.phone})
        scope.add_event_processor(lambda event, hint: {**event, "request": {
            "url": f"https://shop.example/signup?email={c.email}",
            "query_string": f"email={c.email}&ref={c.name}",
            "data": c.payload(), "cookies": {"session": c.token},
            "headers": {"Authorization": f"Bearer {c.token}", "X-Forwarded-For": c.ip},
            "env": {"REMOTE_ADDR": c.ip}}})
        sentry_sdk.add_breadcrumb(category="auth", message=f"login by {c.email}",
                                  data={"phone": c.phone})
        log.info("signup %s", c.payload())  # a breadcrumb via the logging integration
        with sentry_sdk.start_transaction(name="signup", op="http.server"):
            with sentry_sdk.start_span(op="db", name=(
                    f"INSERT INTO users (email, name) VALUES ('{c.email}', '{c.name}')")) as span:
                span.set_data("card", c.card)
            try:
                _handler(c.payload())
            except ValueError as e:
                sentry_sdk.capture_exception(e)
            log.error("payment for %s failed", c.name)  # an event via the logging integration
            sentry_sdk.capture_message(f"manual message about {c.phone}")


def _handler(payload: dict[str, Any]) -> None:
    email = payload["email"]
    card = payload["card"]  # noqa: F841 - frame variable Sentry would capture
    try:
        raise KeyError(email)
    except KeyError as inner:
        raise ValueError(f"charge failed for {email}") from inner


def test_integration_scrubs_every_part_of_every_envelope(transport: CapturingTransport,
                                                        canary: Canary) -> None:
    _init(transport, pii=True)
    with activate(canary.exchange()):
        _scenario(canary)
    sentry_sdk.flush()
    events = transport.events()
    kinds = {e.get("type", "event") for e in events}
    assert {"event", "transaction"} <= kinds
    errors = [e for e in events if e.get("exception")]
    assert errors, "the exception event was sent"
    frames = errors[0]["exception"]["values"][-1]["stacktrace"]["frames"]
    assert any(f.get("vars", {}).get("email") == "'[REDACTED:email]'" for f in frames)
    assert errors[0]["exception"]["values"][-1]["value"] == "charge failed for [REDACTED:email]"
    assert errors[0]["request"]["query_string"].startswith("email=")
    canary.assert_clean(transport.sent, "Sentry envelopes")


def test_negative_control_without_the_integration_it_leaks(transport: CapturingTransport,
                                                          canary: Canary) -> None:
    _init(transport, pii=False)
    with activate(canary.exchange()):
        _scenario(canary)
    sentry_sdk.flush()
    assert {"email", "name", "card", "phone", "ip", "token"} <= set(canary.leaks(transport.sent))


def test_hooks_chain_after_user_hooks_and_survive_reinit(transport: CapturingTransport,
                                                         canary: Canary) -> None:
    seen: list[str] = []

    def user_hook(event: Any, hint: Any) -> Any:
        seen.append("user")
        event.setdefault("extra", {})["added_by_user"] = canary.email
        return event

    _init(transport, pii=True, before_send=user_hook)
    with activate(canary.exchange()):
        sentry_sdk.capture_message(f"first {canary.name}")
    sentry_sdk.get_client().close()
    second = CapturingTransport()
    _init(second, pii=True, before_send=user_hook)  # setup_once does not run again
    with activate(canary.exchange()):
        sentry_sdk.capture_message(f"second {canary.name}")
    sentry_sdk.flush()
    assert seen == ["user", "user"]
    assert b"added_by_user" in transport.sent
    assert b"added_by_user" in second.sent
    canary.assert_clean([transport.sent, second.sent])


def test_logging_integration_sees_the_filtered_record(transport: CapturingTransport,
                                                      canary: Canary) -> None:
    """With the log filter on a handler, Sentry's logging integration (which runs after the
    handlers) gets the scrubbed record: template and params carry no value."""
    _init(transport, pii=False)
    log = logging.getLogger("piimw.tests.sentry.filtered")
    handler = logging.StreamHandler(io.StringIO())  # NullHandler.handle skips filters
    handler.addFilter(PIIFilter())
    log.addHandler(handler)
    with activate(canary.exchange()):
        log.error("signup failed for %s", canary.email)
    sentry_sdk.flush()
    log.removeHandler(handler)
    canary.assert_clean(transport.sent)
    assert b"signup failed for [REDACTED:email]" in transport.sent


def test_standalone_hooks_on_hand_built_payloads(canary: Canary) -> None:
    event = {
        "event_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "logentry": {"message": "signup %s", "params": [canary.email],
                     "formatted": f"signup {canary.email}"},
        "exception": {"values": [{"type": "ValueError", "value": canary.name,
                                  "stacktrace": {"frames": [{"vars": {"p": repr(
                                      canary.payload())}}]}}]},
        "breadcrumbs": {"values": [{"message": canary.phone}]},
        "user": {"email": canary.email}, "tags": {"t": canary.name},
        "extra": {"nested": [{"deep": {"card": canary.card}}]},
        "contexts": {"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}},
    }
    with activate(canary.exchange()):
        out = before_send(event, {})  # type: ignore[arg-type]
        tx = before_send_transaction({"type": "transaction", "spans": [  # type: ignore[arg-type]
            {"description": f"GET /u?email={canary.email}", "data": {"ip": canary.ip},
             "span_id": "a" * 16}]}, {})
        crumb = before_breadcrumb({"message": f"login {canary.name}", "data": {
            "obj": _Shows(canary.email)}}, {})
    assert out is not None
    assert out["event_id"] == event["event_id"]
    assert out["contexts"]["trace"]["trace_id"] == event["contexts"]["trace"]["trace_id"]
    assert tx is not None
    assert crumb is not None
    assert isinstance(crumb["data"]["obj"], str)
    canary.assert_clean([repr(out), repr(tx), repr(crumb)])
    assert event["user"]["email"] == canary.email  # input untouched


class _Shows:
    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"<Shows {self.value}>"


def test_before_send_fails_closed(canary: Canary, monkeypatch: pytest.MonkeyPatch) -> None:
    import piimw.contrib.sentry as mod

    def broken(tree: Any, *, sink: str = "error") -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(mod, "scrub_event_tree", broken)
    out = before_send({"event_id": "e1", "message": canary.email,  # type: ignore[typeddict-unknown-key]
                       "exception": {"values": [{"type": "ValueError", "value": canary.email}]}},
                      {})
    assert out is not None
    assert out["event_id"] == "e1"
    assert out["tags"]["piimw"] == "withheld"  # type: ignore[index]
    canary.assert_clean(repr(out))
    assert before_breadcrumb({"message": canary.email}, {}) is None
