from __future__ import annotations

import json

import pytest

import piimw
from piimw.consent import Consent
from piimw.engine import Scrubber
from piimw.policy import Policy, Rule
from piimw.transform import Hasher

SCHEMA = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "card": {"type": "string", "x-pii": "card"},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
        "age": {"type": "integer", "x-pii": "dob"},
        "tags": {"type": "array", "items": {"type": "string", "x-pii": "name"}},
        "address": {"type": "object", "x-pii": "address",
                    "properties": {"street": {"type": "string"}, "zip": {"type": "integer"}}},
        "note": {"type": "string"},
    },
}
DOC = {
    "email": "jane.doe@example.com",
    "card": "4242 4242 4242 4242",
    "phone": "+1 415 555 0100",
    "age": 1985,
    "tags": ["Jane", "Doe"],
    "address": {"street": "1 Infinite Loop", "zip": 95014},
    "note": "hello",
}


@pytest.fixture(scope="module")
def plan() -> piimw.Plan:
    return piimw.compile_schema(SCHEMA)


def test_log_sink_redacts_every_tagged_value(plan: piimw.Plan) -> None:
    res = piimw.scrub(DOC, plan=plan, sink="log")
    out = json.dumps(res.value)
    for secret in ("jane.doe", "4242", "555", "Infinite", "Jane"):
        assert secret not in out
    assert res.value["email"] == "[REDACTED:email]"
    assert res.value["note"] == "hello"
    assert res.value["address"] == {"street": "[REDACTED:address]", "zip": 0}
    assert res.value["age"] == 0  # keeps the integer type
    assert {f.location for f in res.findings} >= {"/email", "/card", "/tags/0", "/tags/1"}
    assert all(f.action == "redact" for f in res.findings)
    assert DOC["email"] == "jane.doe@example.com"  # input untouched


def test_findings_never_carry_values(plan: piimw.Plan) -> None:
    res = piimw.scrub(DOC, plan=plan, sink="log")
    dump = repr(res.findings)
    assert "jane" not in dump.lower()
    assert "4242" not in dump


def test_app_sink_allows_by_default(plan: piimw.Plan) -> None:
    res = piimw.scrub(DOC, plan=plan, sink="app")
    assert res.value == DOC
    assert res.value is DOC  # nothing copied when nothing changes


def test_consent_opt_out_drops_marketing_field(plan: piimw.Plan) -> None:
    consent = Consent.opt_out(["marketing"], signal="gpc")
    res = piimw.scrub(DOC, plan=plan, sink="app", consent=consent)
    assert "phone" not in res.value
    assert res.value["email"] == DOC["email"]
    phone = next(f for f in res.findings if f.location == "/phone")
    assert phone.action == "drop"
    assert phone.reason == "optout.gpc"


def test_rules_mask_and_hash(plan: piimw.Plan, hash_env: str) -> None:
    policy = Policy([
        Rule("mask-email", "mask", categories=("user.contact.email",), sinks=("log",)),
        Rule("hash-card", "hash", categories=("user.financial",), sinks=("log",)),
    ])
    s = Scrubber(policy, hasher=Hasher.from_env())
    res = s.scrub(DOC, plan, sink="log")
    assert res.value["email"] == "j***@example.com"
    assert res.value["card"].startswith("hmac:k1.log:")
    again = s.scrub(DOC, plan, sink="log")
    assert again.value["card"] == res.value["card"]  # stable pseudonym
    other_sink = s.scrub(DOC, plan, sink="event").value["card"]
    assert other_sink != res.value["card"]  # separate key per sink


def test_reject_rule(plan: piimw.Plan) -> None:
    policy = Policy([Rule("no-cards", "reject", categories=("user.financial.credit_card",),
                          sinks=("app",))])
    res = Scrubber(policy).scrub(DOC, plan, sink="app")
    assert res.rejected is not None
    assert res.rejected.location == "/card"


def test_drop_in_arrays(plan: piimw.Plan) -> None:
    policy = Policy([Rule("drop-names", "drop", categories=("user.name",))])
    res = Scrubber(policy).scrub(DOC, plan, sink="log")
    assert res.value["tags"] == [] or "tags" not in res.value


def test_undeclared_pii_is_found_and_redacted_in_logs() -> None:
    res = piimw.scrub({"comment": "call me at jane@example.org", "n": 3}, sink="log")
    assert res.value["comment"] == "call me at [REDACTED:email]"
    assert res.findings[0].reason == "default.no_pii"
    assert res.findings[0].detector == "email"


def test_undeclared_pii_in_client_sink_is_dropped() -> None:
    res = piimw.scrub({"items": [{"id": 1, "debug": "owner jane@example.org"}]}, sink="client")
    assert res.value == {"items": [{"id": 1}]}
    assert res.findings[0].reason == "schema.undeclared"


def test_reviewed_fields_are_not_scanned() -> None:
    plan = piimw.compile_schema({"properties": {"support": {"x-pii": False}}})
    res = piimw.scrub({"support": "help@example.com"}, plan=plan, sink="log")
    assert res.value == {"support": "help@example.com"}


def test_scrub_text() -> None:
    res = piimw.scrub_text("user jane@example.org paid with 4111 1111 1111 1111")
    assert "jane@" not in res.value
    assert "4111" not in res.value
    assert {f.category for f in res.findings} == {"user.contact.email",
                                                 "user.financial.credit_card"}


def test_audit_sink_never_allows() -> None:
    policy = Policy([Rule("allow-all", "allow")])
    plan = piimw.compile_schema({"properties": {"e": {"x-pii": "email"}}})
    res = Scrubber(policy).scrub({"e": "x@example.com"}, plan, sink="audit")
    assert res.value["e"] == "[REDACTED:email]"


def test_rule_environment_and_route_conditions() -> None:
    plan = piimw.compile_schema({"properties": {"e": {"x-pii": "email"}}})
    rule = Rule("staging-masks", "mask", sinks=("log",), environments=("staging",),
                routes=("/users/*",))
    staging = Scrubber(Policy([rule], environment="staging"))
    prod = Scrubber(Policy([rule], environment="production"))
    doc = {"e": "jane@example.com"}
    assert staging.scrub(doc, plan, sink="log", route="/users/{id}").value["e"] == \
        "j***@example.com"
    assert staging.scrub(doc, plan, sink="log", route="/orders").value["e"] == \
        "[REDACTED:email]"
    assert prod.scrub(doc, plan, sink="log", route="/users/{id}").value["e"] == \
        "[REDACTED:email]"


def test_ip_mask_never_echoes_a_non_ip_value() -> None:
    # Found by hypothesis: a value that is not an address came back whole from the IP mask.
    from piimw.transform import mask_string

    assert mask_string("S3cr3t-0", "user.device.ip_address") == "S*******"
    assert mask_string("203.0.113.9", "user.device.ip_address") == "203.*.*.*"
    assert mask_string("2001:db8::1", "user.device.ip_address") == "2001:*"


def test_credentials_never_go_back_to_the_client() -> None:
    # Reported in review: a writeOnly password in a response schema was echoed to the client.
    plan = piimw.compile_schema({"properties": {
        "password": {"type": "string", "writeOnly": True},
        "token": {"type": "string", "x-pii": "secret"},
        "shown": {"type": "string", "x-pii": {"category": "secret", "action": "allow"}},
        "email": {"type": "string", "x-pii": "email"}}})
    res = piimw.scrub({"password": "hunter2!", "token": "tok_123456", "shown": "once",
                       "email": "a@example.com"}, plan=plan, sink="client")
    assert res.value == {"shown": "once", "email": "a@example.com"}
    assert {f.reason for f in res.findings if f.location == "/password"} == {"secret.denylist"}
