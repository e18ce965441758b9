"""Several worker processes write one trail at once: no record lost, interleaved or unchained."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
from pathlib import Path

from audit_helpers import KEY

from piimw.audit import AuditTrail
from piimw.audit.records import AuditKey
from piimw.audit.verify import verify

WORKERS = 4
PER_WORKER = 150


def _worker(url: str, worker: int) -> None:
    os.environ["PIIMW_AUDIT_KEY"] = KEY
    trail = AuditTrail.from_config(
        {"audit": {"url": url, "checkpoint_every": 7, "queue_size": 64}}, "test", "h")
    assert trail is not None
    for i in range(PER_WORKER):
        while not trail.record({"kind": "request", "time": "2025-01-01T00:00:00.000Z",
                                "worker": worker, "n": i, "pad": "x" * (i % 50)}):
            trail.flush()
        if i % 10 == 0:
            trail.flush()  # many small batches: maximal interleaving
    trail.close()


def _run(url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(url, w)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
        p.close()


def _check(url: str, lines: list[str]) -> None:
    report = verify([url], AuditKey(KEY))
    assert report.ok, report.problems
    assert len(report.chains) == 1
    recs = [json.loads(line) for line in lines]
    assert [r["seq"] for r in recs] == list(range(1, len(recs) + 1))
    got = sorted((r["worker"], r["n"]) for r in recs if r["kind"] == "request")
    assert got == sorted((w, i) for w in range(WORKERS) for i in range(PER_WORKER))
    cps = [r for r in recs if r["kind"] == "checkpoint"]
    assert {r["seq"] for r in cps} >= {s for s in range(1, len(recs) + 1) if s % 7 == 0}
    assert sum(1 for r in cps if r.get("final")) == WORKERS


def test_jsonl_many_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _run(f"jsonl://{path}")
    raw = path.read_text()
    assert raw.endswith("\n")
    _check(f"jsonl://{path}", raw.splitlines())


def test_sqlite_many_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    _run(f"sqlite://{path}")
    c = sqlite3.connect(path)
    lines = [r[0] for r in c.execute("SELECT line FROM piimw_audit ORDER BY id")]
    c.close()
    _check(f"sqlite://{path}", lines)
