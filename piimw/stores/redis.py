"""Redis registry backend: one registry for many hosts, per-process caches kept correct.

Each subject is a hash ``<prefix>:registry:<subject>``. A write is a WATCH/MULTI transaction
that also PUBLISHes the subject on an invalidation channel, then one more round trip (a fence)
so that Redis has written the invalidation to every subscriber before the writer returns.

Each process runs one listener thread subscribed to that channel. A cached lookup trusts the
cache only while the listener is subscribed and no invalidation is waiting, unread, on its
socket or half-processed in the thread (a read barrier), so a change is seen on the very next
lookup once its invalidation has reached this host. On any connection loss the whole cache is
dropped and bypassed until the listener has subscribed again.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from typing import Any, ClassVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError, WatchError
from redis.retry import Retry

from piimw.errors import ConfigError
from piimw.stores import Cache, Change, Record, Store, StoreError, UnreadableRecord

_POLLIN = select.POLLIN | select.POLLPRI

#: One token bucket step (piimw.stores.refill) in Redis. Floats travel as strings: Redis
#: turns a Lua number reply into an integer.
_TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = tonumber(b[1]), tonumber(b[2])
local have = burst
if tokens and last then have = math.min(burst, tokens + math.max(0, now - last) * rate) end
local wait = 0
if have >= 1 then have = have - 1 else wait = (1 - have) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(have), 'last', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _failure(e: RedisError) -> StoreError:
    """A key of another type than a hash under the registry's prefix (a foreign or damaged
    write) is that subject's unreadable record, not an outage of the registry."""
    if isinstance(e, ResponseError) and str(e).startswith("WRONGTYPE"):
        return UnreadableRecord("a registry record is unreadable")
    return StoreError(f"redis registry unavailable ({type(e).__name__})")


def _record(subject: str, raw: Any) -> Record:
    """Parse a hash as read; bytes that are not UTF-8 make it unreadable like any bad field."""
    try:
        fields = {_text(k): _text(v) for k, v in raw.items()}
    except UnicodeDecodeError:
        raise UnreadableRecord("a registry record is unreadable") from None
    return Record.from_fields(subject, fields)


class RedisStore(Store):
    """Registry records in Redis; cache invalidation over pub/sub."""

    kind: ClassVar[str] = "redis"

    def __init__(self, url: str, *, key_prefix: str = "piimw", timeout: float = 0.5,
                 ping_interval: float = 1.0) -> None:
        # RESP2: pub/sub messages arrive as plain replies the listener reads itself.
        try:
            self._pool: redis.ConnectionPool = redis.ConnectionPool.from_url(
                url, protocol=2, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1), health_check_interval=0)
        except (ValueError, TypeError):
            # redis-py quotes the part it could not parse: with a '/' or '#' in the password,
            # that is part of the password. Never the URL, never the cause.
            raise ConfigError("invalid redis registry URL (a '/' or '#' in the password must "
                              "be percent-encoded)", pointer="/registry/url") from None
        self._client = redis.Redis(connection_pool=self._pool)
        db = self._pool.connection_kwargs.get("db", 0)
        self._prefix = f"{key_prefix}:registry:"
        self._rate_prefix = f"{key_prefix}:rate:"
        self._take = self._client.register_script(_TAKE_TOKEN)
        # Channels are global across databases: name the database in the channel.
        self.channel = f"{key_prefix}:registry:db{db}:invalidate"
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._cache: Cache | None = None
        self._listener: _Listener | None = None
        self._listener_lock = threading.Lock()
        self._closed = False

    def key(self, subject: str) -> str:
        return self._prefix + subject

    # -- reads and writes -------------------------------------------------------------------
    def load(self, subject: str) -> Record:
        try:
            raw = self._client.hgetall(self.key(subject))
        except RedisError as e:
            raise _failure(e) from None
        return _record(subject, raw)

    def update(self, subject: str, change: Change) -> tuple[Record, bool]:
        key = self.key(subject)
        try:
            with self._client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)  # type: ignore[no-untyped-call]
                        raw = pipe.hgetall(key)
                        current = _record(subject, raw)
                        sec, usec = pipe.time()  # one clock for every host
                        new = change(current, sec + usec / 1e6)
                        if new == current:
                            pipe.unwatch()
                            return current, False
                        pipe.multi()
                        pipe.delete(key)
                        fields: dict[Any, Any] = new.fields()
                        if fields:
                            pipe.hset(key, mapping=fields)
                        pipe.publish(self.channel, subject)
                        pipe.execute()
                        break
                    except WatchError:
                        continue
            # Fence: Redis answers this only after it has flushed the replies of the
            # transaction's event-loop turn, the invalidation to every subscriber included.
            self._client.ping()
        except RedisError as e:
            raise _failure(e) from None
        return new, True

    def remove(self, subject: str) -> bool:
        """DELETE and PUBLISH in one transaction, then the fence, as :meth:`update` does."""
        try:
            with self._client.pipeline() as pipe:
                pipe.delete(self.key(subject))
                pipe.publish(self.channel, subject)
                deleted = pipe.execute()[0]
            self._client.ping()
        except RedisError as e:
            raise StoreError(f"redis registry unavailable ({type(e).__name__})") from None
        return bool(deleted)

    def take_token(self, key: str, rate: float, burst: float) -> float | None:
        """The bucket is a hash ``<prefix>:rate:<key>``, changed by one script on Redis's
        clock (one clock for every host); it expires once it would be full again."""
        try:
            wait = self._take(keys=[self._rate_prefix + key], args=[repr(rate), repr(burst)])
        except RedisError as e:
            raise StoreError(f"redis registry unavailable ({type(e).__name__})") from None
        return float(wait)

    def ping(self) -> None:
        try:
            self._client.ping()
        except RedisError as e:
            raise StoreError(f"redis registry unavailable ({type(e).__name__})") from None

    # -- cache ------------------------------------------------------------------------------
    def attach(self, cache: Cache) -> None:
        self._cache = cache

    def cache_usable(self) -> bool:
        listener = self._listener
        if listener is None or not listener.is_alive():
            self._start_listener()
            return False
        return listener.ready()

    def _start_listener(self) -> None:
        cache = self._cache
        if cache is None or self._closed:
            return
        with self._listener_lock:
            old = self._listener
            if old is not None and old.is_alive():
                return
            if old is not None:
                old.stop()
            listener = _Listener(self._pool, self.channel, cache, self._timeout,
                                 self._ping_interval)
            listener.start()
            self._listener = listener

    def stats(self) -> dict[str, Any]:
        listener = self._listener
        return {"backend": self.kind,
                "subscribed": bool(listener is not None and listener.healthy),
                "resubscriptions": listener.subscriptions if listener is not None else 0}

    def after_fork(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.forget()
        self._listener_lock = threading.Lock()
        # redis-py's pool notices the new pid by itself and opens fresh connections.

    def close(self) -> None:
        self._closed = True
        with self._listener_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        self._client.close()
        self._pool.disconnect()


class _Listener(threading.Thread):
    """Keeps one process's cache correct: subscribed, or the cache is bypassed."""

    def __init__(self, pool: redis.ConnectionPool, channel: str, cache: Cache, timeout: float,
                 ping_interval: float) -> None:
        super().__init__(name="piimw-registry-invalidation", daemon=True)
        self._pool = pool
        self._channel = channel.encode()
        self._cache = cache
        self._timeout = timeout
        self._ping_interval = ping_interval
        self._halt = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._conn: Any = None
        self._local = threading.local()
        # Read by lookups without a lock (single attribute reads are atomic).
        self.healthy = False
        self.busy = False
        self.fd = -1
        self.subscriptions = 0

    # -- the read barrier -------------------------------------------------------------------
    def ready(self) -> bool:
        """True if nothing can invalidate the cache that has not been applied yet.

        The socket is polled before ``busy`` is read: the thread sets ``busy`` before it
        takes bytes off the socket, so a message is always visible in one place or the other.
        """
        if not self.healthy:
            return False
        fd = self.fd
        if fd < 0:
            return False
        poller = getattr(self._local, "poller", None)
        if poller is None or self._local.fd != fd:
            poller = select.poll()
            poller.register(fd, _POLLIN)
            self._local.poller, self._local.fd = poller, fd
        if poller.poll(0):
            return False
        return not self.busy and self.healthy

    # -- the thread -------------------------------------------------------------------------
    def run(self) -> None:
        delay = 0.02
        while not self._halt.is_set():
            try:
                self._subscribe()
                delay = 0.02
                self._serve()
            except Exception:  # any failure: drop the cache, reconnect with backoff
                pass
            finally:
                self._down()
            if self._halt.wait(delay):
                break
            delay = min(delay * 2, 1.0)

    def _subscribe(self) -> None:
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        self._conn = conn
        conn.connect()
        conn.send_command("SUBSCRIBE", self._channel)
        reply = conn.read_response()
        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
            raise ConnectionError("unexpected reply to SUBSCRIBE")
        sock = getattr(conn, "_sock", None)
        fileno = getattr(sock, "fileno", None)
        if fileno is None:
            raise ConnectionError("no socket to watch")
        self.fd = int(fileno())
        # Anything cached before this point may have missed an invalidation.
        self._cache.clear()
        self.healthy = True
        self.subscriptions += 1

    def _serve(self) -> None:
        conn = self._conn
        poller = select.poll()
        poller.register(self.fd, _POLLIN)
        poller.register(self._wake_r, _POLLIN)
        next_ping = time.monotonic() + self._ping_interval
        pong_due: float | None = None
        while not self._halt.is_set():
            wait = max(0.0, (pong_due or next_ping) - time.monotonic())
            events = poller.poll(int(wait * 1000) + 1)
            if self._halt.is_set():
                return
            if any(fd == self.fd for fd, _ in events):
                self.busy = True  # before any byte leaves the socket: see ready()
                while conn.can_read(timeout=0):
                    reply = conn.read_response()
                    if isinstance(reply, list) and reply and reply[0] == b"message":
                        subject = _text(reply[2])
                        if subject == "*":
                            self._cache.clear()
                        else:
                            self._cache.invalidate(subject)
                    elif isinstance(reply, list) and reply and reply[0] == b"pong":
                        pong_due = None
                self.busy = False
            now = time.monotonic()
            if pong_due is not None and now > pong_due:
                raise TimeoutError("invalidation channel did not answer PING")
            if pong_due is None and now >= next_ping:
                conn.send_command("PING")
                pong_due = now + max(self._timeout, 0.5)
                next_ping = now + self._ping_interval

    def _down(self) -> None:
        self.healthy = False  # first: lookups stop trusting the cache
        self._cache.clear()
        self.fd = -1
        self.busy = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()

    def stop(self) -> None:
        self._halt.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget(self) -> None:
        """In a forked child: the thread does not exist here; release what it held."""
        self.healthy = False
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()  # redis-py skips shutdown() in a process that did not connect
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
