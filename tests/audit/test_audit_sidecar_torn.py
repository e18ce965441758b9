"""A JSONL head sidecar torn by a writer killed between rewriting it and cutting it to size.

The sidecar is rewritten in place (pwrite, then ftruncate). After a rotation the new head is
shorter than the old one (the trail's size has fewer digits), so a kill in between leaves the
new head followed by the tail of the old one. That is a crash, not tampering: the first line is
the whole, signed head. A forged head is still reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import JsonlSink, sidecar
from piimw.audit.verify import verify


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs in the writer."""


def _payload(i: int) -> dict[str, Any]:
    return {"kind": "request", "time": "2025-01-01T00:00:00.000Z", "n": i, "pad": "x" * 40}


def _torn(tmp_path: Path, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(str(path), Sealer(audit_key, "t", 1000))
    sink.append([_payload(i) for i in range(200)])  # the head names a 5-digit size
    sink.close()
    old_head = sidecar(path).read_bytes()
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate

    def kill(fd: int, size: int) -> None:
        raise Killed

    sink = JsonlSink(str(path), Sealer(audit_key, "t", 1000))
    with monkeypatch.context() as m:
        m.setattr(os, "ftruncate", kill)
        with pytest.raises(Killed):
            sink.append([_payload(200)])
    torn = sidecar(path).read_bytes()
    first, _, rest = torn.partition(b"\n")
    assert len(first) + 1 < len(old_head)  # the new head, then the old one's tail
    assert rest
    return path


def test_a_sidecar_torn_by_a_crash_is_not_tampering(
        tmp_path: Path, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _torn(tmp_path, audit_key, monkeypatch)
    sources = [str(tmp_path / "audit.jsonl.1"), str(path)]
    report = verify(sources, audit_key)
    assert report.ok, report.problems
    # The head it holds still counts: cutting the last record off is truncation.
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))
    assert [p.kind for p in verify(sources, audit_key).problems] == ["truncated"]


def test_the_next_writer_carries_on_after_a_torn_sidecar(
        tmp_path: Path, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _torn(tmp_path, audit_key, monkeypatch)
    sink = JsonlSink(str(path), Sealer(audit_key, "t", 1000))
    sink.append([_payload(201)])
    sink.finish()
    sink.close()
    assert sidecar(path).read_bytes().count(b"\n") == 1  # cut to size again
    seqs = [json.loads(line)["seq"] for line in path.read_text().splitlines()]
    assert seqs == [201, 202, 203]
    assert verify([str(tmp_path / "audit.jsonl.1"), str(path)], audit_key).ok


def test_a_forged_first_line_is_still_altered(
        tmp_path: Path, audit_key: AuditKey, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _torn(tmp_path, audit_key, monkeypatch)
    first, _, rest = sidecar(path).read_bytes().partition(b"\n")
    head = json.loads(first)
    head.update(seq=head["seq"] + 5)  # claims more than was written: its MAC fails
    sidecar(path).write_bytes(json.dumps(head).encode() + b"\n" + rest)
    report = verify([str(tmp_path / "audit.jsonl.1"), str(path)], audit_key)
    assert [(p.kind, p.where) for p in report.problems] == [("altered", sidecar(path).name)]
