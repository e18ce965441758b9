"""The opt-out registry: what each known subject refused, kept beyond one request and process.

Subjects are keyed pseudonyms (:meth:`Registry.subject_for`), never raw user ids. A lookup
goes through a per-process cache only where the backend can keep it correct (see
:mod:`piimw.stores`). When the backend cannot be reached the subject counts as opted out of
everything but essential use: failing open here would let data flow that a user refused.
The failure is logged once per incident, and lookups probe the backend again every
``retry_interval`` seconds until it answers. A record that cannot be parsed fails closed for
its subject alone (no outage), and :meth:`Registry.clear` deletes it unread.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from piimw._paths import registry_url as anchored_registry_url
from piimw.consent import DEFAULT, NON_ESSENTIAL, Consent
from piimw.errors import ConfigError, PIIMWError
from piimw.stores import (
    KINDS,
    NAME_RE,
    SIGNAL_RE,
    Cache,
    Change,
    Item,
    Record,
    Store,
    StoreError,
    UnreadableRecord,
)
from piimw.stores import open_store as _open_store
from piimw.taxonomy import UnknownCategoryError, resolve, resolve_use, use_within
from piimw.transform import Hasher

if TYPE_CHECKING:
    from piimw.config import Config

logger = logging.getLogger("piimw.registry")

#: The sink name of registry pseudonyms: its own derived key, unlinkable to log pseudonyms.
SINK: Final = "registry"
SUBJECT_RE: Final = re.compile(r"^hmac:[A-Za-z0-9_-]{1,32}\.registry:[A-Za-z0-9_-]{43}$")

#: Which uses a signal can opt out of; ``None`` (header lists, session flags): unknown.
SIGNAL_COVERAGE: Final[dict[str, tuple[str, ...]]] = {
    "gpc": ("marketing", "third_party"),
    "gpp": ("marketing", "third_party"),
    "usprivacy": ("marketing", "third_party"),
    "dnt": ("marketing", "third_party", "analytics"),
}
#: Signals written through to the registry for a signed-in subject (sticky).
WRITE_THROUGH: Final = ("gpc",)

REGISTRY_SCHEMA: Final[dict[str, Any]] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "pattern": "^(memory|sqlite|redis|rediss|unix)://"},
        "url_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "key_prefix": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "cache": {"type": "boolean"},
        "cache_size": {"type": "integer", "minimum": 0},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 30},
        "retry_interval": {"type": "number", "minimum": 0, "maximum": 300},
        "api": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "path": {"type": "string", "pattern": "^/[A-Za-z0-9_./-]*$"},
                "allowed_origins": {"type": "array", "items": {
                    "type": "string", "pattern": "^https?://[^/?#]+$"}},
                "csrf_header": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"},
                "rate_per_minute": {"type": "number", "exclusiveMinimum": 0},
                "burst": {"type": "integer", "minimum": 1},
            },
        },
    },
}


class RegistryUnavailable(PIIMWError):
    """A registry write could not be made: the backend is unreachable. Carries no subject."""


class RecordUnreadable(RegistryUnavailable):
    """One subject's record cannot be parsed (the backend itself answers). That subject fails
    closed and cannot be read or changed until :meth:`Registry.clear` removes the record."""


def is_subject(value: object) -> bool:
    return isinstance(value, str) and SUBJECT_RE.match(value) is not None


def _check_subject(subject: str) -> None:
    if not is_subject(subject):
        # Never echo it: a caller who passes a raw id here would leak it into the logs.
        raise ValueError("registry subjects are pseudonyms from Registry.subject_for(), "
                         "never raw user ids")


def _check_signal(signal: str) -> None:
    if not SIGNAL_RE.match(signal):
        raise ValueError("a signal name is 1-32 lower-case letters, digits, '_' or '-'")


#: A use or sub-use as the registry records it: dotted segments of ``[a-z0-9_]``.
_USE_RE: Final = re.compile(r"^[a-z0-9_]+(?:\.[a-z0-9_]+)*$")


def registry_use(name: str) -> str:
    """The canonical use for ``name``, if the registry can record it; else ValueError.

    The taxonomy takes any dotted sub-use, but a record holding a name that the stores cannot
    read back (``marketing.X``) would be unreadable from then on, so only lower-case dotted
    segments are accepted. The message never echoes the name.
    """
    try:
        use = resolve_use(name)
    except ValueError:
        raise ValueError("unknown use") from None
    if not (_USE_RE.match(use) and NAME_RE.match(use)):
        raise ValueError("a sub-use is dotted segments of lower-case letters, digits and '_'")
    return use


def registry_category(name: str) -> str:
    """The category key for ``name`` (a key or an alias); ValueError without echo if unknown."""
    try:
        key = resolve(name)
    except UnknownCategoryError:
        raise ValueError("unknown data category") from None
    if not NAME_RE.match(key):  # every shipped key matches; a record must stay readable
        raise ValueError("unknown data category")
    return key


def _uses(uses: Iterable[str], *, opt_out: bool) -> list[str]:
    out = []
    for u in uses:
        name = registry_use(u)
        if opt_out and use_within(name, "essential"):
            raise ValueError("essential use cannot be opted out of")
        out.append(name)
    return out


def _categories(categories: Iterable[str]) -> list[str]:
    return [registry_category(c) for c in categories]


def _items(uses: Iterable[str], categories: Iterable[str]) -> list[Item]:
    return [("use", u) for u in uses] + [("category", c) for c in categories]


def _after(record: Record, now: float) -> float:
    """Strictly later than anything in the record, whatever the clock did; whole µs, as stored."""
    return round(max(now, record.latest + 1e-6), 6)


@dataclass
class _Outage:
    started: float
    next_probe: float
    failures: int = 1


# Registries alive in this process, so that a fork resets their connections and threads.
_live: weakref.WeakSet[Registry] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for registry in list(_live):
        registry._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Registry:
    """Opt-outs and opt-ins per subject pseudonym, with when and how each was recorded.

    ``Registry("sqlite:///piimw-registry.db", hasher=Hasher(key))``. Thread-safe; opens
    connections on first use; call :meth:`close` (or use ``with``) when done.
    """

    def __init__(
        self,
        store: Store | str,
        hasher: Hasher | None = None,
        *,
        cache: bool = True,
        cache_size: int = 10_000,
        retry_interval: float = 1.0,
        write_through: bool = True,
        key_prefix: str = "piimw",
        timeout: float = 0.5,
        previous_hashers: Iterable[Hasher] = (),
    ) -> None:
        self.store = _open_store(store, key_prefix=key_prefix, timeout=timeout) \
            if isinstance(store, str) else store
        self.hasher = hasher
        #: Keys being rotated out: see :meth:`adopt`.
        self.previous_hashers = tuple(previous_hashers)
        self.write_through = write_through
        self.retry_interval = retry_interval
        self.cache: Cache | None = None
        if cache and cache_size > 0 and self.store.cacheable:
            self.cache = Cache(cache_size)
            self.store.attach(self.cache)
        self._outage: _Outage | None = None
        self._unreadable_logged = float("-inf")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.failed_closed = 0
        _live.add(self)

    # -- construction from settings ---------------------------------------------------------
    @classmethod
    def from_config(cls, config: Config, *, environ: Mapping[str, str] | None = None,
                    url: str | None = None) -> Registry | None:
        """The registry configured under ``registry`` (None if that section is absent).

        ``url`` overrides the configured backend (operators' tools point at another copy) and
        stands for an empty section when there is none; the hash key and the key prefix still
        come from the settings, so subjects are keyed exactly as the application keys them.
        """
        raw = config.raw.get("registry")
        if raw is None:
            if url is None:
                return None
            raw = {}
        from piimw.signals import ConsentSettings

        if not isinstance(raw, Mapping):
            raise ConfigError("expected object", source=config.source, pointer="/registry")
        extra = sorted(set(raw) - set(REGISTRY_SCHEMA["properties"]))
        if extra:
            raise ConfigError(f"unknown setting(s) {', '.join(map(repr, extra))}",
                              source=config.source, pointer="/registry")
        settings = ConsentSettings.from_config(config.raw.get("consent"), source=config.source)
        if url is None:
            url = registry_url(raw, environ, source=config.source)
            if "url_env" not in raw:  # a path in the settings file is relative to it
                url = anchored_registry_url(url, getattr(config, "base_dir", None))
        if config.hasher is None:
            raise ConfigError("the opt-out registry keys subjects with the hash key; set the "
                              "environment variable named by hash.key_env",
                              source=config.source, pointer="/hash/key_env")
        return cls(url, config.hasher, cache=bool(raw.get("cache", True)),
                   cache_size=int(raw.get("cache_size", 10_000)),
                   retry_interval=float(raw.get("retry_interval", 1.0)),
                   write_through=settings.write_through,
                   key_prefix=str(raw.get("key_prefix", "piimw")),
                   timeout=float(raw.get("timeout", 0.5)),
                   previous_hashers=getattr(config, "previous_hashers", ()))

    # -- subjects ---------------------------------------------------------------------------
    def subject_for(self, user_id: str | int) -> str:
        """The pseudonym a user is registered under: ``hmac:<kid>.registry:<b64url>``."""
        if self.hasher is None:
            raise ConfigError("the registry needs a hash key to turn user ids into subjects",
                              pointer="/hash/key_env")
        return self.hasher.pseudonym(str(user_id), SINK)

    def adopt(self, user_id: str | int) -> str:
        """:meth:`subject_for`, after moving a record kept under a previous hash key.

        Subjects are keyed with the hash key, and a raw id cannot be recovered from a subject,
        so records written before a key rotation can only be found again when their user is
        next seen. With ``hash.previous_key_envs`` set during the rotation, the first request
        (or opt-out API call, or ``piimw optout --user``) of each user merges the old record
        into the current subject and empties the old one; their opt-outs survive the change.
        A registry that cannot be reached is left as it is (the lookup then fails closed).
        """
        subject = self.subject_for(user_id)
        for hasher in self.previous_hashers:
            old = hasher.pseudonym(str(user_id), SINK)
            if old == subject:
                continue
            found = self._lookup(old)
            if found is None or found.empty:
                continue
            try:
                self._update(subject, partial(_merged, moved=found))
                self._update(old, lambda record, now: Record(record.subject))
            except RegistryUnavailable:
                break
            logger.info("piimw: a registry record moved to the current hash key (%s)",
                        subject.partition(".")[0])
        return subject

    # -- reads ------------------------------------------------------------------------------
    def _load(self, subject: str) -> Record:
        cache, store = self.cache, self.store
        if cache is not None:
            generation = cache.generation  # before the checks: see Cache
            if store.cache_usable():
                record = cache.get(subject)
                if record is not None and cache.generation == generation:
                    self.hits += 1
                    return record
                self.misses += 1
                record = store.load(subject)
                cache.put(subject, record, generation)
                return record
        self.misses += 1
        return store.load(subject)

    def record(self, subject: str) -> Record:
        """The subject's full record. Raises :class:`RegistryUnavailable`; never fails closed."""
        _check_subject(subject)
        try:
            record = self._load(subject)
        except UnreadableRecord:
            self._unreadable()
            raise RecordUnreadable("a registry record is unreadable") from None
        except StoreError as e:
            self._failed(e)
            raise RegistryUnavailable("the opt-out registry is unavailable") from None
        self._recovered()
        return record

    def _lookup(self, subject: str) -> Record | None:
        """The record, or None while the backend is unreachable (already logged)."""
        outage = self._outage
        if outage is not None and time.monotonic() < outage.next_probe:
            outage.failures += 1
            return None
        try:
            record = self._load(subject)
        except UnreadableRecord:
            self._unreadable()
            return None
        except StoreError as e:
            self._failed(e)
            return None
        if self._outage is not None:
            self._recovered()
        return record

    def get(self, subject: str) -> Consent:
        """The subject's consent per the registry; opted out of all but essential if down."""
        _check_subject(subject)
        record = self._lookup(subject)
        if record is None:
            return self._closed(subject)
        return record.consent

    def _closed(self, subject: str | None) -> Consent:
        self.failed_closed += 1
        return Consent.opt_out(NON_ESSENTIAL, signal="registry", subject=subject)

    # -- outage bookkeeping (logged once per incident, no subject, no URL) -------------------
    def _failed(self, error: StoreError) -> None:
        now = time.monotonic()
        with self._lock:
            if self._outage is None:
                self._outage = _Outage(started=now, next_probe=now + self.retry_interval)
                first = True
            else:
                self._outage.failures += 1
                self._outage.next_probe = now + self.retry_interval
                first = False
        if first:  # the error names the backend's failure, never a subject or a value
            logger.error("piimw: opt-out registry (%s) unavailable (%s); signed-in requests "
                         "count as opted out of all non-essential uses until it answers again",
                         self.store.kind, error)

    def _recovered(self) -> None:
        with self._lock:
            outage, self._outage = self._outage, None
        if outage is not None:
            logger.warning("piimw: opt-out registry (%s) available again after %.1fs; "
                           "%d lookup(s) failed closed meanwhile", self.store.kind,
                           time.monotonic() - outage.started, outage.failures)

    def _unreadable(self) -> None:
        """One subject's record cannot be parsed: that subject fails closed, nobody else does.

        The backend answered, so this ends an outage. Logged at most once a minute.
        """
        self._recovered()
        now = time.monotonic()
        if now < self._unreadable_logged + 60.0:
            return
        self._unreadable_logged = now
        logger.error("piimw: an opt-out registry (%s) record is unreadable; its subject counts "
                     "as opted out of all non-essential uses until the record is cleared",
                     self.store.kind)

    @property
    def available(self) -> bool:
        return self._outage is None

    # -- writes -----------------------------------------------------------------------------
    def _update(self, subject: str, change: Change) -> tuple[Record, bool]:
        _check_subject(subject)
        try:
            record, changed = self.store.update(subject, change)
        except UnreadableRecord:
            self._unreadable()
            raise RecordUnreadable("a registry record is unreadable") from None
        except StoreError as e:
            self._failed(e)
            raise RegistryUnavailable("the opt-out registry is unavailable") from None
        if changed and self.cache is not None:
            self.cache.invalidate(subject)
        self._recovered()
        return record, changed

    def opt_out(self, subject: str, uses: Iterable[str] = (), categories: Iterable[str] = (), *,
                signal: str = "api", only_new: bool = False) -> Record:
        """Record that ``signal`` opted the subject out of ``uses`` and ``categories``.

        ``only_new`` keeps the time an opt-out by this signal was first seen (write-through
        of a signal repeated on every request), so that a later explicit opt-in still wins.
        """
        _check_signal(signal)
        items = _items(_uses(uses, opt_out=True), _categories(categories))

        def change(record: Record, now: float) -> Record:
            at = _after(record, now)
            out = dict(record.out)
            for kind, name in items:
                key = (kind, name, signal)
                if not (only_new and key in out):
                    out[key] = at
            return Record(record.subject, out, record.opt_in)

        return self._update(subject, change)[0]

    def opt_in(self, subject: str, uses: Iterable[str] = (), categories: Iterable[str] = (), *,
               signal: str = "api") -> Record:
        """Record an explicit opt-in: it overrides every opt-out recorded before it."""
        _check_signal(signal)
        items = _items(_uses(uses, opt_out=False), _categories(categories))

        def change(record: Record, now: float) -> Record:
            at = _after(record, now)
            opt_in = dict(record.opt_in)
            for item in items:
                opt_in[item] = (at, signal)
            return Record(record.subject, record.out, opt_in)

        return self._update(subject, change)[0]

    def set_preferences(self, subject: str, *, opt_out_uses: Iterable[str] = (),
                        opt_out_categories: Iterable[str] = (), opt_in_uses: Iterable[str] = (),
                        signal: str = "api") -> Record:
        """Replace the subject's explicit choices made through ``signal`` (the opt-out API).

        Opt-outs recorded from other signals (a sticky GPC) stay; an opt-in listed here is
        newer than them and so overrides them, as the user asked.
        """
        _check_signal(signal)
        outs = set(_items(_uses(opt_out_uses, opt_out=True), _categories(opt_out_categories)))
        ins = {("use", u) for u in _uses(opt_in_uses, opt_out=False)}
        if outs & ins:
            raise ValueError("the same use is both opted out of and opted in to")

        def change(record: Record, now: float) -> Record:
            at = _after(record, now)
            out = {k: v for k, v in record.out.items() if k[2] != signal or k[:2] in outs}
            effective = record.effective_out()
            for kind, name in outs:
                if signal not in effective.get((kind, name), {}):
                    out[(kind, name, signal)] = at
            opt_in = {item: (at, signal) for item in ins}
            return Record(record.subject, out, opt_in)

        return self._update(subject, change)[0]

    def clear(self, subject: str) -> bool:
        """Forget everything about the subject. True if there was anything.

        The record is deleted unread, so that one that cannot be parsed can still be cleared.
        """
        _check_subject(subject)
        try:
            removed = self.store.remove(subject)
        except StoreError as e:
            self._failed(e)
            raise RegistryUnavailable("the opt-out registry is unavailable") from None
        if removed and self.cache is not None:
            self.cache.invalidate(subject)
        self._recovered()
        return removed

    # -- per-request resolution ---------------------------------------------------------------
    def consent_for(self, subject: str | None, header_consent: Consent = DEFAULT, *,
                    session: Consent | None = None) -> Consent:
        """Headers, then session, then registry: most restrictive wins; the winning signal is kept.

        One exception, by the subject's own timestamped choice: an explicit opt-in recorded
        after every signal that could have opted them out of an item lifts that item, even if
        the signal is still sent (the user was told of the conflict and chose).
        """
        base = header_consent if session is None else header_consent.merge(session)
        if subject is None:
            return base
        _check_subject(subject)
        record = self._lookup(subject)
        if record is None:
            return _with_subject(base.merge(self._closed(subject)), subject)
        if self.write_through:
            new = [s for s in WRITE_THROUGH if s in base.signals
                   and any(("use", u, s) not in record.out for u in SIGNAL_COVERAGE[s])]
            for signal in new:
                try:
                    record = self.opt_out(subject, SIGNAL_COVERAGE[signal], signal=signal,
                                          only_new=True)
                except RegistryUnavailable:
                    return _with_subject(base.merge(self._closed(subject)), subject)
        base = _honour_opt_ins(base, record)
        return _with_subject(base.merge(record.consent), subject)

    # -- housekeeping -----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {**self.store.stats(), "cache": self.cache is not None,
                "cached": len(self.cache) if self.cache is not None else 0,
                "hits": self.hits, "misses": self.misses, "failed_closed": self.failed_closed,
                "available": self.available}

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        if self.cache is not None:
            self.cache.after_fork()
        self.store.after_fork()

    def close(self) -> None:
        self.store.close()
        _live.discard(self)

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _merged(current: Record, now: float, *, moved: Record) -> Record:
    """``current`` plus what ``moved`` recorded; where both hold an entry, the later wins."""
    out = dict(current.out)
    for key, at in moved.out.items():
        out[key] = max(at, out.get(key, at))
    opt_in = dict(current.opt_in)
    for item, got in moved.opt_in.items():
        mine = opt_in.get(item)
        if mine is None or got[0] > mine[0]:
            opt_in[item] = got
    return Record(current.subject, out, opt_in)


def _with_subject(consent: Consent, subject: str) -> Consent:
    if consent.subject == subject:
        return consent
    return Consent(subject=subject, opted_out_uses=consent.opted_out_uses,
                   opted_out_categories=consent.opted_out_categories,
                   opted_in=consent.opted_in, sources=consent.sources, signals=consent.signals)


def _may_cover(signal: str, kind: str, name: str) -> bool:
    coverage = SIGNAL_COVERAGE.get(signal)
    if coverage is None:
        return True  # unknown reach: assume it covers the item
    if kind != "use":
        return False
    return any(use_within(name, u) or use_within(u, name) for u in coverage)


def _honour_opt_ins(base: Consent, record: Record) -> Consent:
    """Lift signal opt-outs that the subject overrode by an explicit, later opt-in."""
    if not record.opt_in or not (base.opted_out_uses or base.opted_out_categories):
        return base
    lifted: set[str] = set()
    for kind, names in (("use", base.opted_out_uses), ("category", base.opted_out_categories)):
        for name in names:
            got = record.opt_in.get((kind, name))
            if got is None:
                continue
            ok = True
            for signal in base.signals:
                if not _may_cover(signal, kind, name):
                    continue
                at = record.out.get((kind, name, signal))
                if at is None or at >= got[0]:
                    ok = False
                    break
            if ok:
                lifted.add(name)
    if not lifted:
        return base
    return Consent(
        subject=base.subject, opted_out_uses=base.opted_out_uses - lifted,
        opted_out_categories=base.opted_out_categories - lifted, opted_in=base.opted_in,
        sources=tuple((k, s) for k, s in base.sources if k not in lifted),
        signals=base.signals)


def registry_url(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None, *,
                 source: str = "<config>") -> str:
    """The backend URL from ``url`` or from the environment variable named by ``url_env``.

    Credentials never go in configuration: a URL with a password must come from the
    environment. Without either, the embedded default ``sqlite:///piimw-registry.db``.
    """
    env = os.environ if environ is None else environ
    if "url_env" in raw:
        url = env.get(str(raw["url_env"]))
        if not url:
            raise ConfigError(f"the environment variable {raw['url_env']} holding the registry "
                              "URL is not set", source=source, pointer="/registry/url_env")
        _check_redis_url(url, source=source, pointer="/registry/url_env")
        return url
    url = str(raw.get("url", "sqlite:///piimw-registry.db"))
    rest = url.partition("://")[2]
    netloc = rest.split("/", 1)[0]
    if "@" in netloc or "password=" in rest.lower():
        raise ConfigError("secrets never go in configuration; put a registry URL with "
                          "credentials in the environment variable named by registry.url_env",
                          source=source, pointer="/registry/url")
    _check_redis_url(url, source=source, pointer="/registry/url")
    return url


def _check_redis_url(url: str, *, source: str, pointer: str) -> None:
    """Refuse a Redis URL that redis-py cannot parse at load time, not on the first request.

    redis-py's own error quotes the part it could not parse, which for a password holding
    '/' or '#' is part of the password: it is never shown.
    """
    if url.partition("://")[0].lower() not in ("redis", "rediss", "unix"):
        return
    try:
        from redis.connection import parse_url
    except ImportError:  # pragma: no cover - open_store names the missing extra
        return
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except (ValueError, TypeError):
        raise ConfigError("invalid redis registry URL (a '/' or '#' in the password must be "
                          "percent-encoded)", source=source, pointer=pointer) from None


__all__ = ["KINDS", "REGISTRY_SCHEMA", "SINK", "RecordUnreadable", "Registry",
           "RegistryUnavailable", "is_subject", "registry_category", "registry_url",
           "registry_use"]
