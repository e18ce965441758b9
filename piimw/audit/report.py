"""Counts over a time range of the trail: by route, category, action, reason and signal.

Request records count one each (their decisions by ``count``); summary records add routine
traffic. Reporting does not verify: run ``piimw audit verify`` for that.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from piimw.audit.records import safe_method, utc_now
from piimw.audit.sinks import read_lines

_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?Z?")


def parse_time(text: str, now: float | None = None) -> str:
    """``2025-03-01``, ``2025-03-01T12:00``, or ``24h``/``7d`` ago -> the trail's time format."""
    t = text.strip()
    m = _RELATIVE.fullmatch(t)
    if m:
        base = time.time() if now is None else now
        return utc_now(base - int(m.group(1)) * _UNITS[m.group(2)])
    if not _DATE.fullmatch(t):
        raise ValueError(f"not a time: use YYYY-MM-DD[THH:MM[:SS]] (UTC) or 24h, 7d: {t!r}")
    t = t.rstrip("Z").replace(" ", "T")
    date, _, clock = t.partition("T")
    hh, mm, ss = ([*clock.split(":"), "00", "00"][:3]) if clock else ("00", "00", "00")
    sec, _, frac = ss.partition(".")
    return f"{date}T{hh}:{mm}:{sec}.{(frac + '000')[:3]}Z"


def records(sources: Sequence[str], since: str | None = None,
            until: str | None = None) -> Iterator[dict[str, Any]]:
    """Parsed records of ``sources`` whose time lies in ``[since, until)``."""
    for source in sources:
        for line in read_lines(source):
            start = line.raw.find(b"{")
            try:
                rec = orjson.loads(line.raw[max(start, 0):])
            except orjson.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            t = str(rec.get("time", ""))
            if (since and t < since) or (until and t >= until):
                continue
            yield rec


@dataclass
class Summary:
    since: str | None = None
    until: str | None = None
    first: str | None = None
    last: str | None = None
    requests: int = 0
    reported: int = 0
    dropped: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    reported_routes: Counter[str] = field(default_factory=Counter)
    categories: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    signals: Counter[str] = field(default_factory=Counter)
    undeclared: Counter[str] = field(default_factory=Counter)
    policies: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = dict(v.most_common()) if isinstance(v, Counter) else v
        return out


def summarize(recs: Iterable[dict[str, Any]], since: str | None = None,
              until: str | None = None) -> Summary:
    s = Summary(since, until)
    for rec in recs:
        kind = rec.get("kind")
        t = str(rec.get("time", ""))
        s.first = t if s.first is None or t < s.first else s.first
        s.last = t if s.last is None or t > s.last else s.last
        if kind == "request":
            _request(s, rec)
        elif kind == "summary":
            _summary(s, rec)
    return s


def route_label(rec: dict[str, Any]) -> str:
    """``METHOD /template`` of a record (a non-standard method as ``(other)``)."""
    return f"{_method(rec)} {rec.get('route') or '(unmatched)'}"


def _method(rec: dict[str, Any]) -> str:
    """A trail written before methods were checked may hold any token a client sent."""
    m = rec.get("method")
    return safe_method(m) if isinstance(m, str) else "?"


def count(value: Any, default: int) -> int:
    """A count as written by piimw (a non-negative int); anything else counts as nothing.

    The trail is read unverified: a malformed field must neither crash the report nor end up
    quoted in an error message.
    """
    if value is None:
        return default
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field (``decisions``, ``routes``); other shapes are ignored."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _request(s: Summary, rec: dict[str, Any]) -> None:
    route = route_label(rec)
    s.requests += 1
    s.reported += 1
    s.routes[route] += 1
    s.reported_routes[route] += 1
    if rec.get("policy"):
        s.policies[str(rec["policy"])] += 1
    for r in strings(rec.get("reasons")):
        s.reasons[r] += 1
    for sig in strings(rec.get("signals")):
        s.signals[sig] += 1
    for d in objects(rec.get("decisions")):
        n = count(d.get("count"), 1)
        s.categories[str(d.get("category"))] += n
        s.actions[str(d.get("action"))] += n
        if d.get("declared") is False:
            s.undeclared[f"{route} {d.get('pattern')} {d.get('category')}"] += n


def _summary(s: Summary, rec: dict[str, Any]) -> None:
    s.requests += count(rec.get("requests"), 0)
    s.dropped += count(rec.get("dropped"), 0)
    for r in objects(rec.get("routes")):
        s.routes[f"{_method(r)} {r.get('route')}"] += count(r.get("requests"), 0)
    for d in objects(rec.get("decisions")):
        n = count(d.get("count"), 0)
        s.categories[str(d.get("category"))] += n
        s.actions[str(d.get("action"))] += n


def render_text(s: Summary) -> str:
    span = f"{s.since or s.first or '-'} .. {s.until or s.last or '-'}"
    out = [f"piimw audit report {span}",
           f"requests: {s.requests} ({s.reported} with their own record)"
           + (f"; {s.dropped} record(s) DROPPED" if s.dropped else "")]
    if len(s.policies) > 1:
        out.append(f"policies in force: {len(s.policies)} (configuration changed in range)")
    for title, counter in (("route", s.routes), ("category", s.categories),
                           ("action", s.actions), ("reason", s.reasons),
                           ("signal", s.signals), ("undeclared PII seen", s.undeclared)):
        if not counter:
            continue
        out.append("")
        out.append(f"by {title}:")
        width = max(len(k) for k in counter)
        for k, v in counter.most_common():
            out.append(f"  {k:<{width}}  {v:>8}")
    return "\n".join(out)
