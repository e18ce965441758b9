"""Review findings on the audit trail: methods, emptied or spliced trails, forged heads,
malformed input that must give a diagnostic, not a traceback, and never a value."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest
from audit_helpers import trail_for

from piimw.audit.records import AuditKey, Builder, Counters, Snapshot, safe_pattern
from piimw.audit.report import records, summarize
from piimw.audit.sinks import sidecar
from piimw.audit.verify import verify
from piimw.cli import main
from piimw.errors import ConfigError

CARD, PHONE = "4111111111111111", "+14155550100"


def _trail(url: str, key: AuditKey, n: int = 6) -> None:
    trail = trail_for(url, key, checkpoint_every=100)
    for i in range(n):
        trail.record({"kind": "request", "time": f"2025-01-01T00:00:{i:02d}.000Z",
                      "route": "/x", "method": "GET", "status": 200, "decisions": [],
                      "reasons": [], "signals": [], "n": i})
    trail.close()


def _kinds(sources: list[str], key: AuditKey | None) -> list[str]:
    return [p.kind for p in verify(sources, key).problems]


# -- f2: the method is client-chosen text ----------------------------------------------------
def test_a_non_standard_method_is_written_as_other() -> None:
    builder = Builder(AuditKey("k" * 16), "test", "p" * 32)
    snap = Snapshot(0.0, "r1", None, None, PHONE, 405, (), ("gpc",), ())
    assert builder.request(snap)["method"] == "(other)"
    assert builder.request(Snapshot(0.0, "r2", None, None, "PATCH", 200, (), ("gpc",), ())
                           )["method"] == "PATCH"
    counters = Counters(0.0)
    counters.add("/signup", CARD, 405, ())
    summary = builder.summary(counters)
    assert [r["method"] for r in summary["routes"]] == ["(other)"]
    assert CARD not in json.dumps(summary)


def test_report_of_an_older_trail_does_not_print_its_methods(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"kind": "request", "time": "2025-01-01T00:00:00.000Z",
                                "route": "/x", "method": CARD, "decisions": []}) + "\n")
    s = summarize(records([str(path)]))
    assert dict(s.routes) == {"(other) /x": 1}


def test_safe_pattern_requires_a_test() -> None:
    with pytest.raises(TypeError):
        safe_pattern("/a/b")  # type: ignore[call-arg]


# -- f3: an emptied trail ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_an_emptied_trail_is_truncated(tmp_path: Path, audit_key: AuditKey, kind: str) -> None:
    path = tmp_path / ("audit.jsonl" if kind == "jsonl" else "audit.db")
    url = f"{kind}://{path}"
    _trail(url, audit_key)
    assert verify([url], audit_key).ok
    if kind == "jsonl":
        path.write_bytes(b"")
    else:
        with sqlite3.connect(path) as c:
            c.execute("DELETE FROM piimw_audit")
        c.close()
    report = verify([url], audit_key)
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", 1)]
    assert "seq 7" in report.problems[0].detail  # 6 records and the final checkpoint


def test_records_replaced_by_another_genuine_chain(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(f"jsonl://{path}", audit_key, n=2)
    older = path.read_bytes()
    path.unlink()
    sidecar(path).unlink()
    _trail(f"jsonl://{path}", audit_key)
    path.write_bytes(older)
    assert sorted(_kinds([str(path)], audit_key)) == ["inserted", "truncated"]


# -- f4: a genuine chain spliced in ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_a_spliced_chain_is_inserted(tmp_path: Path, audit_key: AuditKey, kind: str) -> None:
    old = tmp_path / "old.jsonl"
    _trail(f"jsonl://{old}", audit_key, n=3)
    foreign = old.read_text().splitlines()
    path = tmp_path / ("audit.jsonl" if kind == "jsonl" else "audit.db")
    url = f"{kind}://{path}"
    _trail(url, audit_key)
    if kind == "jsonl":
        lines = path.read_text().splitlines()
        path.write_text("\n".join(lines[:3] + foreign + lines[3:]) + "\n")
    else:
        with sqlite3.connect(path) as c:
            c.executemany("INSERT INTO piimw_audit (seq, kind, time, line) VALUES (0, '', '', ?)",
                          [(line,) for line in foreign])
        c.close()
    report = verify([url], audit_key)
    assert [p.kind for p in report.problems] == ["inserted"]
    assert "another chain" in report.problems[0].detail


def test_a_trail_saved_from_logging_may_hold_several_chains(tmp_path: Path,
                                                            audit_key: AuditKey) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _trail(f"jsonl://{a}", audit_key, n=2)
    _trail(f"jsonl://{b}", audit_key, n=2)
    shipped = tmp_path / "shipped.log"  # no sidecar: lines saved from two processes' logs
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    shipped.write_text("\n".join([la[0], lb[0], la[1], lb[1], la[2], lb[2]]) + "\n")
    report = verify([str(shipped)], audit_key)
    assert report.ok, report.problems
    assert any("2 chains" in n for n in report.notes)


# -- f10: a head that is present but not authentic ------------------------------------------
def test_a_forged_sidecar_is_altered(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(f"jsonl://{path}", audit_key)
    lines = path.read_text().splitlines(keepends=True)
    head = json.loads(sidecar(path).read_text())
    head.update(seq=3, hash="0" * 64)  # lowered to match a cut trail: its MAC fails
    sidecar(path).write_text(json.dumps(head))
    path.write_text("".join(lines[:3]))
    report = verify([str(path)], audit_key)
    assert [(p.kind, p.where) for p in report.problems] == [("altered", sidecar(path).name)]
    sidecar(path).write_text("not a head")
    assert _kinds([str(path)], audit_key) == ["altered"]


def test_a_deleted_head_row_is_altered(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.db"
    _trail(f"sqlite://{path}", audit_key)
    with sqlite3.connect(path) as c:
        c.execute("DELETE FROM piimw_audit WHERE seq > 3")
        c.execute("DELETE FROM piimw_audit_head")
    c.close()
    assert _kinds([f"sqlite://{path}"], audit_key) == ["altered"]


def test_design_limits_of_the_head(tmp_path: Path, audit_key: AuditKey) -> None:
    """What verify cannot tell (documented): a deleted sidecar looks like a trail saved from
    logging:// (a note), and a trail rolled back with an old copy of its genuine sidecar
    looks like the trail at that time (only anchors kept elsewhere show it)."""
    path = tmp_path / "audit.jsonl"
    _trail(f"jsonl://{path}", audit_key)
    lines = path.read_text().splitlines(keepends=True)
    sidecar(path).unlink()
    path.write_text("".join(lines[:3]))
    report = verify([str(path)], audit_key)
    assert report.ok
    assert any("no signed chain head" in n for n in report.notes)
    path.unlink()
    _trail(f"jsonl://{path}", audit_key, n=2)
    old_trail, old_head = path.read_bytes(), sidecar(path).read_bytes()
    _trail(f"jsonl://{path}", audit_key, n=2)
    path.write_bytes(old_trail)
    sidecar(path).write_bytes(old_head)
    assert verify([str(path)], audit_key).ok


# -- f7: malformed input -----------------------------------------------------------------------
def test_a_rotated_gz_cut_short_is_truncated(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.jsonl"
    _trail(f"jsonl://{path}", audit_key, n=300)
    data = gzip.compress(path.read_bytes())
    rotated = tmp_path / "audit.jsonl.1.gz"
    rotated.write_bytes(data[: len(data) // 2])
    report = verify([str(rotated)], audit_key)
    assert [p.kind for p in report.problems] == ["truncated"]
    (tmp_path / "not.gz").write_bytes(b"plain text, not gzip\n")
    assert not verify([str(tmp_path / "not.gz")], audit_key).ok  # a report, no traceback


def test_cli_gives_diagnostics_not_tracebacks(tmp_path: Path, audit_key: AuditKey,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (a)")
    c.close()
    with pytest.raises(ConfigError):
        list(records([f"sqlite://{other}"]))
    assert main(["audit", "verify", f"sqlite://{other}"]) == 2
    assert main(["audit", "report", f"sqlite://{other}"]) == 2
    assert "not a piimw audit database" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({
        "kind": "request", "time": "2025-01-01T00:00:00.000Z", "route": "/x", "method": "GET",
        "decisions": [{"declared": False, "pattern": "/a", "category": "user.contact.email",
                       "count": "jane@example.com"}, "not an object"],
        "reasons": "a string"}) + "\n"
        + json.dumps({"kind": "summary", "time": "2025-01-01T00:00:01.000Z",
                      "requests": "jane@example.com", "routes": 7}) + "\n")
    assert main(["audit", "report", str(bad)]) == 0
    out, err = capsys.readouterr()
    assert "jane@example.com" not in out + err
    assert "requests: 1 " in out
