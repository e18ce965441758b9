from __future__ import annotations

from collections.abc import Iterator

import pytest

from piimw import exchange


@pytest.fixture
def hash_env(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "test-key-0123456789abcdef"
    monkeypatch.setenv("PIIMW_HASH_KEY", key)
    return key


@pytest.fixture(autouse=True)
def _no_request_left_current() -> Iterator[None]:
    """Every test ends its requests (closes its responses): a request left current would
    change what later tests' log lines and events see."""
    yield
    left = exchange.current()
    if left is not None:
        exchange._current.set(None)  # so that one test's mistake fails only that test
        pytest.fail(f"request {left.method} {left.path} left current (close its response)")
