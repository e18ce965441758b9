"""The ``piimw`` command: ``check`` in-process, ``demo`` as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from piimw import cli

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_TOML = REPO / "example_apps" / "starlette_app" / "piimw.toml"


def test_check_lists_routes_and_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(EXAMPLE_TOML)]) == 0
    out = capsys.readouterr().out
    assert f"{EXAMPLE_TOML}: OK" in out
    assert "routes       5 with a plan" in out
    assert "rules        1 (log-emails-masked)" in out
    assert "POST /signup  (operation signup)" in out
    assert "GET /users/{user_id}" in out
    lines = out.splitlines()
    phone = next(line for line in lines if "/phone" in line)
    assert "user.contact.phone_number" in phone
    assert "uses marketing" in phone
    assert any("/password" in line and "(writeOnly/password)" in line for line in lines)
    assert any("/card" in line and "action mask" in line for line in lines)
    assert any("/items/*/sku" in line and "not PII" in line for line in lines)


def write(tmp_path: Path, toml: str, spec: Mapping[str, object] | None = None) -> Path:
    if spec is not None:
        (tmp_path / "openapi.json").write_bytes(orjson.dumps(spec))
    path = tmp_path / "piimw.toml"
    path.write_text(toml)
    return path


def test_check_unknown_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bogus = 1\n")
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("piimw: error: ")
    assert str(path) in err
    assert "unknown setting(s) 'bogus'" in err


def test_check_bad_tag_names_file_and_pointer(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/x": {"post": {
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object",
            "properties": {"email": {"type": "string", "x-pii": "e-mail-ish"}}}}}},
        "responses": {"200": {"description": "ok"}}}}}}
    path = write(tmp_path, 'openapi = "openapi.json"\n', spec)
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "openapi.json" in err
    assert "/properties/email/x-pii" in err
    assert "e-mail-ish" in err  # the tag is configuration, not personal data


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", str(tmp_path / "nope.toml")]) == 1
    assert "cannot read configuration" in capsys.readouterr().err


def test_check_secret_in_file_is_refused(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[hash]\nkey = "hunter2"\n')
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "secrets never go in configuration" in err
    assert "hunter2" not in err


def test_help_lists_the_registered_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out


def test_a_broken_command_does_not_break_the_others(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "broken", "piimw.no_such_module:COMMAND")
    assert cli.main(["check", str(EXAMPLE_TOML)]) == 0
    assert cli.main(["broken"]) == 2
    assert "unavailable" in capsys.readouterr().err


def test_python_m_piimw() -> None:
    proc = subprocess.run([sys.executable, "-m", "piimw", "check", str(EXAMPLE_TOML)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "POST /orders" in proc.stdout


@pytest.mark.server
def test_demo_runs_and_shows_the_redactions() -> None:
    env = {**os.environ, "COLUMNS": "140"}
    proc = subprocess.run([sys.executable, "-m", "piimw", "demo"], capture_output=True,
                          text=True, timeout=120, check=False, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "[REDACTED:name]" in out  # the signup payload in the log
    assert "[REDACTED:secret]" in out  # the password in the log
    assert "j***@example.com" in out  # emails masked in the log, as piimw.toml allows
    assert "**** **** **** 4242" in out  # the Order schema masks the card in responses
    assert "Vary: Sec-GPC" in out
    log = "\n".join(cells(out, "log"))
    assert "signup {" in log
    assert "RuntimeError: mail relay refused" in log
    assert "jane.doe@example.com" not in log  # nor any other sample value
    assert "Jane Doe" not in log
    assert "correct horse" not in log
    assert "4242 4242 4242 4242" not in log
    handler = "\n".join(cells(out, "handler got"))
    assert "correct horse battery" in handler  # the handler did get the password


def cells(output: str, label: str) -> list[str]:
    """The cells of one row of the demo's tables, both columns, line by line."""
    out: list[str] = []
    inside = False
    for line in output.splitlines():
        if line.startswith("-------"):
            inside = False
        elif line.startswith(label + " ") and "|" in line:
            inside = True
        if inside and "|" in line:
            out.extend(part.strip() for part in line.split("|")[1:])
    return out


def test_check_never_touches_the_audit_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # Reported in review: `piimw check` opened the live trail and appended a checkpoint.
    monkeypatch.setenv("PIIMW_AUDIT_KEY", "audit-key-0123456789abcdef")
    trail = tmp_path / "audit.jsonl"
    config = tmp_path / "piimw.toml"
    config.write_text(f'[audit]\nurl = "jsonl://{trail}"\n')
    assert cli.main(["check", str(config)]) == 0
    capsys.readouterr()
    assert not trail.exists()
