"""Shared constants and helpers for tests/registry (importable by the spawned children too)."""

from __future__ import annotations

import os

REDIS_URL = os.environ.get("PIIMW_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
KEY = "registry-test-key-0123456789"


def child_main(url: str, prefix: str, conn: object, reads: int) -> None:
    """A worker process holding its own cached registry; reads on command, counts staleness.

    Protocol over the pipe: parent sends ``"warm"`` (read until the cache holds the current
    state), then changes the registry, then sends ``("check", opted_out)``; ``"stop"`` ends.
    """
    import time
    from multiprocessing.connection import Connection

    from piimw.registry import Registry
    from piimw.transform import Hasher

    assert isinstance(conn, Connection)
    registry = Registry(url, Hasher(KEY, "t1"), key_prefix=prefix)
    subject = registry.subject_for("multiprocess")
    stale = total = 0
    try:
        deadline = time.monotonic() + 10
        while registry.store.kind == "redis" and not registry.stats().get("subscribed"):
            registry.get(subject)
            if time.monotonic() > deadline:
                raise RuntimeError("listener never subscribed")
            time.sleep(0.01)
        conn.send("ready")
        while True:
            message = conn.recv()
            if message == "stop":
                break
            if message == "warm":
                for _ in range(3):
                    registry.get(subject)
                conn.send("warm")
                continue
            _, expected = message
            for _ in range(reads):
                got = "analytics" in registry.get(subject).opted_out_uses
                total += 1
                stale += got != expected
            conn.send("checked")
        conn.send({"stale": stale, "total": total, "hits": registry.hits,
                   "misses": registry.misses})
    finally:
        registry.close()
        conn.close()


def rate_child(url: str, prefix: str, requests: int) -> list[int]:
    """A worker process with its own registry and opt-out API: the statuses of ``requests``
    GETs by one user (rate limit: 6 a minute, a burst of 5)."""
    from piimw.optout_api import APISettings, OptOutAPI
    from piimw.registry import Registry
    from piimw.transform import Hasher

    with Registry(url, Hasher(KEY, "t1"), key_prefix=prefix) as registry:
        api = OptOutAPI(registry, APISettings(rate_per_minute=6, burst=5))
        same = [(b"sec-fetch-site", b"same-origin")]
        return [api.handle("GET", "rate-user", b"", same)[0] for _ in range(requests)]
