"""Each kind of tampering, on each sink, is detected and named, with where it happened."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from audit_helpers import trail_for

from piimw.audit.records import AuditKey, body_of
from piimw.audit.verify import Report, verify

N = 23  # payloads; with checkpoint_every=5 the trail holds seq 1..29 (+ final checkpoint)


class Store:
    """The stored lines of a trail, as a list, and a way to put a changed list back."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.path = tmp / ("audit.jsonl" if kind == "jsonl" else "audit.db")
        self.url = f"{kind}://{self.path}"

    def lines(self) -> list[str]:
        if self.kind == "jsonl":
            return self.path.read_text().splitlines()
        with sqlite3.connect(self.path) as c:
            rows = [r[0] for r in c.execute("SELECT line FROM piimw_audit ORDER BY id")]
        c.close()
        return rows

    def store(self, lines: list[str]) -> None:
        if self.kind == "jsonl":
            self.path.write_text("".join(line + "\n" for line in lines))
            return
        c = sqlite3.connect(self.path)
        with c:
            c.execute("DELETE FROM piimw_audit")
            c.executemany("INSERT INTO piimw_audit (seq, kind, time, line) VALUES (0, '', '', ?)",
                          [(line,) for line in lines])
        c.close()


@pytest.fixture(params=["jsonl", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path, audit_key: AuditKey) -> Store:
    s = Store(request.param, tmp_path)
    trail = trail_for(s.url, audit_key, checkpoint_every=5)
    for i in range(N):
        trail.record({"kind": "request", "time": f"2025-01-01T00:00:{i:02d}.000Z",
                      "route": "/x", "method": "GET", "status": 200, "decisions": [],
                      "reasons": [], "signals": [], "n": i})
    trail.close()
    return s


def seq_of(line: str) -> int:
    return int(json.loads(line)["seq"])


def index_of(lines: list[str], seq: int) -> int:
    return next(i for i, line in enumerate(lines) if seq_of(line) == seq)


def check(store: Store, key: AuditKey | None) -> Report:
    return verify([store.url], key)


def only(report: Report) -> tuple[str, int | None, str]:
    assert len(report.problems) == 1, report.problems
    p = report.problems[0]
    return p.kind, p.seq, p.detail


def test_intact_trail_verifies(store: Store, audit_key: AuditKey) -> None:
    report = check(store, audit_key)
    assert report.ok, report.problems
    (chain,) = report.chains
    assert (chain.first_seq, chain.last_seq) == (1, 29)
    assert chain.checkpoints == 6  # seq 5, 10, 15, 20, 25 and the final one
    assert chain.sealed


def test_deleted_record(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    del lines[index_of(lines, 7)]
    store.store(lines)
    kind, seq, detail = only(check(store, audit_key))
    assert (kind, seq) == ("deleted", 8)
    assert "seq 7" in detail


def test_deleted_range_and_checkpoint(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    lines = [ln for ln in lines if seq_of(ln) not in (9, 10, 11)]  # 10 is a checkpoint
    store.store(lines)
    kind, seq, detail = only(check(store, audit_key))
    assert (kind, seq) == ("deleted", 12)
    assert "seq 9-11" in detail


def test_inserted_forged_record(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    forged = json.loads(lines[index_of(lines, 12)])
    forged["status"] = 500
    lines.insert(index_of(lines, 13), json.dumps(forged))
    store.store(lines)
    kind, seq, _ = only(check(store, audit_key))
    assert (kind, seq) == ("inserted", 12)


def test_inserted_new_record_between(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    new = json.loads(lines[index_of(lines, 3)])
    new.update(seq=1000, n=99)
    lines.insert(index_of(lines, 4), json.dumps(new))
    store.store(lines)
    kind, _, detail = only(check(store, audit_key))
    assert kind == "inserted"
    assert "between seq 3 and 4" in detail


def test_inserted_replayed_copy(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    lines.insert(index_of(lines, 20), lines[index_of(lines, 6)])
    store.store(lines)
    kind, seq, _ = only(check(store, audit_key))
    assert (kind, seq) == ("inserted", 6)


def test_altered_record(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    i = index_of(lines, 7)
    lines[i] = lines[i].replace('"status":200', '"status":201')
    store.store(lines)
    kind, seq, detail = only(check(store, audit_key))
    assert (kind, seq) == ("altered", 7)
    assert "MAC" in detail


def test_altered_record_without_key_breaks_the_link(store: Store) -> None:
    lines = store.lines()
    i = index_of(lines, 7)
    lines[i] = lines[i].replace('"status":200', '"status":201')
    store.store(lines)
    kind, seq, _ = only(check(store, None))
    assert (kind, seq) == ("altered", 7)


def test_altered_and_resigned_with_wrong_key(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    i = index_of(lines, 7)
    rec = json.loads(lines[i])
    rec["status"] = 201
    rec["mac"] = AuditKey("attacker-key-0123456789").mac(body_of(rec))
    lines[i] = json.dumps(rec, separators=(",", ":"), sort_keys=True)
    store.store(lines)
    kinds = {p.kind for p in check(store, audit_key).problems}
    assert kinds == {"altered"}


def test_reordered_records(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    i, j = index_of(lines, 7), index_of(lines, 8)
    lines[i], lines[j] = lines[j], lines[i]
    store.store(lines)
    kind, seq, _ = only(check(store, audit_key))
    assert kind == "reordered"
    assert seq in (7, 8)


def test_record_moved_far(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    moved = lines.pop(index_of(lines, 3))
    lines.insert(index_of(lines, 17), moved)
    store.store(lines)
    kind, seq, _ = only(check(store, audit_key))
    assert (kind, seq) == ("reordered", 3)


def test_truncated_after_a_checkpoint(store: Store, audit_key: AuditKey) -> None:
    lines = store.lines()
    store.store(lines[: index_of(lines, 20) + 1])  # seq 20 is a checkpoint
    kind, seq, detail = only(check(store, audit_key))
    assert (kind, seq) == ("truncated", 21)
    assert "9 record(s) cut off" in detail
    assert "checkpoint kept is seq 20" in detail


def test_wrong_key_is_named(store: Store) -> None:
    report = check(store, AuditKey("not-the-key-0123456789"))
    assert [p.kind for p in report.problems] == ["key"]


def test_truncated_mid_line_jsonl(tmp_path: Path, audit_key: AuditKey) -> None:
    s = Store("jsonl", tmp_path)
    trail = trail_for(s.url, audit_key, checkpoint_every=5)
    for i in range(4):
        trail.record({"kind": "request", "time": "2025-01-01T00:00:00.000Z", "n": i})
    trail.close()
    data = s.path.read_bytes()
    s.path.write_bytes(data[:-40])
    kinds = [p.kind for p in verify([s.url], audit_key).problems]
    assert kinds[0] == "truncated"


def test_sqlite_direct_sql_tampering(tmp_path: Path, audit_key: AuditKey) -> None:
    s = Store("sqlite", tmp_path)
    trail = trail_for(s.url, audit_key, checkpoint_every=5)
    for i in range(12):
        trail.record({"kind": "request", "time": "2025-01-01T00:00:00.000Z", "n": i})
    trail.close()
    c = sqlite3.connect(s.path)
    with c:
        c.execute("DELETE FROM piimw_audit WHERE seq = 4")
        c.execute("UPDATE piimw_audit SET line = replace(line, '\"n\":7', '\"n\":70') "
                  "WHERE seq = 9")
    c.close()
    kinds = {(p.kind, p.seq) for p in verify([s.url], audit_key).problems}
    assert kinds == {("deleted", 5), ("altered", 9)}


Tamper = Callable[[list[str]], list[str]]


def test_logging_sink_chains_per_process_and_anchors(tmp_path: Path, audit_key: AuditKey,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="app.audit")
    trail = trail_for("logging://app.audit", audit_key, checkpoint_every=4)
    for i in range(10):
        trail.record({"kind": "request", "time": "2025-01-01T00:00:00.000Z", "n": i})
    trail.close()
    lines = [f"2025-01-01 INFO app.audit {r.getMessage()}" for r in caplog.records
             if r.name == "app.audit"]
    assert len(lines) == 14  # 10 + checkpoints at 4, 8, 12 + final
    path = tmp_path / "shipped.log"
    path.write_text("\n".join(lines) + "\n")
    assert verify([str(path)], audit_key).ok
    anchors = [ln.split(" ", 3)[3].encode() for ln in lines if '"checkpoint"' in ln]
    path.write_text("\n".join(lines[:9]) + "\n")  # cut after the checkpoint at seq 8
    report = verify([str(path)], audit_key, anchors=anchors)
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", 10)]
