"""The audit record format: canonical JSON lines, chained by hash and keyed with HMAC.

Every record carries ``seq`` (position in its chain), ``chain`` (chain id), ``prev`` (SHA-256 of
the previous record's line) and ``mac`` (HMAC-SHA-256 of the record without ``mac``). The chain
makes deletion, insertion and reordering visible; the MAC makes alteration and forged insertion
visible to anyone holding the key. Every ``checkpoint_every`` records a checkpoint restates the
chain head; checkpoints are small enough to copy elsewhere as anchors against truncation.

Nothing here ever sees a PII value: payloads are built from findings (which carry none) and
route templates, never from bodies, paths or headers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

import orjson

from piimw.errors import ConfigError
from piimw.findings import Finding
from piimw.keyed_sha256 import KeyedSha256
from piimw.policy import REASONS

if TYPE_CHECKING:
    from piimw.config import Config

FORMAT_VERSION: Final = 1
GENESIS: Final = "0" * 64
DEFAULT_KEY_ENV: Final = "PIIMW_AUDIT_KEY"
MIN_KEY_BYTES: Final = 16
KINDS: Final = ("request", "summary", "checkpoint", "discovery")


def canonical(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same record always gives the same bytes."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def line_hash(line: bytes) -> str:
    """The hash the next record's ``prev`` points at (the line without its newline)."""
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def utc_now(clock: float | None = None) -> str:
    total_ms = int((time.time() if clock is None else clock) * 1000)
    seconds, ms = divmod(total_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


class AuditKey:
    """The secret that signs records. Sub-keys are derived so the MAC key never pseudonymises."""

    __slots__ = ("_mac", "_subject", "key_id")

    def __init__(self, key: bytes | str, key_id: str = "a1") -> None:
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < MIN_KEY_BYTES:
            raise ConfigError(f"audit key is too short ({len(raw)} bytes); use at least "
                              f"{MIN_KEY_BYTES}", source="environment")
        self.key_id = key_id
        root = KeyedSha256(raw)
        self._mac = KeyedSha256(root.digest(b"piimw/v1/audit/mac"))
        self._subject = KeyedSha256(root.digest(b"piimw/v1/audit/subject"))

    @classmethod
    def from_env(cls, var: str = DEFAULT_KEY_ENV, key_id: str | None = None,
                 environ: Mapping[str, str] | None = None) -> AuditKey:
        env = os.environ if environ is None else environ
        value = env.get(var)
        if not value:
            raise ConfigError(f"audit is enabled but the environment variable {var} holding "
                              "its secret key is not set", source="environment",
                              pointer="/audit/key_env")
        return cls(value, key_id or env.get(var + "_ID") or "a1")

    def mac(self, body: bytes) -> str:
        return self._mac.hexdigest(body)

    def check(self, body: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(body), mac)

    def subject(self, value: str) -> str:
        """A stable pseudonym of the subject, unlinkable to pseudonyms in other sinks."""
        digest = self._subject.hexdigest(value.encode())[:32]
        return f"hmac:{self.key_id}.audit:{digest}"


@dataclass(frozen=True)
class Head:
    """Where a chain stands: the last sequence number used and the hash of that record."""

    chain: str
    seq: int = 0
    hash: str = GENESIS

    @classmethod
    def new(cls) -> Head:
        return cls(secrets.token_hex(8))

    @classmethod
    def after(cls, record: Mapping[str, Any], line: bytes) -> Head:
        return cls(str(record["chain"]), int(record["seq"]), line_hash(line))


def sign(record: dict[str, Any], key: AuditKey) -> bytes:
    """Add ``kid`` and ``mac`` to ``record``; return its canonical line (with newline)."""
    record.pop("mac", None)
    record["kid"] = key.key_id
    record["mac"] = key.mac(canonical(record))
    return canonical(record) + b"\n"


def body_of(record: Mapping[str, Any]) -> bytes:
    """The bytes the MAC covers: the canonical record without ``mac``."""
    return canonical({k: v for k, v in record.items() if k != "mac"})


class Sealer:
    """Turns payloads into chained, signed lines, inserting checkpoints at fixed positions.

    A checkpoint takes every sequence number that is a multiple of ``checkpoint_every``, so a
    verifier knows where they belong; sealing is done under the sink's lock (the chain head is
    shared between processes).
    """

    def __init__(self, key: AuditKey, environment: str, checkpoint_every: int = 1000) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be at least 1")
        self.key = key
        self.environment = environment
        self.checkpoint_every = checkpoint_every

    def seal(self, payloads: Iterable[Mapping[str, Any]], head: Head,
             clock: float | None = None) -> tuple[list[bytes], Head]:
        lines: list[bytes] = []
        for payload in payloads:
            if (head.seq + 1) % self.checkpoint_every == 0:
                line, head = self._one(self.checkpoint(head, clock), head)
                lines.append(line)
            line, head = self._one(payload, head)
            lines.append(line)
        return lines, head

    def close(self, head: Head, clock: float | None = None) -> tuple[list[bytes], Head]:
        """A final checkpoint: a chain that ends without one was cut off or its writer died."""
        line, head = self._one(self.checkpoint(head, clock, final=True), head)
        return [line], head

    def checkpoint(self, head: Head, clock: float | None = None,
                   final: bool = False) -> dict[str, Any]:
        cp: dict[str, Any] = {"kind": "checkpoint", "time": utc_now(clock),
                              "env": self.environment, "records": head.seq, "head": head.hash,
                              "every": self.checkpoint_every}
        if final:
            cp["final"] = True
        return cp

    def _one(self, payload: Mapping[str, Any], head: Head) -> tuple[bytes, Head]:
        record = dict(payload)
        record.update(v=FORMAT_VERSION, chain=head.chain, seq=head.seq + 1, prev=head.hash)
        line = sign(record, self.key)
        return line, Head(head.chain, head.seq + 1, line_hash(line))


def sign_head(head: Head, key: AuditKey, **extra: Any) -> bytes:
    """The signed state a sink keeps beside the trail (sidecar file or head row)."""
    record: dict[str, Any] = {"chain": head.chain, "seq": head.seq, "hash": head.hash, **extra}
    return sign(record, key)


def read_head(raw: bytes, key: AuditKey | None) -> tuple[Head, dict[str, Any]] | None:
    """Parse a signed head; None if absent, unreadable, or (given a key) not authentic."""
    try:
        data = orjson.loads(raw)
        head = Head(str(data["chain"]), int(data["seq"]), str(data["hash"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if key is not None and not key.check(body_of(data), str(data.get("mac", ""))):
        return None
    return head, data


# -- the policy hash ------------------------------------------------------------------------
def policy_hash(config: Config) -> str:
    """A stable hash of what decides actions: the rules and every route's compiled plans.

    Two processes with the same configuration write the same hash, so an auditor can tell
    which records were decided under which policy.
    """
    routes = []
    for route in config.routes:
        bodies: dict[str, Any] = {}
        if route.request is not None:
            bodies["request"] = _entries(route.request.plan.entries)
        for status, body in sorted(route.responses.items()):
            bodies[f"response {status}"] = _entries(body.plan.entries)
        if route.query is not None:
            bodies["query"] = _entries(route.query.entries)
        routes.append({"route": f"{route.method} {route.template}", "plans": bodies})
    routes.sort(key=lambda r: str(r["route"]))
    doc = {"environment": config.environment, "rules": list(config.raw.get("rules", [])),
           "routes": routes, "detect_undeclared": config.detect_undeclared}
    return hashlib.sha256(canonical(doc)).hexdigest()[:32]


def _entries(entries: Sequence[Any]) -> list[list[Any]]:
    out = [[e.pattern, list(e.tag.categories), list(e.tag.uses), e.tag.action,
            e.tag.reviewed] for e in entries]
    out.sort(key=lambda e: (str(e[0]), str(e[1])))
    return out


# -- payloads -------------------------------------------------------------------------------
#: Which way data was going when a finding was made, by sink.
DIRECTIONS: Final[dict[str, str]] = {
    "app": "request", "client": "response", "error": "response", "log": "internal",
    "event": "internal", "audit": "internal",
}
_SAFE_SEGMENT: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
#: Methods written as they are; any other token a client sends (it could be a card number).
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
                            "CONNECT"})
OTHER_METHOD: Final = "(other)"


def safe_method(method: str) -> str:
    """The request method if it is a standard one, else ``(other)``: clients choose the token."""
    return method if method in METHODS else OTHER_METHOD


class _Route(Protocol):
    """The parts of :class:`piimw.routes.Route` the builder reads."""

    request: Any
    responses: Any
    query: Any

    def response_for(self, status: int) -> Any: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the request thread hands the writer: references only, nothing is serialised yet.

    ``subject`` and ``suspicious`` may hold or see PII in memory; neither is ever written: the
    subject is pseudonymised and ``suspicious`` only decides whether a key is replaced by ``*``.
    """

    time: float
    request_id: str
    route: _Route | None
    route_template: str | None
    method: str
    status: int | None
    findings: tuple[Finding, ...]
    signals: tuple[str, ...]
    reasons: tuple[str, ...]
    subject: str | None = None
    suspicious: Callable[[str], bool] | None = None


def reportable(findings: Sequence[Finding], signals: Sequence[str],
               reasons: Sequence[str]) -> bool:
    """A request needs its own record if anything happened beyond routine declared traffic."""
    if signals or reasons:
        return True
    for f in findings:
        if f.action != "allow" or f.detector != "schema" or f.reason.startswith("optout."):
            return True
    return False


class Builder:
    """Builds request and summary payloads. One per trail; used by the writer thread only."""

    def __init__(self, key: AuditKey, environment: str, policy: str, *,
                 subject: bool = True) -> None:
        self.key = key
        self.environment = environment
        self.policy = policy
        self.with_subject = subject
        self._patterns: dict[tuple[int, str, int | None, str], tuple[str, tuple[str, ...]]] = {}
        self._suspicious: Callable[[str], bool] | None = None

    def request(self, snap: Snapshot) -> dict[str, Any]:
        groups: dict[tuple[str, str, str, str, str, str, bool, tuple[str, ...]], int] = {}
        dirs: set[str] = set()
        reasons = {r for r in snap.reasons if r in REASONS}
        for f in snap.findings:
            declared = f.detector == "schema"
            pattern, uses = self._pattern(snap, f)
            direction = DIRECTIONS.get(f.sink, "internal")
            if direction != "internal":
                dirs.add(direction)
            reason = f.reason if f.reason in REASONS else ""
            if reason:
                reasons.add(reason)
            key = (direction, f.sink, pattern, f.category, f.action, reason, declared, uses)
            groups[key] = groups.get(key, 0) + 1
        decisions = [
            {"dir": d, "sink": s, "pattern": p, "category": c, "action": a, "reason": r,
             "declared": dec, "uses": list(u), "count": n}
            for (d, s, p, c, a, r, dec, u), n in sorted(groups.items())
        ]
        payload: dict[str, Any] = {
            "kind": "request", "time": utc_now(snap.time), "env": self.environment,
            "policy": self.policy, "request_id": snap.request_id,
            "route": snap.route_template if snap.route is not None else None,
            "method": safe_method(snap.method), "status": snap.status,
            "direction": "both" if len(dirs) == 2 else next(iter(dirs), "none"),
            "decisions": decisions, "reasons": sorted(reasons),
            "signals": sorted(set(snap.signals)),
        }
        if self.with_subject and snap.subject:
            payload["subject"] = self.key.subject(snap.subject)
        return payload

    def summary(self, counters: Counters, clock: float | None = None) -> dict[str, Any]:
        routes = [{"route": r, "method": m, "requests": n,
                   "status": dict(sorted(counters.status[(r, m)].items()))}
                  for (r, m), n in sorted(counters.requests.items(), key=_route_key)]
        decisions = [{"route": r, "method": m, "sink": s, "category": c, "action": a,
                      "count": n}
                     for (r, m, s, c, a), n in sorted(counters.decisions.items(), key=_dec_key)]
        return {"kind": "summary", "time": utc_now(clock), "env": self.environment,
                "policy": self.policy, "from": utc_now(counters.since),
                "to": utc_now(clock), "requests": counters.total,
                "reported": counters.reported, "dropped": 0,  # set by the writer
                "overflow": counters.overflow, "routes": routes, "decisions": decisions}

    # -- pointer patterns ------------------------------------------------------------------
    def _pattern(self, snap: Snapshot, f: Finding) -> tuple[str, tuple[str, ...]]:
        """The plan's pattern for a finding (never a data key that might be PII) and its uses."""
        raw = f.pattern or f.location
        cache_key = (id(snap.route), f.sink, snap.status if f.sink == "client" else None, raw)
        hit = self._patterns.get(cache_key) if f.detector == "schema" else None
        if hit is not None:
            return hit
        result: tuple[str, tuple[str, ...]] | None = None
        if f.detector == "schema" and snap.route is not None:
            result = _declared(snap.route, f.sink, snap.status, raw)
        if result is None:
            result = (safe_pattern(raw, snap.suspicious or self._default_suspicious()), ())
        if f.detector == "schema":
            if len(self._patterns) > 4096:
                self._patterns.clear()
            self._patterns[cache_key] = result
        return result

    def _default_suspicious(self) -> Callable[[str], bool]:
        """A snapshot without its request's test still gets every regex detector's."""
        if self._suspicious is None:
            self._suspicious = suspicious_keys()
        return self._suspicious


def _route_key(item: tuple[tuple[str, str], int]) -> tuple[str, str]:
    return item[0]


def _dec_key(item: tuple[tuple[str, str, str, str, str], int]) -> tuple[str, ...]:
    return item[0]


def _plans(route: _Route, sink: str, status: int | None) -> list[Any]:
    """The plans a finding in ``sink`` can come from: the request's, a response's, or all."""
    request = [b.plan for b in (route.request,) if b is not None]
    request += [route.query] if route.query is not None else []
    if sink == "app":
        return request
    if sink == "client" and status is not None:
        body = route.response_for(status)
        return [body.plan] if body is not None else []
    responses = [b.plan for b in route.responses.values()]
    return responses if sink == "client" else request + responses


def _declared(route: _Route, sink: str, status: int | None,
              raw: str) -> tuple[str, tuple[str, ...]] | None:
    segments = raw.split("/")
    for plan in _plans(route, sink, status):
        for entry in plan.entries:
            pat = entry.pattern.split("/")
            if len(pat) == len(segments) and all(
                    p in ("*", s) for p, s in zip(pat, segments, strict=True)):
                return entry.pattern, tuple(entry.tag.uses)
            if entry.pattern == "/" and raw in ("", "/"):
                return "/", tuple(entry.tag.uses)
    return None


def suspicious_keys(detectors: Any = None, known: Any = None) -> Callable[[str], bool]:
    """A test for :func:`safe_pattern`: a key some regex detector (default: all) or a known
    value matches. ``detectors`` and ``known`` need only ``search(text) -> bool``."""
    if detectors is None:
        from piimw.detect import Detectors

        detectors = Detectors()

    def suspicious(segment: str) -> bool:
        if detectors.search(segment):
            return True
        return known is not None and bool(known.search(segment))

    return suspicious


def safe_pattern(raw: str, suspicious: Callable[[str], bool]) -> str:
    """Replace every segment that is not a plain, harmless key by ``*``.

    Keys of undeclared objects come from the client: ``{"jane@example.com": ...}`` must reach
    the trail as ``/*``. Numbers are array indices; a segment that does not look like an
    identifier (letters, digits, ``_``, ``-``; at most 40 characters) is replaced, and so is
    one ``suspicious`` flags (required: an identifier-like IBAN, token or known value is PII
    too; see :func:`suspicious_keys`). A name written as one word passes unless the test
    knows it.
    """
    if not raw.startswith("/"):
        channel, sep, name = raw.partition(":")
        channel = channel if _SAFE_SEGMENT.fullmatch(channel) else "*"
        if not sep:
            return channel
        return f"{channel}:{_segment(name, suspicious)}"
    if raw == "/":
        return raw
    return "/".join(_segment(s, suspicious) if s else s for s in raw.split("/"))


def _segment(s: str, suspicious: Callable[[str], bool]) -> str:
    if s == "*" or not _SAFE_SEGMENT.fullmatch(s):
        return "*"
    if suspicious(s):
        return "*"
    return s


@dataclass
class Counters:
    """Routine traffic, counted between summary records (bounded: overflow is counted)."""

    since: float
    total: int = 0
    reported: int = 0
    overflow: int = 0
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    status: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    decisions: dict[tuple[str, str, str, str, str], int] = field(default_factory=dict)

    MAX_KEYS: ClassVar[int] = 4096

    def add(self, route: str | None, method: str, status: int | None,
            findings: Sequence[Finding]) -> None:
        self.total += 1
        r = route or "(unmatched)"
        method = safe_method(method)
        key = (r, method)
        if key not in self.requests and len(self.requests) >= self.MAX_KEYS:
            self.overflow += 1
            return
        self.requests[key] = self.requests.get(key, 0) + 1
        st = self.status.setdefault(key, {})
        cls = f"{status // 100}xx" if status else "none"
        st[cls] = st.get(cls, 0) + 1
        decisions = self.decisions
        for f in findings:
            dk = (r, method, f.sink, f.category, f.action)
            if dk not in decisions and len(decisions) >= self.MAX_KEYS:
                self.overflow += 1
                continue
            decisions[dk] = decisions.get(dk, 0) + 1

    def __bool__(self) -> bool:
        return bool(self.total or self.reported)
