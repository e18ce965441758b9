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

import piimw.contrib.sentry as mod
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


# -- SDK metadata is skipped by position, not by key name ----------------------------------

#: A valid card number that is also valid hex: scrubbed as user data, kept where it is an id.
NUMBER_LIKE_ID = "4111111111111111"


def _handler_with_metadata_names(email: str, card: str) -> None:
    status = f"sending receipt to {email}"  # noqa: F841 - frame variables Sentry captures,
    level = card  # noqa: F841 - named like event metadata
    op = {"environment": email}  # noqa: F841
    try:
        raise ValueError("charge failed")
    except ValueError as e:
        sentry_sdk.capture_exception(e)


def test_metadata_key_names_below_the_top_level_are_scrubbed(transport: CapturingTransport,
                                                             canary: Canary) -> None:
    """``status``, ``level``, ``op``, ``environment``... are the event's own metadata only at
    its top; in frame locals, ``extra``, contexts, request data and breadcrumbs they are user
    data."""
    _init(transport, pii=True)
    with activate(canary.exchange()), sentry_sdk.new_scope() as scope:
        scope.set_extra("status", f"user {canary.email}")
        scope.set_extra("nested", {"environment": canary.phone, "modules": [canary.name]})
        scope.set_context("app", {"level": canary.card, "op": canary.token})
        scope.add_event_processor(lambda event, hint: {**event, "request": {
            "data": {"sdk": canary.email, "timestamp": canary.ip}}})
        sentry_sdk.add_breadcrumb(message="checkout", data={"release": canary.name})
        _handler_with_metadata_names(canary.email, canary.card)
    sentry_sdk.flush()
    canary.assert_clean(transport.sent, "Sentry envelopes")
    event = next(e for e in transport.events() if e.get("exception"))
    assert event["level"] == "error"
    assert event["extra"]["status"] == "user [REDACTED:email]"
    frame = event["exception"]["values"][-1]["stacktrace"]["frames"][-1]
    assert frame["vars"]["status"] == "'sending receipt to [REDACTED:email]'"
    assert isinstance(frame["lineno"], int)
    assert len(event["contexts"]["trace"]["trace_id"]) == 32


def test_sdk_metadata_positions_are_kept_as_they_are(canary: Canary) -> None:
    ids = {"trace_id": NUMBER_LIKE_ID * 2, "span_id": NUMBER_LIKE_ID,
           "parent_span_id": NUMBER_LIKE_ID}
    event: dict[str, Any] = {
        "event_id": NUMBER_LIKE_ID * 2, "level": "error", "release": "shop@1.0",
        "timestamp": "2030-01-02T03:04:05.678901Z",
        "contexts": {"trace": {**ids, "data": {"status": canary.email}}},
        "exception": {"values": [{"type": "ValueError", "value": "x", "stacktrace": {
            "frames": [{"lineno": 12, "in_app": True, "vars": {"lineno": canary.card}}]}}]},
        "breadcrumbs": {"values": [{"timestamp": "2030-01-02T03:04:05Z", "level": "info",
                                    "data": {"level": canary.phone}}]},
        "extra": {"contexts": {"trace": {"span_id": canary.card}}, "op": canary.name},
    }
    tx: dict[str, Any] = {"type": "transaction", "start_timestamp": 1.5, "spans": [
        {**ids, "op": "db", "description": "SELECT 1", "data": {"op": canary.email}}]}
    log: dict[str, Any] = {"trace_id": NUMBER_LIKE_ID * 2, "body": "signup", "attributes": {
        "sentry.segment.id": NUMBER_LIKE_ID, "status": canary.email}}
    with activate(canary.exchange()):
        out: Any = before_send(event, {})  # type: ignore[arg-type]
        out_tx: Any = before_send_transaction(tx, {})  # type: ignore[arg-type]
        out_log = mod.before_send_log(log, {})
    assert out is not None
    assert out_tx is not None
    canary.assert_clean([repr(out), repr(out_tx), repr(out_log)])
    assert {k: out[k] for k in ("event_id", "level", "release", "timestamp")} == {
        k: event[k] for k in ("event_id", "level", "release", "timestamp")}
    assert {k: out["contexts"]["trace"][k] for k in ids} == ids
    assert out["exception"]["values"][0]["stacktrace"]["frames"][0]["lineno"] == 12
    assert out["breadcrumbs"]["values"][0]["timestamp"] == "2030-01-02T03:04:05Z"
    assert {k: out_tx["spans"][0][k] for k in ids} == ids
    assert out_log["attributes"]["sentry.segment.id"] == NUMBER_LIKE_ID


# -- streamed spans (trace_lifecycle="stream") ----------------------------------------------

needs_streaming = pytest.mark.skipif(
    "before_send_span" not in sentry_sdk.consts.DEFAULT_OPTIONS,
    reason="this sentry-sdk has no top-level before_send_span (span streaming)")


@pytest.fixture
def first_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a fresh process: the SDK sets PIIIntegration up (installing its hooks) on init.

    On a later ``init`` only the event processor re-installs them, and streamed spans never
    pass it; that gap is not what these tests are about.
    """
    import sentry_sdk.integrations as integrations
    import sentry_sdk.scope as sdk_scope

    monkeypatch.setattr(integrations, "_processed_integrations",
                        integrations._processed_integrations - {PIIIntegration.identifier})
    monkeypatch.setattr(sdk_scope, "global_event_processors",
                        list(sdk_scope.global_event_processors))


def _streamed_spans(transport: CapturingTransport) -> list[dict[str, Any]]:
    return [span for env in transport.envelopes for item in env.items if item.type == "span"
            for span in (item.payload.json or {}).get("items", [])]


def _span_scenario(c: Canary) -> None:
    from sentry_sdk import traces

    with (activate(c.exchange()), traces.start_span(name=f"POST /signup?email={c.email}"),
          traces.start_span(name=f"INSERT INTO users VALUES ('{c.email}', '{c.name}')",
                            attributes={"db.card": c.card}) as span):
        span.set_attribute("status", f"phone {c.phone}")


@needs_streaming
def test_streamed_spans_are_scrubbed(transport: CapturingTransport, canary: Canary,
                                     first_setup: None) -> None:
    seen: list[str] = []

    def user_hook(span: Any, hint: Any) -> Any:
        seen.append(span["name"])
        span["attributes"]["added_by_user"] = canary.token
        return span

    _init(transport, pii=True, trace_lifecycle="stream", before_send_span=user_hook)
    _span_scenario(canary)
    sentry_sdk.flush()
    spans = _streamed_spans(transport)
    assert len(spans) == 2
    assert len(seen) == 2  # the user's hook ran first, ours after it
    canary.assert_clean(transport.sent, "streamed spans")
    names = {s["name"] for s in spans}
    assert "INSERT INTO users VALUES ('[REDACTED:email]', '[REDACTED:name]')" in names
    child = next(s for s in spans if not s["is_segment"])
    assert child["attributes"]["added_by_user"]["value"].startswith("[REDACTED")
    assert child["attributes"]["sentry.segment.id"]["value"] == child["parent_span_id"]


@needs_streaming
def test_streamed_span_fails_closed(transport: CapturingTransport, canary: Canary,
                                    first_setup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK sends the original span when the hook raises or returns ``None``: so a
    placeholder instead."""

    def broken(tree: Any, *, sink: str = "error") -> Any:
        raise RuntimeError("boom")

    _init(transport, pii=True, trace_lifecycle="stream")
    monkeypatch.setattr(mod, "scrub_event_tree", broken)
    _span_scenario(canary)
    sentry_sdk.flush()
    spans = _streamed_spans(transport)
    assert len(spans) == 2
    canary.assert_clean(transport.sent, "streamed spans")
    assert {s["name"] for s in spans} == {mod.SPAN_WITHHELD}
    assert all(s["attributes"]["piimw"]["value"] == "withheld" for s in spans)


def test_before_send_span_never_returns_none(canary: Canary,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    span = {"trace_id": "a" * 32, "span_id": "b" * 16, "name": f"GET /u/{canary.email}",
            "status": "ok", "is_segment": True, "start_timestamp": 1.0,
            "attributes": {"sentry.segment.id": "b" * 16, "user": canary.name}}

    def user_fails(item: Any, hint: Any) -> Any:
        raise RuntimeError("user bug")

    options: dict[str, Any] = {"before_send_span": user_fails, "_experiments": {}}
    mod.install_hooks(options)
    with activate(canary.exchange()):
        for hook in (mod.before_send_span, options["before_send_span"],
                     mod._chain_undroppable(lambda item, hint: None, mod.before_send_span)):
            out = hook(dict(span), {})
            assert out["name"] == "GET /u/[REDACTED:email]"
            assert out["attributes"]["sentry.segment.id"] == "b" * 16
            canary.assert_clean(repr(out))

    def broken(tree: Any, *, sink: str = "error") -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(mod, "scrub_event_tree", broken)
    out = mod.before_send_span(span, {})
    assert out["name"] == mod.SPAN_WITHHELD
    assert out["span_id"] == span["span_id"]
    assert out["attributes"] == {"sentry.segment.id": "b" * 16, "piimw": "withheld"}
    canary.assert_clean(repr(out))


def test_span_hook_only_where_the_sdk_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    shared: dict[str, Any] = {}
    monkeypatch.setattr(mod, "_SDK_STREAMS_SPANS", False)  # an SDK without span streaming
    options: dict[str, Any] = {"_experiments": shared}
    mod.install_hooks(options)
    assert "before_send_span" not in options
    assert "before_send_span" not in shared

    monkeypatch.setattr(mod, "_SDK_STREAMS_SPANS", True)  # one reading _experiments only
    monkeypatch.delitem(sentry_sdk.consts.DEFAULT_OPTIONS, "before_send_span", raising=False)
    mod.install_hooks(options)
    assert options["_experiments"]["before_send_span"] is mod.before_send_span
    assert "before_send_span" not in options
    assert shared == {}  # a copy: the SDK's default ``_experiments`` is shared by all clients
    assert options["before_send"] is before_send
