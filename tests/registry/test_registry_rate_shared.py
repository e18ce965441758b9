"""The opt-out API's rate limit is one bucket per subject for every worker and host.

Two registries on one backend stand for two worker processes (each has its own connections;
SQLite and Redis share the bucket, ``memory://`` is per process by definition). While the
backend cannot be reached, each process's own bucket still limits.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest
from registry_support import rate_child

from piimw.optout_api import APISettings, OptOutAPI
from piimw.registry import Registry
from piimw.stores import StoreError, refill

SAME = [(b"sec-fetch-site", b"same-origin")]
LIMIT = APISettings(rate_per_minute=6, burst=3)  # a token every 10 s


def test_workers_share_one_bucket(backend: str, make_registry: Callable[..., Registry]) -> None:
    first, second = OptOutAPI(make_registry(), LIMIT), OptOutAPI(make_registry(), LIMIT)
    assert [first.handle("GET", "alice", b"", SAME)[0] for _ in range(2)] == [200, 200]
    assert second.handle("GET", "alice", b"", SAME)[0] == 200
    status, headers, _ = second.handle("GET", "alice", b"", SAME)
    if backend == "memory":  # per process: the second worker's bucket is still full
        assert status == 200
        return
    assert status == 429
    retry = dict(headers)[b"retry-after"]
    assert 1 <= int(retry) <= 10
    assert first.handle("GET", "alice", b"", SAME)[0] == 429
    assert first.handle("GET", "bob", b"", SAME)[0] == 200  # buckets are per subject


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_worker_processes_share_one_bucket(store_url: str, request: pytest.FixtureRequest) -> None:
    """Three spawned processes, four requests each, one user: five (the burst) are served."""
    prefix = request.getfixturevalue("redis_prefix") if store_url.startswith("redis") else "x"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(rate_child, [(store_url, prefix, 4)] * 3, chunksize=1)
    statuses = [s for r in results for s in r]
    assert sorted(set(statuses)) == [200, 429]
    assert statuses.count(200) == 5, statuses  # a token every 10 s: none refilled in time


def test_a_backend_that_cannot_be_reached_leaves_the_process_bucket(
        make_registry: Callable[..., Registry], monkeypatch: pytest.MonkeyPatch) -> None:
    registry = make_registry()

    def down(*args: Any) -> float:
        raise StoreError("unavailable")

    monkeypatch.setattr(registry.store, "take_token", down)
    api = OptOutAPI(registry, LIMIT)
    assert [api.handle("GET", "alice", b"", SAME)[0] for _ in range(4)][-1] == 429


@pytest.mark.parametrize(("tokens", "last", "now", "expected"), [
    (None, None, 100.0, (2.0, 0.0)),     # a new bucket is full
    (0.0, 100.0, 100.0, (0.0, 10.0)),    # empty: a token in 10 s
    (0.0, 100.0, 105.0, (0.5, 5.0)),     # half refilled
    (0.0, 100.0, 1000.0, (2.0, 0.0)),    # refilled up to the burst, one taken
    (1.0, 100.0, 90.0, (0.0, 0.0)),      # a clock that went back refills nothing
])
def test_refill(tokens: float | None, last: float | None, now: float,
                expected: tuple[float, float]) -> None:
    assert refill(tokens, last, now, 0.1, 3.0) == pytest.approx(expected)
