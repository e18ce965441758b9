"""Fixtures for the registry tests: one suite over memory, a real SQLite file and real Redis.

Redis tests use a dedicated database (``PIIMW_TEST_REDIS_URL``, default db 11) and a key prefix
unique to the test, and delete their keys afterwards; they are never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from registry_support import KEY, REDIS_URL

from piimw.registry import Registry
from piimw.transform import Hasher


@pytest.fixture
def hasher() -> Hasher:
    return Hasher(KEY, "t1")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    prefix = f"piimwtest-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL that every registry of the test shares (memory: a named in-process store)."""
    if backend == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return REDIS_URL


@pytest.fixture
def make_registry(
    store_url: str, hasher: Hasher, request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Registry]]:
    """Build registries on the test's backend; all are closed at teardown."""
    made: list[Registry] = []
    prefix = request.getfixturevalue("redis_prefix") if store_url.startswith("redis") else "x"

    def make(**kwargs: Any) -> Registry:
        kwargs.setdefault("key_prefix", prefix)
        registry = Registry(store_url, hasher, **kwargs)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.close()
