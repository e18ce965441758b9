"""Sink behaviour: rotation, crash recovery, failures, fail-closed health, fork safety."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from audit_helpers import FlakySink, exchange, flaky_trail, read, signup_body, trail_for

from piimw.audit import AuditSettings, AuditTrail
from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import JsonlSink, sidecar, sqlite_connect
from piimw.audit.verify import verify
from piimw.config import Config


def _payload(i: int) -> dict[str, Any]:
    return {"kind": "request", "time": "2025-01-01T00:00:00.000Z", "n": i}


def test_rotation_reopens_and_the_chain_continues(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key, checkpoint_every=4)
    for i in range(5):
        trail.record(_payload(i))
    assert trail.flush()
    path.rename(tmp_path / "audit.jsonl.1")  # what logrotate does
    for i in range(5, 9):
        trail.record(_payload(i))
    trail.close()
    old, new = read(tmp_path / "audit.jsonl.1"), read(path)
    assert new[0]["seq"] == old[-1]["seq"] + 1
    assert verify([str(tmp_path / "audit.jsonl.1"), str(path)], audit_key).ok
    alone = verify([str(path)], audit_key)
    assert alone.ok
    assert any("continues from seq" in n for n in alone.notes)


def test_copytruncate_rotation(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "audit.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key)
    trail.record(_payload(0))
    assert trail.flush()
    (tmp_path / "audit.jsonl.1").write_bytes(path.read_bytes())
    with open(path, "r+b") as f:
        f.truncate(0)
    trail.record(_payload(1))
    trail.close()
    assert read(path)[0]["seq"] == 2
    assert verify([str(tmp_path / "audit.jsonl.1"), str(path)], audit_key).ok


def test_recovers_the_head_from_the_trail(tmp_path: Path, audit_key: AuditKey) -> None:
    """A writer that died between writing lines and saving the head, or a lost sidecar."""
    path = tmp_path / "audit.jsonl"
    sealer = Sealer(audit_key, "t", 100)
    sink = JsonlSink(str(path), sealer)
    sink.append([_payload(0), _payload(1)])
    saved = sidecar(path).read_bytes()
    sink.append([_payload(2)])
    sidecar(path).write_bytes(saved)  # head now behind the trail
    sink.append([_payload(3)])
    sidecar(path).unlink()
    sink.append([_payload(4)])
    with open(path, "ab") as f:
        f.write(b'{"half a rec')  # a torn write
    sink.append([_payload(5)])
    sink.close()
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()
            if line.endswith("}")]
    assert seqs == [1, 2, 3, 4, 5, 6]
    (problem,) = verify([str(path)], audit_key).problems
    assert problem.kind == "inserted"  # the torn line is reported, the chain is intact
    assert "torn write" in problem.detail


def _wait(cond: Any, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_drop_mode_counts_lost_records(audit_key: AuditKey, config: Config) -> None:
    trail, sink = flaky_trail("drop", audit_key)
    sink.down = True
    for _ in range(3):
        trail.record_exchange(exchange(config, body=signup_body()))
    trail.flush()
    assert trail.dropped == 4  # three request records and the summary flush() wrote
    assert not trail.healthy()
    assert not trail.refuses(exchange(config, body=signup_body()))  # drop: never refuses
    sink.down = False
    assert _wait(trail.healthy)
    trail.record_exchange(exchange(config, body=signup_body()))
    trail.close()
    summaries = [p for p in sink.lines if p["kind"] == "summary"]
    assert sum(s["dropped"] for s in summaries) == 4  # the loss is itself on record
    assert trail.stats()["dropped"] == 4


def test_fail_closed_refuses_sensitive_requests_while_down(audit_key: AuditKey,
                                                           config: Config) -> None:
    trail, sink = flaky_trail("fail_closed", audit_key)
    signup = exchange(config, body=signup_body())  # route declares a card: sensitive tier
    profile = exchange(config, "PUT", "/profile", body={"nickname": "x"})
    assert not trail.refuses(signup)
    sink.down = True
    trail.record_exchange(signup)
    trail.flush()
    assert not trail.healthy()
    assert trail.refuses(signup)
    assert not trail.refuses(profile)  # nothing sensitive: availability first
    sink.down = False
    assert _wait(trail.healthy)  # recovered by probing, without any new record
    assert not trail.refuses(signup)
    trail.close()


def test_full_queue_drops_without_blocking(audit_key: AuditKey) -> None:
    gate = threading.Event()

    class SlowSink(FlakySink):
        def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]:
            gate.wait(5)
            return super().append(payloads)

    sink = SlowSink()
    trail = AuditTrail(sink, audit_key, environment="t", policy="p",
                       settings=AuditSettings(queue_size=2))
    t0 = time.perf_counter()
    results = [trail.record(_payload(i)) for i in range(1000)]
    assert time.perf_counter() - t0 < 1.0
    assert results.count(False) >= 990
    assert not trail.healthy()  # backlogged: fail_closed would refuse sensitive requests
    gate.set()
    trail.close()
    assert trail.dropped == results.count(False)
    assert len([p for p in sink.lines if p["kind"] == "request"]) == results.count(True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with a live thread, as gunicorn
def test_fork_after_start_gets_its_own_writer(tmp_path: Path, audit_key: AuditKey) -> None:
    path = tmp_path / "a.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key)
    trail.record(_payload(0))
    assert trail.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            trail.record(_payload(1))
            code = 0 if trail.flush() else 2
            trail.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    trail.record(_payload(2))
    trail.close()
    assert sorted(r["n"] for r in read(path) if r["kind"] == "request") == [0, 1, 2]
    assert verify([str(path)], audit_key).ok


def test_sqlite_sink_end_to_end(tmp_path: Path, audit_key: AuditKey, config: Config) -> None:
    trail = trail_for(f"sqlite://{tmp_path}/a.db", audit_key, checkpoint_every=3)
    for _ in range(5):
        trail.record_exchange(exchange(config, body=signup_body()))
    trail.close()
    report = verify([f"sqlite://{tmp_path}/a.db"], audit_key)
    assert report.ok
    assert report.records == 5 + 1 + 2 + 1  # requests, summary, checkpoints, final


def test_checkpoints_shipped_to_a_logger_are_anchors(tmp_path: Path, audit_key: AuditKey,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ship.checkpoints")
    path = tmp_path / "a.jsonl"
    trail = trail_for(f"jsonl://{path}", audit_key, checkpoint_every=4,
                      checkpoint_logger="ship.checkpoints")
    for i in range(10):
        trail.record(_payload(i))
    trail.close()
    anchors = [r.getMessage().encode() for r in caplog.records if r.name == "ship.checkpoints"]
    assert len(anchors) == 4  # seq 4, 8, 12 and the final one
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:9]) + "\n")  # cut after the checkpoint at seq 8
    sidecar(path).unlink()  # and the attacker removed the stored head too
    report = verify([str(path)], audit_key, anchors=anchors)
    assert [(p.kind, p.seq) for p in report.problems] == [("truncated", 10)]


def test_sqlite_connect_waits_for_a_lock_before_switching_to_wal(tmp_path: Path) -> None:
    """Opening a trail while another connection writes waits, as the busy timeout promises.

    SQLite refuses a journal-mode change that meets a lock at once ("database is locked"),
    without its busy handler; worker processes opening a new trail together dropped records.
    """
    path = tmp_path / "audit.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        conn = sqlite_connect(str(path))
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        conn.close()
    finally:
        release.join()
        other.close()
