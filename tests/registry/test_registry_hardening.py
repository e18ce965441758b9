"""Records that cannot be read, registry files that vanish, URLs that cannot be parsed.

One subject's unreadable record fails closed for that subject alone and can be cleared; names
that would make a record unreadable are never written; a deleted SQLite registry is never
replaced by an empty one; a Redis URL's password never reaches an error message.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis
from registry_support import KEY, REDIS_URL

from piimw.cli import build_parser
from piimw.cli_optout import run
from piimw.consent import NON_ESSENTIAL
from piimw.errors import ConfigError
from piimw.optout_api import OptOutAPI
from piimw.registry import RecordUnreadable, Registry, RegistryUnavailable, registry_url
from piimw.stores import open_store
from piimw.transform import Hasher

MakeRegistry = Callable[..., Registry]
FAIL_CLOSED = frozenset(NON_ESSENTIAL)
WRITE = [(b"content-type", b"application/json"), (b"x-requested-with", b"test")]
SECRET = "Zm9vc2VjcmV0"


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _corrupt(registry: Registry, subject: str, backend: str) -> None:
    """Store a field the stores cannot parse, as a foreign or damaged write would."""
    if backend == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        try:
            key = registry.store.key(subject)  # type: ignore[attr-defined]
            client.hset(key, mapping={b"o|use|marketing|api": b"\xff\xfe", b"o|use|X|a": b"1"})
        finally:
            client.close()
    else:
        conn = sqlite3.connect(registry.store.path)  # type: ignore[attr-defined]
        with conn:
            conn.execute("INSERT INTO piimw_registry VALUES (?, 'o|use|marketing.X|api', '1')",
                         (subject,))
        conn.close()


# -- names the stores cannot read back are never written ------------------------------------
@pytest.mark.parametrize("name", ["marketing.X", "marketing.\u0000", "marketing..a",
                                  "marketing.a b", "marketing.é", "third_party.x-y",
                                  "personalize." + "a" * 116, "Marketing"])
def test_api_refuses_names_the_store_cannot_read_back(make_registry: MakeRegistry,
                                                      name: str) -> None:
    registry = make_registry()
    api = OptOutAPI(registry)
    body = orjson.dumps({"opt_out": {"uses": ["analytics", name]}, "opt_in": {"uses": [name]}})
    status, _, payload = api.handle("PUT", "mallory", body, WRITE)
    assert status == 422
    doc = orjson.loads(payload)
    assert doc["errors"] == [{"pointer": "/opt_out/uses/1", "keyword": "enum"},
                             {"pointer": "/opt_in/uses/0", "keyword": "enum"}]
    assert name.encode() not in payload
    subject = registry.subject_for("mallory")
    with pytest.raises(ValueError, match="use") as raised:
        registry.opt_out(subject, [name])
    assert name not in str(raised.value)
    with pytest.raises(ValueError, match="use"):
        registry.opt_in(subject, [name])
    assert registry.record(subject).empty
    assert api.handle("GET", "mallory", b"", WRITE)[0] == 200
    assert registry.available


def test_well_formed_sub_uses_are_kept(make_registry: MakeRegistry) -> None:
    registry = make_registry()
    api = OptOutAPI(registry)
    body = orjson.dumps({"opt_out": {"uses": ["marketing.email_2"], "categories": ["email"]}})
    status, _, payload = api.handle("PUT", "jane", body, WRITE)
    assert status == 200
    assert orjson.loads(payload)["opted_out"]["uses"][0]["name"] == "marketing.email_2"
    fresh = make_registry(cache=False)
    subject = registry.subject_for("jane")
    assert fresh.get(subject).opted_out_uses == {"marketing.email_2"}


def test_cli_refuses_names_the_store_cannot_read_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    args = _parse(["optout", "set", "--registry", url, "--user", "42", "--opt-out",
                   "marketing.Secret"])
    assert run(args, stdout=io.StringIO()) == 2
    assert "Secret" not in capsys.readouterr().err


# -- an unreadable record: its subject fails closed, nobody else; it can be cleared ----------
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_unreadable_record_fails_closed_for_its_subject_only(
        make_registry: MakeRegistry, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry(retry_interval=60)
    api = OptOutAPI(registry)
    broken, alice = registry.subject_for("broken"), registry.subject_for("alice")
    registry.opt_out(broken, ["analytics"])
    registry.opt_out(alice, ["analytics"])
    _corrupt(registry, broken, backend)

    with caplog.at_level("ERROR", logger="piimw.registry"):
        for _ in range(3):
            assert registry.get(broken).opted_out_uses == FAIL_CLOSED
            assert registry.consent_for(broken).opted_out_uses == FAIL_CLOSED
            # Everyone else is read as usual: no registry-wide outage.
            assert registry.get(alice).opted_out_uses == {"analytics"}
            assert registry.available
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
    assert broken not in caplog.text

    with pytest.raises(RecordUnreadable):
        registry.record(broken)
    with pytest.raises(RecordUnreadable):
        registry.opt_out(broken, ["marketing"])
    assert registry.available
    status, _, payload = api.handle("GET", "broken", b"", WRITE)
    assert status == 503
    assert orjson.loads(payload)["type"].endswith("registry-unavailable")

    # The subject (or an operator) can still remove it: clear() never parses the record.
    assert api.handle("DELETE", "broken", b"", WRITE)[0] == 204
    assert registry.get(broken).opted_out_uses == frozenset()
    status, _, payload = api.handle("GET", "broken", b"", WRITE)
    assert status == 200
    assert orjson.loads(payload)["opted_out"]["uses"] == []
    assert not registry.clear(broken)


def test_cli_clears_an_unreadable_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.setenv("PIIMW_HASH_KEY_ID", "t1")
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with Registry(url, Hasher(KEY, "t1")) as registry:
        subject = registry.subject_for("42")
        registry.opt_out(subject, ["analytics"])
        _corrupt(registry, subject, "sqlite")
    assert run(_parse(["optout", "get", "--registry", url, "--user", "42"]),
               stdout=io.StringIO()) == 1
    assert "clear" in capsys.readouterr().err
    out = io.StringIO()
    assert run(_parse(["optout", "clear", "--registry", url, "--user", "42"]), stdout=out) == 0
    assert orjson.loads(out.getvalue()) == {"subject": subject, "cleared": True}


@pytest.mark.redis
def test_redis_undecodable_record_fails_closed(hasher: Hasher, redis_prefix: str) -> None:
    """Bytes that are not UTF-8 are an unreadable record, not a UnicodeDecodeError (a 500)."""
    with Registry(REDIS_URL, hasher, key_prefix=redis_prefix) as registry:
        subject = registry.subject_for("alice")
        client = redis.Redis.from_url(REDIS_URL)
        try:
            key = registry.store.key(subject)  # type: ignore[attr-defined]
            client.hset(key, mapping={b"o|use|marketing|api": b"\xff\xfe"})
        finally:
            client.close()
        assert registry.consent_for(subject).opted_out_uses == FAIL_CLOSED
        with pytest.raises(RecordUnreadable):
            registry.opt_in(subject, ["marketing"])
        assert registry.available
        api = OptOutAPI(registry)
        status, headers, _ = api.handle("GET", "alice", b"", [])
        assert status == 503
        assert (b"content-type", b"application/problem+json") in headers
        assert registry.clear(subject)
        assert registry.get(subject).opted_out_uses == frozenset()


# -- SQLite: a deleted registry is never replaced by an empty one ------------------------------
def _delete(path: Path, *, id_file: bool = False) -> None:
    for suffix in ("", "-wal", "-shm", *(("-id",) if id_file else ())):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_sqlite_deleted_file_is_not_recreated_by_a_new_process(tmp_path: Path,
                                                               hasher: Hasher) -> None:
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    with Registry(url, hasher, retry_interval=0) as worker:
        subject = worker.subject_for("alice")
        worker.opt_out(subject, ["marketing"])
        assert Path(f"{path}-id").exists()
        _delete(path)
        # A registry started afterwards (a recycled worker, the CLI) finds the id file.
        with Registry(url, hasher, retry_interval=0) as late:
            assert late.get(subject).opted_out_uses == FAIL_CLOSED
            assert not late.available
            with pytest.raises(RegistryUnavailable):
                late.opt_out(subject, ["analytics"])
        assert not path.exists()
        assert worker.get(subject).opted_out_uses == FAIL_CLOSED
        assert not path.exists()


def test_sqlite_other_registry_in_place_is_an_outage_where_one_was_open(
        tmp_path: Path, hasher: Hasher) -> None:
    """With the id file deleted too, a new process starts a new registry (a deliberate reset);
    a process that had the old one open never adopts it."""
    path = tmp_path / "registry.db"
    url = f"sqlite:///{path}"
    with Registry(url, hasher, retry_interval=0) as worker:
        subject = worker.subject_for("alice")
        worker.opt_out(subject, ["marketing"])
        _delete(path, id_file=True)
        with Registry(url, hasher, retry_interval=0) as fresh:
            assert fresh.get(subject).opted_out_uses == frozenset()
            assert fresh.available
        for _ in range(3):
            assert worker.get(subject).opted_out_uses == FAIL_CLOSED
            assert not worker.available


def test_sqlite_id_survives_a_restored_backup_and_legacy_files_get_one(
        tmp_path: Path, hasher: Hasher) -> None:
    path = tmp_path / "registry.db"
    legacy = sqlite3.connect(path)
    with legacy:  # a registry written before registry ids
        legacy.execute("CREATE TABLE piimw_registry (subject TEXT NOT NULL, field TEXT NOT NULL, "
                       "value TEXT NOT NULL, PRIMARY KEY (subject, field)) WITHOUT ROWID")
    legacy.close()
    with Registry(f"sqlite:///{path}", hasher, retry_interval=0) as registry:
        subject = registry.subject_for("alice")
        registry.opt_out(subject, ["marketing"])
        registry_id = Path(f"{path}-id").read_text().strip()
        assert len(registry_id) == 32
        backup = sqlite3.connect(tmp_path / "backup.db")
        src = sqlite3.connect(path)
        src.backup(backup)
        src.close()
        backup.close()
        _delete(path)
        assert registry.get(subject).opted_out_uses == FAIL_CLOSED
        (tmp_path / "backup.db").replace(path)  # the same registry, restored
        assert registry.get(subject).opted_out_uses == {"marketing"}
        assert registry.available
    assert Path(f"{path}-id").read_text().strip() == registry_id


# -- a Redis URL that cannot be parsed: ConfigError, never the password ------------------------
@pytest.mark.parametrize("url", [f"redis://:{SECRET}/cGFzcw@127.0.0.1:6379/11",
                                 f"redis://:{SECRET}#x@127.0.0.1:6379/11"])
def test_unparsable_redis_url_never_shows_the_password(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="invalid redis registry URL") as raised:
        open_store(url)
    assert SECRET not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    with pytest.raises(ConfigError) as raised:  # at load time, from url_env
        registry_url({"url_env": "REG_URL"}, {"REG_URL": url})
    assert SECRET not in str(raised.value)
    assert raised.value.pointer == "/registry/url_env"

    monkeypatch.setenv("PIIMW_HASH_KEY", KEY)
    monkeypatch.setenv("PIIMW_REGISTRY_URL", url)
    monkeypatch.chdir(tmp_path)
    assert run(_parse(["optout", "get", "--user", "42"]), stdout=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "invalid redis registry URL" in err
    assert SECRET not in err
