"""The data map: tagged path parameters are declared data, a trail's fields are escaped in
the HTML page, and an output that cannot be written is a clear error (found by review)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from piimw.cli import main
from piimw.config import Config
from piimw.datamap import DataMap, Observed, build, render, render_html

OPENAPI = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {
    "/users/{email}": {"get": {
        "parameters": [{"name": "email", "in": "path", "required": True,
                        "schema": {"type": "string"}, "x-pii": "email"}],
        "responses": {"204": {"description": "no body"}}}}}}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "openapi.json").write_text(json.dumps(OPENAPI))
    cfg = tmp_path / "piimw.toml"
    cfg.write_text('environment = "prod"\nopenapi = ["openapi.json"]\n')
    return cfg


def test_a_tagged_path_parameter_is_declared(config_file: Path) -> None:
    """A route whose only personal data is in its path was missing from every format."""
    dm = build(Config.from_file(config_file))
    (d,) = dm.declared
    assert (d.route, d.direction, d.pattern, d.category) == (
        "GET /users/{email}", "path", "/email", "user.contact.email")
    assert d.source  # the route has no other plan: the configuration names it
    assert {s: c.action for s, c in d.policy.items()} == {
        "app": "allow", "log": "redact", "error": "redact", "event": "redact"}
    assert "| path | `/email` | user.contact.email |" in render(dm, "md")
    assert "GET /users/{email},path,essential,user.contact.email" in render(dm, "csv")
    assert 'name: "email"' in render(dm, "fides")


def test_a_trail_action_is_escaped_in_the_html_page() -> None:
    """The trail is read unverified: its action named the edge's title unescaped."""
    script = "<script>alert(1)</script>"
    dm = DataMap("prod", "p", "piimw.toml", "2025-01-01T00:00:00.000Z", [], [
        Observed("GET /x", "request", "log", "/a", "user.contact.email", 1, {script: 1})])
    page = render_html(dm)
    assert script not in page
    assert "&lt;script&gt;" in page


@pytest.mark.parametrize("target", ["missing-dir/map.html", "."])
def test_map_output_it_cannot_write_is_a_clear_error(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        target: str) -> None:
    out = tmp_path / target
    assert main(["map", "--config", str(config_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"piimw: cannot write {out}: ")
    assert "Traceback" not in err


def test_suggest_output_it_cannot_write_is_a_clear_error(
        config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trail = tmp_path / "audit.jsonl"
    trail.write_text("")
    assert main(["suggest", "--config", str(config_file), "--audit", str(trail),
                 "-o", str(config_file)]) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_the_event_cell_shows_a_rule_that_lets_one_use_through(
        config_file: Path) -> None:
    """Events are decided for their own use: a rule allowing e-mail addresses in marketing
    events sent them raw while the map said ``redact`` for the field's ``essential`` use."""
    config_file.write_text(config_file.read_text() + (
        '[[rules]]\nid = "crm-email"\naction = "allow"\ncategories = ["email"]\n'
        'sinks = ["event"]\nuse = "marketing"\n'))
    (d,) = build(Config.from_file(config_file)).declared
    assert (d.policy["event"].action, d.policy["event"].rule) == ("allow", "crm-email")
    assert d.policy["log"].action == "redact"
