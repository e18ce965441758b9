from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from piimw.audit import AuditSettings, AuditTrail
from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import open_sink
from piimw.cli import main
from piimw.config import Config
from piimw.datamap import build, observed, render, suggest
from piimw.exchange import Exchange

KEY = "datamap-test-key-0123456789"
SIGNUP = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": "email"},
    "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
    "profile": {"$ref": "common.json#/$defs/profile"},
    "extra": {"type": "object", "additionalProperties": {"type": "string"}},
}}
COMMON = {"$defs": {"profile": {"type": "object", "properties": {
    "name": {"type": "string", "x-pii": {"category": "name", "uses": ["marketing"]}},
    "bio": {"type": "string"}}}}}
USER = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": "email"},
    "friends": {"type": "array", "items": {"type": "object", "properties": {
        "email": {"type": "string", "x-pii": "email"}}}}}}
ORDER = {"type": "object", "properties": {"ip": {"type": "string", "x-pii": "ip"},
                                          "ssn": {"type": "string", "x-pii": "ssn"}}}
PLANTED = ("jane.canary@example.com", "4111 1111 1111 1111", "bob.canary@example.org",
           "Janet Canary", "carol.canary@example.net")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PIIMW_AUDIT_KEY", KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY", "hash-key-0123456789abcdef")
    for name, doc in (("signup.json", SIGNUP), ("common.json", COMMON), ("user.json", USER),
                      ("order.json", ORDER)):
        (tmp_path / name).write_text(json.dumps(doc))
    (tmp_path / "piimw.toml").write_text(
        'environment = "staging"\nschemas = ["common.json"]\n'
        '[[routes]]\nroute = "POST /signup"\nrequest = "signup.json"\nresponse = "user.json"\n'
        '[[routes]]\nroute = "POST /orders"\nrequest = "order.json"\n'
        '[[rules]]\nid = "mask-email-logs"\naction = "mask"\ncategories = ["email"]\n'
        'sinks = ["log"]\n'
        '[[rules]]\nid = "hash-email-events"\naction = "hash"\ncategories = ["email"]\n'
        'sinks = ["event"]\n'
        '[[rules]]\nid = "ip-to-logs"\naction = "allow"\ncategories = ["ip"]\nsinks = ["log"]\n')
    config = Config.from_file(tmp_path / "piimw.toml")
    key = AuditKey(KEY)
    s = AuditSettings(url=f"jsonl://{tmp_path}/audit.jsonl")
    trail = AuditTrail(open_sink(s.url, Sealer(key, "staging")), key, environment="staging",
                       policy="p", settings=s)
    hdrs = [(b"content-type", b"application/json")]
    for _ in range(3):
        ex = Exchange(config, "POST", "/signup", hdrs)
        ex.request_body(hdrs, json.dumps({
            "email": "jane.canary@example.com", "card": "4111 1111 1111 1111",
            "profile": {"name": "Janet Canary", "bio": "mail bob.canary@example.org"},
            "extra": {"k": "carol.canary@example.net"}}).encode())
        ex.wants_response_body(200, hdrs)
        ex.response_body(200, hdrs, json.dumps({
            "email": "jane.canary@example.com", "friends": [],
            "contact": {"work": "bob.canary@example.org"}}).encode())
        trail.record_exchange(ex)
    trail.close()
    return tmp_path


def _config(project: Path) -> Config:
    return Config.from_file(project / "piimw.toml")


def test_declared_and_observed(project: Path) -> None:
    dm = build(_config(project), [str(project / "audit.jsonl")])
    rows = {(d.route, d.direction, d.pattern, d.category): d for d in dm.declared}
    email = rows[("POST /signup", "request", "/email", "user.contact.email")]
    assert email.policy["log"].action == "mask"
    assert email.policy["log"].rule == "mask-email-logs"
    assert email.policy["event"].action == "hash"
    assert email.policy["app"].action == "allow"
    name = rows[("POST /signup", "request", "/profile/name", "user.name")]
    assert name.uses == ("marketing",)
    assert ("POST /signup", "response", "/friends/*/email", "user.contact.email") in rows
    assert rows[("POST /orders", "request", "/ssn",
                 "user.government_id.national_identification_number")].tier == "sensitive"
    seen = {(o.route, o.direction, o.pattern, o.category): o for o in dm.observed}
    assert seen[("POST /signup", "request", "/profile/bio", "user.contact.email")].count == 3
    assert ("POST /signup", "request", "/extra/k", "user.contact.email") in seen
    assert ("POST /signup", "response", "/contact/work", "user.contact.email") in seen


@pytest.mark.parametrize("fmt", ["md", "json", "fides", "csv", "html"])
def test_every_format_renders_without_values(project: Path, fmt: str) -> None:
    text = render(build(_config(project), [str(project / "audit.jsonl")]), fmt)
    assert "user.contact.email" in text
    for value in PLANTED:
        assert value not in text


def test_fides_dataset_shape(project: Path) -> None:
    doc = yaml.safe_load(render(build(_config(project)), "fides"))
    (dataset,) = doc["dataset"]
    assert dataset["fides_key"] == "piimw_staging"
    colls = {c["name"]: c for c in dataset["collections"]}
    assert set(colls) == {"post_orders_request", "post_signup_request",
                          "post_signup_response_default"}
    fields = {f["name"]: f for f in colls["post_signup_request"]["fields"]}
    assert fields["email"]["data_categories"] == ["user.contact.email"]
    assert fields["profile"]["fields"][0]["data_uses"] == ["marketing"]
    friends = {f["name"]: f for f in colls["post_signup_response_default"]["fields"]}["friends"]
    assert friends["fields"][0]["data_categories"] == ["user.contact.email"]


def test_art30_csv(project: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(render(build(
        _config(project), [str(project / "audit.jsonl")]), "csv"))))
    signup = next(r for r in rows if r["Processing activity"] == "POST /signup"
                  and r["Direction"] == "request" and r["Source"] == "declared")
    assert "user.financial.credit_card" in signup["Special / sensitive data"]
    assert "marketing" in signup["Purposes (uses)"]
    assert "log: mask" in signup["Safeguards applied by piimw"]
    assert signup["Legal basis"] == ""  # for the controller to fill in
    assert any(r["Source"].startswith("observed") for r in rows)


def _apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 "add" only, enough to check the proposals apply."""
    for op in ops:
        assert op["op"] == "add"
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        assert parts[-1] not in node, "add must not overwrite"
        node[parts[-1]] = op["value"]
    return doc


def test_suggest_json_patch_per_schema_file(project: Path) -> None:
    config = _config(project)
    result = suggest(config, observed([str(project / "audit.jsonl")]))
    assert set(result.patches) == {"signup.json", "common.json", "user.json"}
    common = _apply_patch(json.loads((project / "common.json").read_text()),
                          result.patches["common.json"])
    assert common["$defs"]["profile"]["properties"]["bio"]["x-pii"] == "email"
    signup = _apply_patch(json.loads((project / "signup.json").read_text()),
                          result.patches["signup.json"])
    assert signup["properties"]["extra"]["additionalProperties"]["x-pii"] == "email"
    user = _apply_patch(json.loads((project / "user.json").read_text()),
                        result.patches["user.json"])
    assert user["properties"]["contact"] == {"type": "object", "properties": {
        "work": {"x-pii": "email"}}}


def test_cli(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = str(project / "piimw.toml")
    audit = str(project / "audit.jsonl")
    out = project / "map.html"
    assert main(["map", "--config", cfg, "--audit", audit, "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["map", "--config", cfg, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["environment"] == "staging"
    assert main(["suggest", "--config", cfg, "--audit", audit, "-o",
                 str(project / "patches")]) == 0
    assert json.loads((project / "patches" / "common.json.patch.json").read_text())
    assert main(["map", "--config", str(project / "missing.toml")]) == 2
    capsys.readouterr()


def test_html_is_self_contained(project: Path) -> None:
    page = render(build(_config(project), [str(project / "audit.jsonl")]), "html")
    assert "<svg" in page
    for banned in ("<script", "http://", "https://", "<link", "@import", "src="):
        assert banned not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(project: Path, tmp_path: Path) -> None:
    page = project / "map.html"
    page.write_text(render(build(_config(project), [str(project / "audit.jsonl")]), "html"))
    shot = tmp_path / "map.png"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         "--window-size=1400,900", page.as_uri()], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20000  # a rendered page, not a blank one
