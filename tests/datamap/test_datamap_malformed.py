"""``piimw map`` on a malformed trail: counts it can trust, no traceback, no value quoted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import piimw.datamap
from piimw.cli import main
from piimw.datamap import DataMap, Observed, flow_svg, observed, render_html

EMAIL = "jane@example.com"


def _record(**decision: object) -> str:
    d = {"declared": False, "dir": "request", "sink": "app", "pattern": "/a",
         "category": "user.contact.email", "action": "allow", **decision}
    return json.dumps({"kind": "request", "time": "2025-01-01T00:00:00.000Z", "route": "/x",
                       "method": "4111111111111111", "decisions": [d, "not an object"]}) + "\n"


def test_non_numeric_counts_and_methods_are_not_trusted(tmp_path: Path) -> None:
    trail = tmp_path / "bad.jsonl"
    trail.write_text(_record(count=EMAIL) + _record(count=2))
    (o,) = observed([str(trail)])
    assert (o.route, o.count) == ("(other) /x", 2)


def test_map_cli_never_echoes_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "piimw.toml"
    cfg.write_text('environment = "production"\n')
    trail = tmp_path / "bad.jsonl"
    trail.write_text(_record(count=EMAIL))
    assert main(["map", "--config", str(cfg), "--audit", str(trail)]) == 0
    out, err = capsys.readouterr()
    assert EMAIL not in out + err

    def broken(*args: object, **kwargs: object) -> DataMap:
        raise ValueError(f"invalid literal for int() with base 10: {EMAIL!r}")

    monkeypatch.setattr(piimw.datamap, "build", broken)
    assert main(["map", "--config", str(cfg), "--audit", str(trail)]) == 2
    err = capsys.readouterr().err
    assert "ValueError" in err
    assert EMAIL not in err
    assert main(["map", "--config", str(cfg), "--since", "yesterday"]) == 2
    assert "not a time" in capsys.readouterr().err


def test_html_skips_a_sink_it_does_not_draw() -> None:
    dm = DataMap("production", "p", "piimw.toml", "2025-01-01T00:00:00.000Z", [], [
        Observed("GET /y", "internal", "audit", "/a", "user.contact.email", 1, {"allow": 1})])
    assert "s:audit" not in flow_svg(dm)
    assert "<svg" in render_html(dm)
