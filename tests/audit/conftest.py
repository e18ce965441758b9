from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_helpers import KEY, make_config, trail_for, write_schemas

from piimw.audit import AuditTrail
from piimw.audit.records import AuditKey
from piimw.config import Config


@pytest.fixture
def audit_key(monkeypatch: pytest.MonkeyPatch) -> AuditKey:
    monkeypatch.setenv("PIIMW_AUDIT_KEY", KEY)
    return AuditKey(KEY)


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    return write_schemas(tmp_path)


@pytest.fixture
def config(schemas: Path) -> Config:
    return make_config(schemas)


@pytest.fixture
def jsonl_trail(tmp_path: Path, audit_key: AuditKey) -> Iterator[AuditTrail]:
    trail = trail_for(f"jsonl://{tmp_path}/audit.jsonl", audit_key, checkpoint_every=5)
    yield trail
    trail.close()
