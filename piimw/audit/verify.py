"""Check an audit trail: say which records were deleted, inserted, altered, reordered or cut off.

The evidence: each record's MAC (alteration, forgery), its ``seq`` (gaps, order), its ``prev``
(the hash of the record before it), checkpoints (a signed restatement of the chain head), and
the signed head a sink keeps beside the trail or checkpoints copied elsewhere ("anchors"),
which show how far the chain had got (truncation). Several files are verified as one stream,
oldest first (``audit.jsonl.2 audit.jsonl.1 audit.jsonl``).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from piimw.audit.records import GENESIS, AuditKey, Head, body_of, line_hash
from piimw.audit.sinks import Line, StoredHead, read_lines, split_url, stored_head

KINDS = ("deleted", "inserted", "altered", "reordered", "truncated", "key")


@dataclass(frozen=True)
class Problem:
    kind: str
    where: str
    seq: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "where": self.where, "seq": self.seq, "detail": self.detail}


@dataclass
class ChainInfo:
    chain: str
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    last_checkpoint: int | None = None
    sealed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    sources: list[str]
    problems: list[Problem] = field(default_factory=list)
    chains: list[ChainInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    keyed: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "sources": self.sources, "records": self.records,
                "keyed": self.keyed, "problems": [p.as_dict() for p in self.problems],
                "chains": [c.as_dict() for c in self.chains], "notes": self.notes}


@dataclass
class _Rec:
    where: str
    pos: int
    raw: bytes
    complete: bool
    data: dict[str, Any] | None = None
    hash: str = ""
    mac_ok: bool | None = None
    altered: bool = False

    @property
    def seq(self) -> int | None:
        v = self.data.get("seq") if self.data else None
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def prev(self) -> str | None:
        v = self.data.get("prev") if self.data else None
        return v if isinstance(v, str) else None

    @property
    def chain(self) -> str | None:
        v = self.data.get("chain") if self.data else None
        return v if isinstance(v, str) else None

    @property
    def kind(self) -> str | None:
        v = self.data.get("kind") if self.data else None
        return v if isinstance(v, str) else None

    @property
    def genuine(self) -> bool:
        return self.data is not None and self.mac_ok is not False and self.seq is not None


def _parse(line: Line, where: str, pos: int, key: AuditKey | None) -> _Rec:
    raw = line.raw
    start = raw.find(b"{")  # tolerate a log prefix (logging:// trails saved from a log)
    body = raw[start:] if start > 0 else raw
    rec = _Rec(where, pos, body, line.complete)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return rec
    if not isinstance(data, dict):
        return rec
    rec.data = data
    rec.hash = line_hash(body)
    if key is not None:
        mac = data.get("mac")
        rec.mac_ok = isinstance(mac, str) and key.check(body_of(data), mac)
    return rec


def _lis(values: Sequence[int]) -> set[int]:
    """Indices of one longest strictly increasing subsequence (records that kept their order)."""
    tails: list[int] = []
    tails_idx: list[int] = []
    parent = [-1] * len(values)
    for i, v in enumerate(values):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        parent[i] = tails_idx[j - 1] if j > 0 else -1
    out: set[int] = set()
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        out.add(i)
        i = parent[i]
    return out


class _Checker:
    def __init__(self, report: Report, key: AuditKey | None) -> None:
        self.report = report
        self.key = key

    def add(self, kind: str, rec: _Rec | None, detail: str, *, where: str = "",
            seq: int | None = None) -> None:
        self.report.problems.append(Problem(
            kind, where or (rec.where if rec else "?"),
            seq if seq is not None else (rec.seq if rec else None), detail))

    # -- one chain -------------------------------------------------------------------------
    def chain(self, chain: str, recs: list[_Rec], heads: Sequence[Head],
              anchors: Sequence[_Rec]) -> ChainInfo:
        info = ChainInfo(chain)
        recs = self._unauthentic(recs)
        recs = self._duplicates(recs)
        recs = self._order(recs)
        self._gaps_and_links(recs)
        self._checkpoints(recs, info)
        good = [r for r in recs if r.seq is not None]
        if good:
            info.records = len(good)
            info.first_seq, info.last_seq = good[0].seq or 0, good[-1].seq or 0
            last = good[-1]
            info.sealed = bool(last.data and last.data.get("final")) and not last.altered
            self._tail(last, info, [h for h in heads if h.chain == chain], anchors)
        return info

    def _unauthentic(self, recs: list[_Rec]) -> list[_Rec]:
        """Lines that are not valid records: forged insertions, alterations, a cut-off end."""
        genuine_seqs = {r.seq for r in recs if r.genuine and r.mac_ok is not None}
        if self.key is None:
            genuine_seqs = set()
        out: list[_Rec] = []
        for i, r in enumerate(recs):
            if r.data is not None and r.mac_ok is not False and r.seq is not None:
                out.append(r)
                continue
            before = next((x for x in reversed(out) if x.genuine), None)
            after = next((x for x in recs[i + 1:] if x.genuine), None)
            links_over = (before is not None and after is not None and after.prev == before.hash
                          and after.seq == (before.seq or 0) + 1)
            if r.data is None and not r.complete and not links_over:
                # Only a file's last line lacks its end: the trail, or a rotated file of it
                # (a .gz cut short), ends mid-record.
                self.add("truncated", r, "the last line is cut off in the middle of a record")
                continue
            if r.seq is not None and r.seq in genuine_seqs:
                self.add("inserted", r, f"a forged record claims seq {r.seq}, which a genuine "
                         "record holds")
                continue
            if links_over:
                between = f"between seq {before.seq if before else '?'} and " \
                    f"{after.seq if after else '?'}"
                what = "a line that is not a record (a torn write?)" if r.data is None \
                    else "a record that is not part of the chain"
                self.add("inserted", r, f"{what} was inserted {between}")
                continue
            r.altered = True
            if r.data is None:
                self.add("altered", r, "the line is not a valid record")
                if before is not None and after is not None and \
                        after.seq == (before.seq or 0) + 2:
                    r.data = {"seq": (before.seq or 0) + 1}  # stands in for the damaged record
            else:
                self.add("altered", r, "the record's content does not match its MAC")
            if r.seq is not None:
                out.append(r)
        return out

    def _duplicates(self, recs: list[_Rec]) -> list[_Rec]:
        seen: dict[int, _Rec] = {}
        out: list[_Rec] = []
        for r in recs:
            seq = r.seq
            assert seq is not None
            first = seen.get(seq)
            if first is None:
                seen[seq] = r
                out.append(r)
            elif first.hash == r.hash:
                self.add("inserted", r, f"a copy of the record with seq {seq} "
                         f"({first.where}) was inserted")
            elif not r.altered and not first.altered:
                self.add("altered", r, f"two different records claim seq {seq}")
        return out

    def _order(self, recs: list[_Rec]) -> list[_Rec]:
        seqs = [r.seq or 0 for r in recs]
        keep = _lis(seqs)
        for i, r in enumerate(recs):
            if i not in keep:
                after = next((recs[j].seq for j in range(i - 1, -1, -1) if j in keep), None)
                self.add("reordered", r, f"seq {r.seq} is out of place"
                         + (f" (it comes after seq {after})" if after is not None else ""))
        return sorted(recs, key=lambda r: r.seq or 0)

    def _gaps_and_links(self, recs: list[_Rec]) -> None:
        if not recs:
            return
        first = recs[0]
        if first.seq == 1 and first.prev != GENESIS and not first.altered:
            self.add("altered", first, "the first record of the chain does not start from the "
                     "genesis hash")
        elif (first.seq or 0) > 1:
            self.report.notes.append(
                f"{first.where}: the chain continues from seq {(first.seq or 0) - 1} (an earlier "
                "file not given here); give rotated files oldest first to check them too")
        for a, b in itertools.pairwise(recs):
            sa, sb = a.seq or 0, b.seq or 0
            if sb > sa + 1:
                missing = f"seq {sa + 1}" if sb == sa + 2 else f"seq {sa + 1}-{sb - 1}"
                self.add("deleted", b, f"{sb - sa - 1} record(s) missing before this one "
                         f"({missing})", seq=sb)
            elif b.prev != a.hash and not a.altered and not b.altered:
                a.altered = True
                self.add("altered", a, f"the record after it (seq {sb}) does not link to it: "
                         "its content was changed")

    def _checkpoints(self, recs: list[_Rec], info: ChainInfo) -> None:
        for r in recs:
            if r.kind != "checkpoint" or r.data is None or r.altered:
                continue
            info.checkpoints += 1
            info.last_checkpoint = r.seq
            if r.data.get("records") != (r.seq or 0) - 1 or r.data.get("head") != r.prev:
                self.add("altered", r, "the checkpoint does not restate the chain head")

    def _tail(self, last: _Rec, info: ChainInfo, heads: Sequence[Head],
              anchors: Sequence[_Rec]) -> None:
        lseq = last.seq or 0
        reach: list[tuple[int, str, str]] = [(h.seq, h.hash, "the stored chain head")
                                             for h in heads]
        reach += [(a.seq or 0, a.hash, f"the checkpoint anchor {a.where}") for a in anchors
                  if a.chain == info.chain]
        cp = f" (the last checkpoint kept is seq {info.last_checkpoint})" \
            if info.last_checkpoint else ""
        for seq, h, what in sorted(reach, reverse=True):
            if seq > lseq:
                self.add("truncated", last, f"{what} is at seq {seq} but the trail ends at seq "
                         f"{lseq}: {seq - lseq} record(s) cut off at the end{cp}",
                         where=f"after {last.where}", seq=lseq + 1)
                return
            if seq == lseq and h != last.hash and not last.altered:
                self.add("altered", last, f"{what} does not match the last record")
                return


def verify(sources: Sequence[str], key: AuditKey | None, *, use_head: bool = True,
           anchors: Iterable[bytes] = ()) -> Report:
    """Verify one trail given as one or more files (oldest first) or a SQLite URL."""
    report = Report(list(sources), keyed=key is not None)
    recs: list[_Rec] = []
    for source in sources:
        scheme, path = split_url(source)
        unit = "row" if scheme == "sqlite" else "line"
        label = f"{path}:" if len(sources) > 1 else ""
        for line in read_lines(source):
            recs.append(_parse(line, f"{label}{unit} {line.where}", len(recs), key))
    report.records = sum(1 for r in recs if r.data is not None)
    checker = _Checker(report, key)
    if key is not None and recs and not any(r.mac_ok for r in recs):
        kids = sorted({str(r.data.get("kid")) for r in recs if r.data})
        checker.add("key", None, f"no record verifies with this key (records name key id "
                    f"{', '.join(kids)}; this key is {key.key_id}): wrong key?", where="trail")
        for r in recs:
            r.mac_ok = None
        key = None
        checker.key = None
    heads: list[Head] = []
    stored = StoredHead(False)
    sqlite = bool(sources) and split_url(sources[-1])[0] == "sqlite"
    if use_head and sources:
        stored = stored_head(sources[-1], key)
        if stored.head is not None:
            heads.append(stored.head)
        elif stored.found:
            checker.add("altered", None, "the signed chain head does not verify: it was "
                        "changed or replaced", where=stored.where)
        elif sqlite and recs:
            checker.add("altered", None, "the signed chain head row is missing (the sink "
                        "writes it with every batch)", where="the head row")
        elif key is not None:
            report.notes.append("no signed chain head found beside the trail: truncation "
                                "after the last record can only be detected with anchors")
    anchor_recs = [a for a in (_parse(Line(i, raw), f"anchor {i}", i, key)
                               for i, raw in enumerate(anchors, 1)) if a.genuine]
    by_chain: dict[str, list[_Rec]] = {}
    real = {r.chain for r in recs if r.genuine and r.chain}
    current: str | None = None
    orphans: list[_Rec] = []
    for r in recs:
        ch = r.chain if r.chain in real else current
        if ch is None:
            orphans.append(r)
            continue
        if orphans:
            by_chain.setdefault(ch, []).extend(orphans)
            orphans = []
        by_chain.setdefault(ch, []).append(r)
        current = ch
    if orphans:
        for r in orphans:
            checker.add("altered", r, "the line is not a valid record")
    for chain, chain_recs in by_chain.items():
        report.chains.append(checker.chain(chain, chain_recs, heads, anchor_recs))
    # A JSONL file with its sidecar, or a database, keeps one chain: the head's (or, without
    # an authentic head, the last record's). Only a trail saved from logging:// has several.
    last = next((r.chain for r in reversed(recs) if r.genuine and r.chain in by_chain), None)
    expected = heads[0].chain if heads else last if sqlite or stored.found else None
    for h in heads:
        if h.seq > 0 and h.chain not in by_chain:
            what = "the trail holds no record" if not recs else "no record of its chain is here"
            checker.add("truncated", None, f"the stored chain head is at seq {h.seq} but {what}: "
                        "its records were removed or replaced (after a rotation, give the "
                        "rotated files too, oldest first)", where="trail", seq=1)
    for chain, chain_recs in by_chain.items():
        if expected is not None and chain != expected:
            seqs = [r.seq for r in chain_recs if r.seq is not None]
            span = f"seq {min(seqs)}-{max(seqs)}" if seqs else "no seq"
            checker.add("inserted", chain_recs[0], f"{len(chain_recs)} record(s) of another "
                        f"chain ({chain}, {span}) are in a trail that keeps one chain "
                        f"({expected})")
    if expected is None and len(by_chain) > 1:
        report.notes.append(f"{len(by_chain)} chains (one per writing process)")
    for info in report.chains:
        if not info.sealed:
            report.notes.append(f"chain {info.chain} has no final checkpoint: its writer is "
                                "still running, died, or its end was cut off")
    report.problems.sort(key=lambda p: (p.seq if p.seq is not None else -1, p.kind))
    return report


def render_text(report: Report) -> str:
    name = ", ".join(report.sources)
    lines = []
    if report.ok:
        chains = "; ".join(f"chain {c.chain}: seq {c.first_seq}-{c.last_seq}, "
                           f"{c.checkpoints} checkpoint(s)" for c in report.chains)
        lines.append(f"OK {name}: {report.records} record(s){'; ' + chains if chains else ''}")
    else:
        lines.append(f"FAILED {name}: {len(report.problems)} problem(s)")
        for p in report.problems:
            seq = f" (seq {p.seq})" if p.seq is not None else ""
            lines.append(f"  {p.kind:<10} {p.where}{seq}: {p.detail}")
    if not report.keyed:
        lines.append("  note: verified without a key: links and order only, not authenticity")
    lines.extend(f"  note: {n}" for n in report.notes)
    return "\n".join(lines)
