"""Backends for the opt-out registry, chosen by URL, and the record format they share.

``memory://`` (one process; ``memory://name`` is shared by every registry of the process that
names it), ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (the embedded default: WAL
mode, safe across worker processes) and ``redis://host:port/db`` (many hosts, with pub/sub
invalidation of per-process caches).

A backend stores, per subject pseudonym, a flat map of fields (see :class:`Record`), reads it
whole, and changes it atomically through :meth:`Store.update`. Caching lives in
:class:`Cache`; each backend says per lookup whether the cache may be trusted right now.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar, Final

from piimw.consent import Consent
from piimw.errors import ConfigError, PIIMWError

#: (kind, name): kind is ``"use"`` or ``"category"``, name a canonical use or category key.
Item = tuple[str, str]
KINDS: Final = ("use", "category")

#: Use and category names a record can hold (the registry writes nothing else: see
#: :func:`piimw.registry.registry_use`).
NAME_RE: Final = re.compile(r"^[a-z0-9_][a-z0-9_.]{0,127}$")
SIGNAL_RE: Final = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class StoreError(PIIMWError):
    """The backend could not be reached or read. Messages never carry subjects or values."""


class UnreadableRecord(StoreError):
    """The backend answered, but one subject's record cannot be parsed.

    Not an outage: that subject fails closed, every other subject is read as usual, and
    :meth:`Store.remove` still deletes the record (it never parses it).
    """


def _stamp(at: float) -> str:
    return f"{at:.6f}"


@dataclass(frozen=True)
class Record:
    """One subject's registry entry: what was opted out, by which signal, and when.

    ``out`` maps (kind, name, signal) to the time that signal opted the subject out of the item;
    ``opt_in`` maps (kind, name) to (time, how) of the latest explicit opt-in. Both are kept so
    that an opt-in overrides exactly the opt-outs recorded before it, never a later one.
    """

    subject: str
    out: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    opt_in: Mapping[Item, tuple[float, str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.out or self.opt_in)

    @property
    def latest(self) -> float:
        """The newest timestamp in the record (0.0 if empty)."""
        times = [*self.out.values(), *(at for at, _ in self.opt_in.values())]
        return max(times, default=0.0)

    def effective_out(self) -> dict[Item, dict[str, float]]:
        """Items opted out now: an out entry counts unless a later opt-in overrides it."""
        result: dict[Item, dict[str, float]] = {}
        for (kind, name, signal), at in self.out.items():
            got = self.opt_in.get((kind, name))
            if got is not None and got[0] > at:
                continue
            result.setdefault((kind, name), {})[signal] = at
        return result

    def effective_in(self) -> dict[Item, tuple[float, str]]:
        """Explicit opt-ins that no later opt-out has overridden."""
        out = self.effective_out()
        return {item: got for item, got in self.opt_in.items() if item not in out}

    @cached_property
    def consent(self) -> Consent:
        """The registry's view as a :class:`Consent` (signal ``registry``), built once."""
        out = self.effective_out()
        uses = frozenset(name for kind, name in out if kind == "use")
        cats = frozenset(name for kind, name in out if kind == "category")
        opted_in = frozenset(name for (kind, name) in self.effective_in() if kind == "use")
        return Consent(
            subject=self.subject, opted_out_uses=uses, opted_out_categories=cats,
            opted_in=opted_in, sources=tuple(sorted((k, "registry") for k in uses | cats)),
            signals=("registry",) if (uses or cats or opted_in) else (),
        )

    # -- the flat field map every backend stores ----------------------------------------------
    def fields(self) -> dict[str, str]:
        """``o|kind|name|signal -> time`` and ``i|kind|name -> time|how``."""
        f = {f"o|{k}|{n}|{s}": _stamp(at) for (k, n, s), at in self.out.items()}
        f.update({f"i|{k}|{n}": f"{_stamp(at)}|{how}" for (k, n), (at, how) in self.opt_in.items()})
        return f

    @classmethod
    def from_fields(cls, subject: str,
                    fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> Record:
        """Parse a stored field map; raise :class:`StoreError` on anything unexpected."""
        out: dict[tuple[str, str, str], float] = {}
        opt_in: dict[Item, tuple[float, str]] = {}
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        try:
            for key, value in pairs:
                parts = key.split("|")
                if parts[0] == "o" and len(parts) == 4 and _valid(parts[1], parts[2], parts[3]):
                    out[(parts[1], parts[2], parts[3])] = float(value)
                elif parts[0] == "i" and len(parts) == 3 and _valid(parts[1], parts[2]):
                    at, _, how = value.partition("|")
                    if not SIGNAL_RE.match(how):
                        raise ValueError
                    opt_in[(parts[1], parts[2])] = (float(at), how)
                else:
                    raise ValueError
        except (ValueError, AttributeError, TypeError):
            raise UnreadableRecord("a registry record is unreadable") from None
        return cls(subject, out, opt_in)

    def as_json(self) -> dict[str, Any]:
        """What a subject may see of their own record (no subject, no internals)."""
        opted_out: dict[str, list[dict[str, Any]]] = {"uses": [], "categories": []}
        for (kind, name), signals in sorted(self.effective_out().items()):
            opted_out["uses" if kind == "use" else "categories"].append(
                {"name": name, "since": _iso(min(signals.values())), "signals": sorted(signals)})
        opted_in = [{"name": name, "since": _iso(at), "signal": how}
                    for (kind, name), (at, how) in sorted(self.effective_in().items())
                    if kind == "use"]
        return {"opted_out": opted_out, "opted_in": {"uses": opted_in}}


def _valid(kind: str, name: str, signal: str | None = None) -> bool:
    return kind in KINDS and bool(NAME_RE.match(name)) and (
        signal is None or bool(SIGNAL_RE.match(signal)))


def _iso(at: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def refill(tokens: float | None, last: float | None, now: float, rate: float,
           burst: float) -> tuple[float, float]:
    """One token bucket step: (tokens left, seconds to wait; 0.0 when a token was taken)."""
    have = burst if tokens is None or last is None else min(
        burst, tokens + max(0.0, now - last) * rate)
    if have >= 1.0:
        return have - 1.0, 0.0
    return have, (1.0 - have) / rate


#: A change to one record: ``(current, now) -> new``. Must be pure: backends may retry it.
Change = Callable[[Record, float], Record]


class Cache:
    """Per-process cache of records. Correct only together with its backend's invalidation.

    ``generation`` is bumped by every invalidation, so that a lookup that read the backend
    before a change cannot store its (stale) result after the invalidation ran.
    """

    __slots__ = ("_data", "_lock", "generation", "size")

    def __init__(self, size: int = 10_000) -> None:
        self._data: dict[str, Record] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.size = size

    def __len__(self) -> int:
        return len(self._data)

    def get(self, subject: str) -> Record | None:
        return self._data.get(subject)

    def put(self, subject: str, record: Record, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            data = self._data
            if subject not in data and len(data) >= self.size:
                data.pop(next(iter(data)))  # oldest first: cheap and good enough
            data[subject] = record

    def invalidate(self, subject: str) -> None:
        with self._lock:
            self.generation += 1
            self._data.pop(subject, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._data.clear()

    def after_fork(self) -> None:
        """A lock held by another thread at fork time would never be released in the child."""
        self._lock = threading.Lock()
        self.generation += 1
        self._data.clear()


class Store(ABC):
    """A registry backend. Thread-safe; opens connections lazily (fork-friendly)."""

    kind: ClassVar[str] = ""
    #: Whether a per-process :class:`Cache` in front of this backend can be kept correct.
    cacheable: ClassVar[bool] = True

    @abstractmethod
    def load(self, subject: str) -> Record:
        """The subject's record (empty if none). Raises :class:`StoreError`."""

    @abstractmethod
    def update(self, subject: str, change: Change) -> tuple[Record, bool]:
        """Apply ``change`` atomically; return the new record and whether anything changed.

        A change is visible to every other process's next lookup once this returns.
        """

    def remove(self, subject: str) -> bool:
        """Delete the subject's record without reading it (an unreadable one too); True if
        there was one. Visible to every process's next lookup once this returns, like
        :meth:`update`; backends override this where parsing first would fail."""
        return self.update(subject, lambda record, now: Record(record.subject))[1]

    def attach(self, cache: Cache) -> None:
        """Start invalidating ``cache`` (the backend keeps it correct from now on)."""
        return None

    def take_token(self, key: str, rate: float, burst: float) -> float | None:
        """Take a token from the bucket ``key`` (``rate`` tokens a second, at most ``burst``)
        that every process and host using this backend shares: 0.0 if one was taken, else
        the seconds until one is available. None: this backend shares nothing (the caller
        keeps a bucket in its process). Raises :class:`StoreError`."""
        return None

    def cache_usable(self) -> bool:
        """Checked before every cached lookup: may the cache be trusted right now?"""
        return True

    def ping(self) -> None:
        """Raise :class:`StoreError` if the backend cannot be reached."""
        self.load("hmac:ping.registry:ping")

    def stats(self) -> dict[str, Any]:
        return {"backend": self.kind}

    def after_fork(self) -> None:
        """Forget connections and threads inherited from the parent process."""
        return None

    def close(self) -> None:
        """Close connections and stop threads. Idempotent."""
        return None


def open_store(url: str, *, key_prefix: str = "piimw", timeout: float = 0.5) -> Store:
    """The backend for ``url``. Raises :class:`ConfigError` (never echoing credentials)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("registry URL must look like memory://, sqlite:///path or "
                          "redis://host:port/db", pointer="/registry/url")
    scheme = scheme.lower()
    if scheme == "memory":
        from piimw.stores.memory import MemoryStore

        return MemoryStore.named(rest) if rest else MemoryStore()
    if scheme == "sqlite":
        from piimw.stores.sqlite import SQLiteStore

        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError("sqlite registry URL must be sqlite:///relative/path or "
                              "sqlite:////absolute/path", pointer="/registry/url")
        return SQLiteStore(rest[1:], timeout=timeout)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from piimw.stores.redis import RedisStore
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise ConfigError("the redis registry backend needs the 'redis' extra: "
                              "pip install 'piimw[redis]'", pointer="/registry/url") from None
        return RedisStore(url, key_prefix=key_prefix, timeout=timeout)
    raise ConfigError(f"unknown registry backend {scheme!r}; expected memory, sqlite or redis",
                      pointer="/registry/url")


__all__ = ["KINDS", "NAME_RE", "Cache", "Change", "Item", "Record", "Store", "StoreError",
           "UnreadableRecord", "open_store"]
