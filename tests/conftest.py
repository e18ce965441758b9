from __future__ import annotations

import pytest


@pytest.fixture
def hash_env(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "test-key-0123456789abcdef"
    monkeypatch.setenv("PIIMW_HASH_KEY", key)
    return key
