from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import (
    KEY,
    PLANTED,
    exchange,
    make_config,
    read,
    signup_body,
    trail_for,
)

from piimw.audit import AuditSettings, AuditTrail, policy_hash
from piimw.audit.records import AuditKey, canonical, safe_pattern, utc_now
from piimw.config import Config
from piimw.consent import Consent
from piimw.errors import ConfigError
from piimw.policy import REASONS


def test_canonical_json_is_stable() -> None:
    assert canonical({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utc_now())
    assert utc_now(0.9999) == "1970-01-01T00:00:00.999Z"


@pytest.mark.parametrize(("raw", "expected"), [
    ("/users/3/email", "/users/*/email"),
    ("/extra/jane@example.com", "/extra/*"),
    ("/contacts/Jane Doe/phone", "/contacts/*/phone"),
    ("/by_phone/+14155550100", "/by_phone/*"),
    ("/x~1y", "/*"),
    ("query:email", "query:email"),
    ("query:jane@example.com", "query:*"),
    ("response", "response"),
    ("/", "/"),
])
def test_safe_pattern_never_keeps_a_data_key(raw: str, expected: str) -> None:
    assert safe_pattern(raw, lambda s: False) == expected


def test_safe_pattern_asks_the_detectors_about_plain_keys() -> None:
    assert safe_pattern("/profiles/janedoe/age", lambda s: s == "janedoe") == "/profiles/*/age"


def test_reportable_request_gets_its_own_record(config: Config, jsonl_trail: AuditTrail,
                                                tmp_path: Path) -> None:
    ex = exchange(config, body=signup_body(), headers=[("Sec-GPC", "1")],
                  response={"id": 1, "email": "jane.canary@example.com",
                            "friends": [{"email": "bob.canary@example.org"}],
                            "note": "card 4242 4242 4242 4242"})
    jsonl_trail.record_exchange(ex)
    jsonl_trail.close()
    (rec,) = [r for r in read(tmp_path / "audit.jsonl") if r["kind"] == "request"]
    assert rec["route"] == "/signup"
    assert rec["method"] == "POST"
    assert rec["status"] == 200
    assert rec["env"] == "test"
    assert rec["policy"] == "p" * 32
    assert re.fullmatch(r"[0-9a-f]{16}", rec["request_id"])
    assert rec["direction"] == "both"
    assert rec["signals"] == ["gpc"]
    assert set(rec["reasons"]) <= set(REASONS)
    assert {"optout.gpc", "schema.undeclared", "schema.action"} <= set(rec["reasons"])
    d = {(x["sink"], x["pattern"], x["category"]): x for x in rec["decisions"]}
    assert d[("app", "/name", "user.name")]["action"] == "drop"
    assert d[("app", "/name", "user.name")]["uses"] == ["marketing"]
    assert d[("app", "/card", "user.financial.credit_card")]["action"] == "mask"
    assert d[("app", "/extra/*", "user.contact.email")]["declared"] is False
    assert d[("client", "/friends/*/email", "user.contact.email")]["count"] == 1
    assert d[("client", "/note", "user.financial.credit_card")]["action"] == "drop"
    assert rec["prev"] == "0" * 64
    assert rec["seq"] == 1
    assert rec["kid"] == "a1"


def test_routine_requests_only_count(config: Config, tmp_path: Path,
                                     audit_key: AuditKey) -> None:
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key, summary_every=3)
    for _ in range(7):
        trail.record_exchange(exchange(config, "PUT", "/profile", body={"nickname": "x"}))
    trail.close()
    recs = read(tmp_path / "a.jsonl")
    summaries = [r for r in recs if r["kind"] == "summary"]
    assert not [r for r in recs if r["kind"] == "request"]
    assert [s["requests"] for s in summaries] == [3, 3, 1]  # by count, then at close
    assert summaries[0]["routes"] == [{"method": "PUT", "route": "/profile", "requests": 3,
                                       "status": {"2xx": 3}}]
    assert recs[-1]["kind"] == "checkpoint"
    assert recs[-1]["final"] is True


def test_summary_by_interval(config: Config, tmp_path: Path, audit_key: AuditKey) -> None:
    now = [1000.0]
    s = AuditSettings(url=f"jsonl://{tmp_path}/a.jsonl", summary_interval=30)
    from piimw.audit.records import Sealer
    from piimw.audit.sinks import open_sink

    trail = AuditTrail(open_sink(s.url, Sealer(audit_key, "t")), audit_key, environment="t",
                       policy="x", settings=s, clock=lambda: now[0])
    trail.record_exchange(exchange(config, "PUT", "/profile", body={"nickname": "x"}))
    assert trail._writer.flush()  # the writer counts it
    assert trail._tick() is None  # not due yet
    now[0] += 31
    summary = trail._tick()
    assert summary is not None
    assert summary["requests"] == 1
    assert summary["from"] == utc_now(1000.0)
    assert summary["to"] == utc_now(1031.0)
    trail.close()


def test_validation_failure_and_rejection_are_reported(schemas: Path, tmp_path: Path,
                                                       audit_key: AuditKey) -> None:
    strict = {"type": "object", "required": ["email"], "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "ssn": {"type": "string", "x-pii": {"category": "ssn", "action": "reject"}}}}
    (schemas / "strict.json").write_text(json.dumps(strict))
    cfg = Config.from_dict({"routes": [{"route": "POST /strict", "request": "strict.json"}]},
                           base_dir=schemas)
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key)
    rejected = exchange(cfg, path="/strict", body={"email": "jane.canary@example.com",
                                                   "ssn": "123-45-6789"})
    assert rejected.status == 422
    trail.record_exchange(rejected)
    trail.close()
    (rec,) = [r for r in read(tmp_path / "a.jsonl") if r["kind"] == "request"]
    assert rec["status"] == 422
    assert any(d["action"] == "reject" for d in rec["decisions"])
    assert "123-45-6789" not in (tmp_path / "a.jsonl").read_text()


class _FakeExchange:
    """The attributes record_exchange reads, for cases the real exchange cannot set yet."""

    def __init__(self, **kw: Any) -> None:
        self.findings: list[Any] = []
        self.consent = Consent()
        self.signals_used: set[str] = set()
        self.status = 422
        self.route = None
        self.route_template = "/strict"
        self.method = "POST"
        self.request_id = "0123456789abcdef"
        self.__dict__.update(kw)


def test_exchange_reasons_are_reported(tmp_path: Path, audit_key: AuditKey) -> None:
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key)
    trail.record_exchange(_FakeExchange(reasons={"schema.invalid", "not.a.reason"}))
    trail.close()
    (rec,) = [r for r in read(tmp_path / "a.jsonl") if r["kind"] == "request"]
    assert rec["reasons"] == ["schema.invalid"]  # only codes from the closed list


def test_subject_is_a_keyed_pseudonym(config: Config, tmp_path: Path,
                                      audit_key: AuditKey) -> None:
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key)
    for _ in range(2):
        ex = exchange(config, body=signup_body())
        ex.set_consent(Consent.opt_out(["marketing"], signal="registry",
                                       subject="subject-canary-42"))
        trail.record_exchange(ex)
    trail.close()
    recs = [r for r in read(tmp_path / "a.jsonl") if r["kind"] == "request"]
    assert recs[0]["subject"] == recs[1]["subject"] == audit_key.subject("subject-canary-42")
    assert recs[0]["subject"].startswith("hmac:a1.audit:")
    assert AuditKey("another-key-0123456789").subject("subject-canary-42") != recs[0]["subject"]
    assert "registry" in recs[0]["signals"]


def test_no_planted_value_ever_reaches_the_trail(config: Config, tmp_path: Path,
                                                 audit_key: AuditKey) -> None:
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key, checkpoint_every=3)
    for _ in range(3):
        ex = exchange(
            config, path="/signup", body=signup_body(), query=b"email=jane.canary%40example.com",
            headers=[("Authorization", "Bearer tok-canary-secret-123456"),
                     ("Cookie", "session=tok-canary-secret-123456"), ("DNT", "1")],
            response={"id": 1, "email": "jane.canary@example.com",
                      "friends": [{"email": "bob.canary@example.org"}],
                      "jane.canary@example.com": "4242 4242 4242 4242"})
        ex.set_consent(Consent.opt_out(["analytics"], subject="subject-canary-42"))
        trail.record_exchange(ex)
        trail.record_exchange(exchange(config, "PUT", "/profile",
                                       body={"nickname": "dave.canary@example.com"}))
        trail.record_exchange(exchange(config, "GET", "/users/jane.canary@example.com",
                                       headers=[("Sec-GPC", "1")]))
    trail.close()
    text = (tmp_path / "a.jsonl").read_text()
    assert text.count("\n") > 8
    for value in (*PLANTED, "jane.canary", "canary", "198.51.100.23", "%40"):
        assert value not in text


def test_missing_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PIIMW_AUDIT_KEY", raising=False)
    with pytest.raises(ConfigError, match="PIIMW_AUDIT_KEY") as e:
        AuditTrail.from_config({"audit": {"url": f"jsonl://{tmp_path}/a.jsonl"}}, "prod", "h")
    assert e.value.pointer == "/audit/key_env"
    with pytest.raises(ConfigError, match="MY_AUDIT_SECRET"):
        AuditTrail.from_config({"audit": {"key_env": "MY_AUDIT_SECRET"}}, "prod", "h")
    monkeypatch.setenv("PIIMW_AUDIT_KEY", "short")
    with pytest.raises(ConfigError, match="too short"):
        AuditTrail.from_config({"audit": {}}, "prod", "h")


def test_audit_disabled_or_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIIMW_AUDIT_KEY", raising=False)
    assert AuditTrail.from_config({"environment": "x"}, "prod", "h") is None
    assert AuditTrail.from_config({"audit": {"enabled": False}}, "prod", "h") is None


@pytest.mark.parametrize(("settings", "pointer", "message"), [
    ({"colour": 1}, "/audit", "unknown setting"),
    ({"url": "ftp://x"}, "/audit/url", "unknown audit sink scheme"),
    ({"on_failure": "explode"}, "/audit/on_failure", "expected one of"),
    ({"checkpoint_every": 0}, "/audit/checkpoint_every", "greater than 0"),
    ({"queue_size": True}, "/audit/queue_size", "expected int"),
    ({"summary_interval": "soon"}, "/audit/summary_interval", "expected number"),
])
def test_settings_are_validated(settings: dict[str, Any], pointer: str, message: str,
                                audit_key: AuditKey) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        AuditTrail.from_config({"audit": settings}, "prod", "h", source="piimw.toml")
    assert e.value.pointer == pointer
    assert e.value.source == "piimw.toml"


def test_from_config_builds_a_working_trail(tmp_path: Path, audit_key: AuditKey,
                                            config: Config) -> None:
    trail = AuditTrail.from_config(
        {"audit": {"url": f"jsonl://{tmp_path}/t.jsonl", "key_id": "k7"}}, "prod",
        policy_hash(config))
    assert trail is not None
    trail.record_exchange(exchange(config, body=signup_body()))
    assert trail.flush()
    trail.close()
    recs = read(tmp_path / "t.jsonl")
    assert recs[0]["kid"] == "k7"
    assert recs[0]["policy"] == policy_hash(config)


def test_policy_hash_is_stable_and_follows_the_rules(schemas: Path) -> None:
    a, b = make_config(schemas), make_config(schemas)
    assert policy_hash(a) == policy_hash(b)
    c = make_config(schemas, rules=[{"id": "r", "action": "mask", "categories": ["email"]}])
    assert policy_hash(c) != policy_hash(a)


def test_keys_are_never_written(config: Config, tmp_path: Path, audit_key: AuditKey) -> None:
    trail = trail_for(f"jsonl://{tmp_path}/a.jsonl", audit_key)
    trail.record_exchange(exchange(config, body=signup_body()))
    trail.close()
    for p in tmp_path.iterdir():
        if p.is_file():
            assert KEY not in p.read_text(errors="replace")
