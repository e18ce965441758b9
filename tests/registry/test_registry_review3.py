"""Review findings on the registry's files and records.

A backup from before registry ids restored in place is reopened (and stamped), while a file
that is not the known registry stays an outage with a log that says what to do; a record that
SQLite cannot decode or that Redis holds as another type fails closed for its subject alone;
a symlinked registry keeps its id file beside the real file, and an id file that cannot be
written is a warning, not an outage.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest
import redis
from registry_support import REDIS_URL

import piimw.stores.sqlite as sqlite_store
from piimw.consent import NON_ESSENTIAL
from piimw.registry import RecordUnreadable, Registry, RegistryUnavailable
from piimw.transform import Hasher

FAIL_CLOSED = frozenset(NON_ESSENTIAL)
LEGACY_SCHEMA = ("CREATE TABLE piimw_registry (subject TEXT NOT NULL, field TEXT NOT NULL, "
                 "value TEXT NOT NULL, PRIMARY KEY (subject, field)) WITHOUT ROWID")


def _only_it_fails_closed(registry: Registry, broken: str, alice: str) -> None:
    """The unreadable record's subject fails closed, read twice; everyone else is read as
    usual, with no outage; its record cannot be read."""
    for _ in range(2):
        assert registry.get(broken).opted_out_uses == FAIL_CLOSED
        assert registry.get(alice).opted_out_uses == {"analytics"}
        assert registry.available
    with pytest.raises(RecordUnreadable):
        registry.record(broken)


def _delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _backup(src_path: Path, dst_path: Path) -> None:
    src, dst = sqlite3.connect(src_path), sqlite3.connect(dst_path)
    src.backup(dst)
    dst.close()
    src.close()


def _file_id(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute(
            "SELECT value FROM piimw_meta WHERE key = 'registry_id'").fetchone()[0])
    finally:
        conn.close()


# -- f1: a backup from before registry ids, restored in place ----------------------------------
def test_a_backup_from_before_registry_ids_is_reopened_and_stamped(
        tmp_path: Path, hasher: Hasher, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    with Registry("memory://", hasher) as memory:
        subject = memory.subject_for("alice")
    legacy = sqlite3.connect(path)
    with legacy:  # the registry as a release without registry ids left it
        legacy.execute(LEGACY_SCHEMA)
        legacy.execute("INSERT INTO piimw_registry VALUES (?, 'o|use|marketing|api', '1.0')",
                       (subject,))
    legacy.close()
    _backup(path, tmp_path / "nightly.db")  # taken before the upgrade

    with Registry(url, hasher, retry_interval=0) as worker:  # the upgrade stamps an id
        assert worker.get(subject).opted_out_uses == {"marketing"}
        registry_id = Path(f"{path}-id").read_text().strip()
        _delete(path)
        (tmp_path / "nightly.db").replace(path)  # yesterday's backup, restored
        with caplog.at_level(logging.ERROR, logger="piimw.registry"):
            # A running worker and one started afterwards both reopen it.
            assert worker.get(subject).opted_out_uses == {"marketing"}
            assert worker.available
            with Registry(url, hasher, retry_interval=0) as restarted:
                assert restarted.record(subject).effective_out()
                assert restarted.available
        assert not caplog.records
    assert _file_id(path) == registry_id  # stamped with the known id, not a new one
    assert Path(f"{path}-id").read_text().strip() == registry_id


@pytest.mark.parametrize("what", ["foreign", "other", "missing"])
def test_a_file_that_is_not_the_known_registry_stays_an_outage_and_says_why(
        tmp_path: Path, hasher: Hasher, caplog: pytest.LogCaptureFixture, what: str) -> None:
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    with Registry(url, hasher) as first:
        subject = first.subject_for("alice")
        first.opt_out(subject, ["marketing"])
    _delete(path)
    if what == "foreign":  # an empty database, or one of another application
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("CREATE TABLE other (x)")
        conn.close()
    elif what == "other":  # another piimw registry (another id)
        Path(f"{path}-id").rename(tmp_path / "saved-id")
        Registry(url, hasher).close()
        (tmp_path / "saved-id").rename(f"{path}-id")
    with caplog.at_level(logging.ERROR, logger="piimw.registry"), \
            Registry(url, hasher, retry_interval=0) as late:
        for _ in range(3):
            assert late.get(subject).opted_out_uses == FAIL_CLOSED
            assert not late.available
        with pytest.raises(RegistryUnavailable):
            late.opt_out(subject, ["analytics"])
    refusals = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refusals) == 1  # once per incident, not per probe
    assert "delete registry.db-id and restart every process" in refusals[0]
    assert subject not in caplog.text
    assert str(tmp_path) not in caplog.text
    assert what != "missing" or not path.exists()


# -- f2: SQLite text that is not UTF-8 ---------------------------------------------------------
@pytest.mark.parametrize("column", ["value", "field"])
def test_sqlite_text_that_is_not_utf8_fails_closed_for_its_subject_only(
        tmp_path: Path, hasher: Hasher, column: str) -> None:
    path = tmp_path / "registry.db"
    with Registry(f"sqlite:///{path}", hasher, retry_interval=60) as registry:
        broken, alice = registry.subject_for("broken"), registry.subject_for("alice")
        registry.opt_out(broken, ["marketing"])
        registry.opt_out(alice, ["analytics"])
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(f"UPDATE piimw_registry SET {column} = CAST(x'ff' AS TEXT) "
                         "WHERE subject = ?", (broken,))
        conn.close()
        _only_it_fails_closed(registry, broken, alice)
        with pytest.raises(RecordUnreadable):
            registry.opt_in(broken, ["marketing"])
        assert registry.available
        assert registry.clear(broken)
        assert registry.get(broken).opted_out_uses == frozenset()
        assert registry.record(alice).effective_out()


# -- f3: Redis: a key of another type under the registry's prefix ------------------------------
@pytest.mark.redis
@pytest.mark.parametrize("kind", ["string", "list"])
def test_redis_key_of_another_type_fails_closed_for_its_subject_only(
        hasher: Hasher, redis_prefix: str, kind: str) -> None:
    with Registry(REDIS_URL, hasher, key_prefix=redis_prefix, retry_interval=60) as registry:
        broken, alice = registry.subject_for("broken"), registry.subject_for("alice")
        registry.opt_out(alice, ["analytics"])
        client = redis.Redis.from_url(REDIS_URL)
        try:
            key = registry.store.key(broken)  # type: ignore[attr-defined]
            if kind == "string":
                client.set(key, "garbage")
            else:
                client.rpush(key, "garbage")
        finally:
            client.close()
        _only_it_fails_closed(registry, broken, alice)
        with pytest.raises(RecordUnreadable):
            registry.opt_out(broken, ["marketing"])
        assert registry.available
        assert registry.clear(broken)
        assert registry.opt_out(broken, ["marketing"]).effective_out()
        assert registry.get(broken).opted_out_uses == {"marketing"}


# -- f4: a symlinked registry; an id file that cannot be written --------------------------------
def test_symlinked_registry_keeps_its_id_file_beside_the_real_file(
        tmp_path: Path, hasher: Hasher) -> None:
    app, data = tmp_path / "app", tmp_path / "data"
    app.mkdir()
    data.mkdir()
    (app / "piimw-registry.db").symlink_to(data / "piimw-registry.db")
    url = f"sqlite:///{app / 'piimw-registry.db'}"
    with Registry(url, hasher) as registry:
        subject = registry.subject_for("alice")
        registry.opt_out(subject, ["marketing"])
    assert sorted(os.listdir(app)) == ["piimw-registry.db"]  # the app directory untouched
    assert (data / "piimw-registry.db-id").read_text().strip() == _file_id(
        data / "piimw-registry.db")
    # The id file beside the real file protects it as before.
    _delete(data / "piimw-registry.db")
    with Registry(url, hasher, retry_interval=0) as late:
        assert late.get(subject).opted_out_uses == FAIL_CLOSED
    assert not (data / "piimw-registry.db").exists()


def test_an_id_file_that_cannot_be_written_is_a_warning_not_an_outage(
        tmp_path: Path, hasher: Hasher, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(sqlite_store.os, "replace", read_only)
    path = tmp_path / "registry.db"
    with caplog.at_level(logging.WARNING, logger="piimw.registry"), \
            Registry(f"sqlite:///{path}", hasher, retry_interval=0) as registry:
        subject = registry.subject_for("alice")
        registry.opt_out(subject, ["marketing"])
        assert registry.get(subject).opted_out_uses == {"marketing"}
        assert registry.available
        registry.store.close()  # reconnects: still works, warned once
        assert registry.get(subject).opted_out_uses == {"marketing"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "registry.db-id" in warnings[0].getMessage()
    assert str(tmp_path) not in warnings[0].getMessage()
    assert not Path(f"{path}-id").exists()
    assert not list(tmp_path.glob("*.tmp"))
