"""The audit trail: one chained, keyed record per request that had something to report.

The middleware calls :meth:`AuditTrail.record_exchange` at the end of every request. Routine
requests (only declared data, all allowed, no signal) just bump counters that are written as
periodic summary records; the rest are snapshotted and handed to a background writer, so the
request thread never serialises, hashes or touches a file. Records never carry a PII value.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast

from piimw._paths import audit_url
from piimw.audit.records import (
    DEFAULT_KEY_ENV,
    AuditKey,
    Builder,
    Counters,
    Head,
    Sealer,
    Snapshot,
    canonical,
    policy_hash,
    reportable,
)
from piimw.audit.sinks import Sink, Writer, open_sink, split_url
from piimw.errors import ConfigError
from piimw.taxonomy import tier

__all__ = [
    "AUDIT_SETTINGS_SCHEMA",
    "AuditKey",
    "AuditSettings",
    "AuditTrail",
    "Head",
    "canonical",
    "policy_hash",
]

logger = logging.getLogger("piimw.audit")

OnFailure = Literal["drop", "fail_closed"]

#: JSON Schema of the ``audit`` settings table (for :data:`piimw.config.CONFIG_SCHEMA`).
AUDIT_SETTINGS_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "enabled": {"type": "boolean"},
        "url": {"type": "string", "pattern": "^(jsonl|sqlite|logging)://."},
        "key_env": {"type": "string", "minLength": 1},
        "key_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,32}$"},
        "summary_interval": {"type": "number", "exclusiveMinimum": 0},
        "summary_every": {"type": "integer", "minimum": 1},
        "checkpoint_every": {"type": "integer", "minimum": 1},
        "queue_size": {"type": "integer", "minimum": 1},
        "on_failure": {"enum": ["drop", "fail_closed"]},
        "subject": {"type": "boolean"},
        "fsync": {"type": "boolean"},
        "checkpoint_logger": {"type": "string", "minLength": 1},
    },
}


@dataclass(frozen=True)
class AuditSettings:
    """The ``audit`` table, validated. Secrets are not here: only the name of their variable."""

    enabled: bool = True
    url: str = "jsonl://piimw-audit.jsonl"
    key_env: str = DEFAULT_KEY_ENV
    key_id: str | None = None
    summary_interval: float = 60.0
    summary_every: int = 10000
    checkpoint_every: int = 1000
    queue_size: int = 10000
    on_failure: OnFailure = "drop"
    subject: bool = True
    fsync: bool = False
    checkpoint_logger: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], source: str = "<config>") -> AuditSettings:
        """Check types by hand (same messages as the config loader): never quote a value."""
        props = AUDIT_SETTINGS_SCHEMA["properties"]
        unknown = sorted(set(raw) - set(props))
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, unknown))}",
                              source=source, pointer="/audit")
        types: dict[str, tuple[type, ...]] = {
            "enabled": (bool,), "url": (str,), "key_env": (str,), "key_id": (str,),
            "summary_interval": (int, float), "summary_every": (int,),
            "checkpoint_every": (int,), "queue_size": (int,), "on_failure": (str,),
            "subject": (bool,), "fsync": (bool,), "checkpoint_logger": (str,),
        }
        for name, value in raw.items():
            ok = isinstance(value, types[name]) and (
                bool in types[name] or not isinstance(value, bool))
            if not ok:
                expected = "number" if name == "summary_interval" else types[name][0].__name__
                raise ConfigError(f"expected {expected}", source=source,
                                  pointer=f"/audit/{name}")
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ConfigError("must be greater than 0", source=source,
                                  pointer=f"/audit/{name}")
        if raw.get("on_failure", "drop") not in ("drop", "fail_closed"):
            raise ConfigError("expected one of: drop, fail_closed", source=source,
                              pointer="/audit/on_failure")
        if "url" in raw:
            try:
                split_url(raw["url"])
            except ConfigError as e:
                raise ConfigError(e.reason, source=source, pointer="/audit/url") from None
        return cls(**{k: raw[k] for k in raw})


class AuditTrail:
    """Chained, keyed audit records written in the background. One per process and config.

    ``healthy()`` is false while the sink fails or the queue is full; with
    ``on_failure = "fail_closed"`` the middleware should answer 503 to requests that touch
    sensitive-tier data meanwhile (:meth:`refuses`).
    """

    def __init__(self, sink: Sink, key: AuditKey, *, environment: str, policy: str,
                 settings: AuditSettings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = s = settings or AuditSettings()
        self.sink = sink
        self.key = key
        self.environment = environment
        self.policy_hash = policy
        self.on_failure: OnFailure = s.on_failure
        self._clock = clock
        self._builder = Builder(key, environment, policy, subject=s.subject)
        self._lock = threading.Lock()
        self._counters = Counters(clock())
        self._sensitive: dict[int, bool] = {}
        self._closed = False
        self._writer = Writer(
            sink, self._build, queue_size=s.queue_size, fail_closed=s.on_failure == "fail_closed",
            tick=self._tick, tick_interval=min(1.0, s.summary_interval),
            on_lines=self._lines_written if s.checkpoint_logger else None)
        ref = weakref.ref(self)
        atexit.register(_close_at_exit, ref)
        os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, settings: Mapping[str, Any], environment: str, policy_hash: str, *,
                    environ: Mapping[str, str] | None = None,
                    source: str = "<config>", base_dir: Path | None = None) -> AuditTrail | None:
        """Build the trail from the settings (the whole config or its ``audit`` table).

        Returns None when audit is not configured or ``enabled = false``. Raises
        :class:`~piimw.errors.ConfigError` naming the variable when the key is missing:
        an unsigned trail would prove nothing.
        """
        if "audit" in settings:
            raw = settings["audit"]
        elif settings and set(settings) <= set(AUDIT_SETTINGS_SCHEMA["properties"]):
            raw = settings  # the audit table itself
        else:
            return None  # a configuration without an audit table
        if not isinstance(raw, Mapping):
            raise ConfigError("expected object", source=source, pointer="/audit")
        s = AuditSettings.parse(raw, source)
        if not s.enabled:
            return None
        try:
            key = AuditKey.from_env(s.key_env, s.key_id, environ)
        except ConfigError as e:
            raise ConfigError(e.reason, source=source, pointer="/audit/key_env") from None
        sealer = Sealer(key, environment, s.checkpoint_every)
        url = audit_url(s.url, base_dir)  # a relative path: next to the settings file
        return cls(open_sink(url, sealer, fsync=s.fsync), key, environment=environment,
                   policy=policy_hash, settings=s)

    @classmethod
    def for_config(cls, config: Any, *, environ: Mapping[str, str] | None = None
                   ) -> AuditTrail | None:
        """Convenience for the middleware: ``AuditTrail.for_config(piimw_config)``."""
        return cls.from_config(config.raw, config.environment, policy_hash(config),
                               environ=environ, source=config.source,
                               base_dir=getattr(config, "base_dir", None))

    # -- the request path ------------------------------------------------------------------
    def record_exchange(self, exchange: Any) -> None:
        """Account for one finished request: one queue put, nothing else in this thread.

        The writer thread reads the exchange (findings are built lazily, so even that is
        deferred), counts routine requests and turns the rest into records. The exchange is
        finished and never changes after this call; its known values stay in memory only
        until the writer has looked at it and are never written.
        """
        if self._closed:
            return
        item = _Pending(self._clock(), exchange)
        if not self._writer.submit(item, count_drop=False):
            payload = self._account(item)  # queue full: at least keep the counts right
            if payload is not None and payload.get("kind") == "request":
                self._writer.dropped += 1

    def _account(self, item: _Pending) -> dict[str, Any] | None:
        """Count a routine request (maybe returning a due summary) or build its record."""
        ex = item.exchange
        findings = tuple(ex.findings)
        consent = ex.consent
        signals = tuple(consent.signals) + tuple(getattr(ex, "signals_used", ()))
        reasons = tuple(getattr(ex, "reasons", ()))
        status = ex.status
        if not reportable(findings, signals, reasons):
            with self._lock:
                c = self._counters
                c.add(ex.route_template, ex.method, status, findings)
                due = c.total >= self.settings.summary_every
            return self._take_summary(force=True) if due else None
        with self._lock:
            self._counters.reported += 1
        return self._builder.request(Snapshot(
            item.time, ex.request_id, ex.route, ex.route_template, ex.method, status, findings,
            signals, reasons, consent.subject, _suspicious(ex)))

    def record(self, payload: Mapping[str, Any]) -> bool:
        """Queue a ready-made payload (``kind`` and ``time`` set by the caller)."""
        return self._writer.submit(dict(payload))

    def healthy(self) -> bool:
        """False while the sink fails or the queue is full (records would be lost)."""
        return self._writer.sink_ok and not self._writer.backlogged

    def refuses(self, exchange: Any) -> bool:
        """Should this request get a 503? Only in ``fail_closed`` mode, only while unhealthy,
        and only for requests whose route or findings touch sensitive-tier categories."""
        if self.on_failure != "fail_closed" or self.healthy():
            return False
        if any(tier(f.category) == "sensitive" for f in exchange.findings):
            return True
        route = exchange.route
        if route is None:
            return False
        hit = self._sensitive.get(id(route))
        if hit is None:
            hit = _route_is_sensitive(route)
            self._sensitive[id(route)] = hit
        return hit

    @property
    def dropped(self) -> int:
        """Records lost so far (queue full, sink failure, or after close)."""
        return self._writer.dropped

    def stats(self) -> dict[str, Any]:
        w = self._writer
        return {"written": w.written, "dropped": w.dropped, "failures": w.failures,
                "healthy": self.healthy(), "sink": self.sink.url.partition("://")[0]}

    # -- summaries, flush, close -----------------------------------------------------------
    def _take_summary(self, force: bool = False) -> dict[str, Any] | None:
        now = self._clock()
        with self._lock:
            c = self._counters
            if not c or (not force and now - c.since < self.settings.summary_interval
                          and c.total < self.settings.summary_every):
                return None
            self._counters = Counters(now)
        return self._builder.summary(c, now)

    def _submit_summary(self) -> None:
        payload = self._take_summary(force=True)
        if payload is not None:
            self._writer.submit(payload)

    def _tick(self) -> dict[str, Any] | None:
        return self._take_summary()

    def _build(self, item: Any) -> Mapping[str, Any] | None:
        if isinstance(item, _Pending):
            return self._account(item)
        return self._builder.request(cast(Snapshot, item))

    def _lines_written(self, lines: list[bytes]) -> None:
        name = self.settings.checkpoint_logger
        assert name is not None
        log = logging.getLogger(name)
        for line in lines:
            if b'"kind":"checkpoint"' in line:
                log.info("%s", line.decode().rstrip("\n"), extra={"piimw_audit": True})

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued and a summary of the counts; True if done in time."""
        done = self._writer.flush(timeout)  # the writer counts what is still queued
        self._submit_summary()
        return self._writer.flush(timeout) and done

    def close(self, timeout: float = 10.0) -> None:
        """Flush, seal the chain with a final checkpoint, release the sink. Idempotent."""
        if self._closed:
            return
        self._writer.flush(timeout)
        self._submit_summary()
        self._closed = True
        self._writer.stop(timeout)
        try:
            if self._writer.written or self._writer.sink_ok:
                lines = self.sink.finish()
                if self.settings.checkpoint_logger:
                    self._lines_written(lines)
        except Exception as exc:
            logger.error("piimw: audit trail could not be sealed (%s)", type(exc).__name__)
        finally:
            self.sink.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class _Pending:
    """A finished exchange waiting for the writer, with the time its request ended."""

    time: float
    exchange: Any


def _suspicious(exchange: Any) -> Callable[[str], bool] | None:
    """A test for keys that may be PII, from this request's detectors and known values."""
    config = getattr(exchange, "config", None)
    detectors = getattr(config, "detectors", None)
    known = getattr(exchange, "known", None)

    def suspicious(segment: str) -> bool:
        if detectors is not None and detectors.search(segment):
            return True
        return known is not None and bool(known) and known.search(segment)

    return suspicious


def _route_is_sensitive(route: Any) -> bool:
    bodies = [route.request, *route.responses.values()]
    plans = [b.plan for b in bodies if b is not None]
    if route.query is not None:
        plans.append(route.query)
    return any(tier(c) == "sensitive" for p in plans for e in p.entries for c in e.tag.categories)


def _close_at_exit(ref: weakref.ref[AuditTrail]) -> None:
    trail = ref()
    if trail is not None:
        trail.close(timeout=5.0)


def _after_fork(ref: weakref.ref[AuditTrail]) -> None:
    trail = ref()
    if trail is not None:
        # The parent's counters are the parent's to report; the child starts afresh.
        trail._lock = threading.Lock()
        trail._counters = Counters(trail._clock())
