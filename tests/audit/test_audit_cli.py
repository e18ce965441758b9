from __future__ import annotations

import json
from pathlib import Path

import pytest
from audit_helpers import PLANTED, exchange, signup_body, trail_for

from piimw.audit.records import AuditKey
from piimw.cli import main
from piimw.config import Config


@pytest.fixture
def trail_path(tmp_path: Path, audit_key: AuditKey, config: Config) -> Path:
    path = tmp_path / "audit.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key, checkpoint_every=4)
    for i in range(6):
        trail.record_exchange(exchange(config, body=signup_body(),
                                       headers=[("Sec-GPC", "1")] if i % 2 else []))
        trail.record_exchange(exchange(config, "PUT", "/profile", body={"nickname": "n"}))
    trail.close()
    return path


def test_verify_exit_codes(trail_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["audit", "verify", str(trail_path)]) == 0
    assert capsys.readouterr().out.startswith("OK ")
    lines = trail_path.read_text().splitlines()
    del lines[2]
    trail_path.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify", str(trail_path), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert out["problems"][0]["kind"] == "deleted"
    assert out["problems"][0]["where"] == "line 3"
    monkeypatch.delenv("PIIMW_AUDIT_KEY")
    assert main(["audit", "verify", str(trail_path)]) == 2
    assert "PIIMW_AUDIT_KEY" in capsys.readouterr().err
    assert main(["audit", "verify", "--no-key", str(trail_path)]) == 1
    assert main(["audit", "verify", str(trail_path.with_name("missing.jsonl")), "--no-key"]) == 2


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["audit", "verify"])
    assert e.value.code == 2
    capsys.readouterr()


def test_report_text_and_json(trail_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "report", str(trail_path)]) == 0
    text = capsys.readouterr().out
    assert "POST /signup" in text
    assert "optout.gpc" in text
    assert main(["audit", "report", str(trail_path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["requests"] == 12
    assert data["reported"] == 6
    assert data["routes"] == {"POST /signup": 6, "PUT /profile": 6}
    assert data["signals"] == {"gpc": 3}
    assert data["reasons"]["optout.gpc"] == 3
    assert data["actions"]["mask"] == 6
    assert any(k.startswith("POST /signup /extra/*") for k in data["undeclared"])
    for value in PLANTED:
        assert value not in text


def test_report_time_range(trail_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "report", str(trail_path), "--until", "2000-01-01",
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 0
    assert main(["audit", "report", str(trail_path), "--since", "1h", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 12
    assert main(["audit", "report", str(trail_path), "--since", "yesterday"]) == 2
    capsys.readouterr()


def test_report_reads_the_url_from_the_config(trail_path: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "piimw.toml"
    cfg.write_text(f'[audit]\nurl = "jsonl://{trail_path}"\n')
    assert main(["audit", "report", "--config", str(cfg), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 12


def test_relative_trail_paths_are_relative_to_the_settings_file(
        tmp_path: Path, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The application and ``piimw audit`` open the same trail wherever each runs from."""
    app_dir, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    app_dir.mkdir()
    elsewhere.mkdir()
    settings = app_dir / "piimw.toml"
    settings.write_text('[audit]\nurl = "jsonl://trail/audit.jsonl"\n', "utf-8")
    monkeypatch.chdir(elsewhere)
    config = Config.from_file(settings)
    assert config.audit is not None
    config.audit.record_exchange(exchange(config, body=signup_body()))
    config.audit.close()
    assert (app_dir / "trail" / "audit.jsonl").exists()
    assert not (elsewhere / "trail").exists()
    monkeypatch.chdir(tmp_path)  # the operator runs the tool from yet another directory
    assert main(["audit", "report", "--config", str(settings), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["requests"] == 1


@pytest.mark.parametrize(("url", "want"), [
    ("jsonl://a.jsonl", "jsonl:///srv/app/a.jsonl"),
    ("sqlite://db/a.db", "sqlite:///srv/app/db/a.db"),
    ("a.jsonl", "/srv/app/a.jsonl"),
    ("jsonl:///var/log/a.jsonl", "jsonl:///var/log/a.jsonl"),
    ("/var/log/a.jsonl", "/var/log/a.jsonl"),
    ("logging://piimw.audit", "logging://piimw.audit"),
])
def test_audit_url_anchoring(url: str, want: str) -> None:
    from piimw._paths import audit_url

    assert audit_url(url, Path("/srv/app")) == want
    assert audit_url(url, None) == url
