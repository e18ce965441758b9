"""Backend outages: fail closed, log once per incident (no subject), recover by itself.

Redis: a private redis-server on a free port (the shared one must keep running) is killed
mid-run and started again. SQLite: an exclusive lock held by another connection, and a
registry file replaced by garbage and later restored from a backup.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from piimw.consent import NON_ESSENTIAL, from_headers
from piimw.registry import Registry, RegistryUnavailable
from piimw.transform import Hasher

FAIL_CLOSED = frozenset(NON_ESSENTIAL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server process: no persistence, killed and restarted at will."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            client = redis.Redis.from_url(self.url, socket_timeout=0.2)
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _wait(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "piimw.registry" and r.levelno >= logging.ERROR]


def _recoveries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "piimw.registry"
            and r.levelno == logging.WARNING and "available again" in r.getMessage()]


@pytest.mark.redis
def test_redis_down_fails_closed_and_recovers(private_redis: RedisServer, hasher: Hasher,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="piimw.registry")
    registry = Registry(private_redis.url, hasher, retry_interval=0.05, timeout=0.2)
    other = Registry(private_redis.url, hasher, retry_interval=0.05, timeout=0.2)
    try:
        subject = registry.subject_for("outage")
        registry.opt_out(subject, ["marketing"])
        _wait(lambda: registry.get(subject) is not None and bool(registry.stats()["subscribed"]))
        for _ in range(5):
            assert registry.get(subject).opted_out_uses == {"marketing"}
        assert registry.hits > 0  # served from the cache before the outage

        private_redis.kill()  # mid-run
        results = [registry.get(subject) for _ in range(50)]
        results += [registry.consent_for(subject, from_headers([])) for _ in range(50)]
        assert all(c.opted_out_uses == FAIL_CLOSED for c in results)
        assert all(c.opted_out_of("essential") is None for c in results)
        assert all(c.opted_out_of("analytics") == "registry" for c in results)
        with pytest.raises(RegistryUnavailable):
            registry.opt_out(subject, ["analytics"])
        time.sleep(0.2)  # several retry intervals: probes fail too, still one log line
        assert registry.get(subject).opted_out_uses == FAIL_CLOSED
        assert registry.stats()["subscribed"] is False
        assert len(_errors(caplog)) == 1
        assert registry.available is False

        private_redis.start()  # same port, empty (no persistence)
        _wait(lambda: registry.get(subject).opted_out_uses != FAIL_CLOSED)
        assert registry.get(subject).is_default  # the new server lost the data: honest result
        assert len(_recoveries(caplog)) == 1
        assert len(_errors(caplog)) == 1

        # Invalidation works again: the listener resubscribed, and caching resumed.
        _wait(lambda: bool(registry.get(subject) and registry.stats()["subscribed"]))
        assert registry.stats()["resubscriptions"] >= 2
        hits = registry.hits
        registry.get(subject)
        assert registry.hits == hits + 1
        other.opt_out(subject, ["analytics"])
        assert registry.get(subject).opted_out_uses == {"analytics"}
        for record in caplog.records:
            assert subject not in record.getMessage()
            assert str(private_redis.port) not in record.getMessage()
    finally:
        registry.close()
        other.close()


@pytest.mark.redis
def test_redis_never_reachable_fails_closed(hasher: Hasher,
                                            caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(f"redis://127.0.0.1:{_free_port()}/0", hasher, retry_interval=0.05,
                        timeout=0.1)
    try:
        subject = registry.subject_for("nobody")
        with caplog.at_level(logging.INFO, logger="piimw.registry"):
            for _ in range(20):
                assert registry.get(subject).opted_out_uses == FAIL_CLOSED
        assert len(_errors(caplog)) == 1
        # Anonymous requests do not touch the registry: unaffected by the outage.
        assert registry.consent_for(None, from_headers([])).is_default
    finally:
        registry.close()


def test_sqlite_exclusive_lock_fails_closed_then_recovers(
        tmp_path: Path, hasher: Hasher, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="piimw.registry")
    path = tmp_path / "registry.db"
    setup = Registry(f"sqlite:///{path}", hasher)
    subject = setup.subject_for("locked")
    setup.opt_out(subject, ["marketing"])
    setup.close()

    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("PRAGMA locking_mode = EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    registry = Registry(f"sqlite:///{path}", hasher, retry_interval=0.05, timeout=0.05)
    try:
        for _ in range(20):
            assert registry.get(subject).opted_out_uses == FAIL_CLOSED
        with pytest.raises(RegistryUnavailable):
            registry.opt_in(subject, ["marketing"])
        assert len(_errors(caplog)) == 1
        # The log names SQLite's error code (what the operator needs), never the subject.
        message = _errors(caplog)[0].getMessage()
        assert "OperationalError" in message
        if sys.version_info >= (3, 11):  # sqlite3 errors carry their code from 3.11
            assert "SQLITE_BUSY" in message
        assert subject not in message
        locker.execute("COMMIT")
        locker.close()  # releases the exclusive lock
        _wait(lambda: registry.get(subject).opted_out_uses != FAIL_CLOSED)
        assert registry.get(subject).opted_out_uses == {"marketing"}
        assert len(_recoveries(caplog)) == 1
        assert len(_errors(caplog)) == 1
    finally:
        registry.close()
        locker.close()


def test_sqlite_write_lock_blocks_writes_not_reads(tmp_path: Path, hasher: Hasher) -> None:
    """WAL: a writer holding the lock does not stop lookups; a write times out cleanly."""
    path = tmp_path / "registry.db"
    registry = Registry(f"sqlite:///{path}", hasher, retry_interval=0.05, timeout=0.05)
    subject = registry.subject_for("w")
    registry.opt_out(subject, ["marketing"])
    registry.store._write_timeout = 0.1  # type: ignore[attr-defined]
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert registry.get(subject).opted_out_uses == {"marketing"}
        with pytest.raises(RegistryUnavailable):
            registry.opt_out(subject, ["analytics"])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    _wait(lambda: registry.get(subject).opted_out_uses == {"marketing"})
    registry.opt_out(subject, ["analytics"])
    assert registry.get(subject).opted_out_uses == {"marketing", "analytics"}
    registry.close()


def test_sqlite_file_corrupted_then_restored(tmp_path: Path, hasher: Hasher,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="piimw.registry")
    path = tmp_path / "registry.db"
    registry = Registry(f"sqlite:///{path}", hasher, retry_interval=0.05)
    other = Registry(f"sqlite:///{path}", hasher, retry_interval=0.05)
    try:
        subject = registry.subject_for("corrupt")
        registry.opt_out(subject, ["marketing"])
        for _ in range(3):
            assert registry.get(subject).opted_out_uses == {"marketing"}
        backup = tmp_path / "backup.db"
        src = sqlite3.connect(path)
        dst = sqlite3.connect(backup)
        src.backup(dst)
        src.close()
        dst.close()

        # The file is replaced by garbage mid-run (a bad restore, a broken disk).
        garbage = tmp_path / "garbage"
        garbage.write_bytes(os.urandom(16384))
        os.replace(garbage, path)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        for _ in range(20):
            assert registry.get(subject).opted_out_uses == FAIL_CLOSED
            assert other.consent_for(subject, from_headers([])).opted_out_uses == FAIL_CLOSED
        assert len(_errors(caplog)) == 2  # one per registry (per process, in real life)

        restored = tmp_path / "restored.db"
        shutil.copy(backup, restored)
        os.replace(restored, path)
        _wait(lambda: registry.get(subject).opted_out_uses == {"marketing"})
        _wait(lambda: other.get(subject).opted_out_uses == {"marketing"})
        other.opt_out(subject, ["analytics"])
        assert registry.get(subject).opted_out_uses == {"marketing", "analytics"}
        assert len(_recoveries(caplog)) == 2
        assert len(_errors(caplog)) == 2
        for record in caplog.records:
            assert subject not in record.getMessage()
            assert str(path) not in record.getMessage()
    finally:
        registry.close()
        other.close()


def test_sqlite_file_deleted_is_an_outage_not_an_empty_registry(
        tmp_path: Path, hasher: Hasher) -> None:
    path = tmp_path / "registry.db"
    registry = Registry(f"sqlite:///{path}", hasher, retry_interval=0.0)
    try:
        subject = registry.subject_for("deleted")
        registry.opt_out(subject, ["marketing"])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        assert registry.get(subject).opted_out_uses == FAIL_CLOSED
        assert not path.exists()  # not silently recreated
    finally:
        registry.close()
