"""SQLite registry backend: the embedded default, shared by worker processes on one host.

WAL mode lets readers go on while a writer commits. A per-process cache stays correct because
every cached lookup first reads ``PRAGMA data_version``, which changes whenever *another*
connection committed; this connection's own writes invalidate the cache directly.
Any SQLite error drops the connection, and so does a file replaced under it (checked by inode
per operation), so that a file restored from a backup is reopened rather than read stale.

A new file gets a random registry id (table ``piimw_meta``), also written to ``<path>-id``
beside it. A process that knows an id (it opened the registry, or found the id file) opens
only an existing file with that id: a deleted registry, or another one put in its place, is
an outage, never a new empty registry (which would opt everyone back in). Only a process that
finds neither the file nor the id file creates one.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
import threading
import time
from typing import Any, ClassVar
from urllib.parse import quote

from piimw.stores import Cache, Change, Record, Store, StoreError, refill

_SCHEMA = """
CREATE TABLE IF NOT EXISTS piimw_registry (
    subject TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (subject, field)
) WITHOUT ROWID
"""

#: The opt-out API's rate limit buckets (:meth:`SQLiteStore.take_token`).
_RATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS piimw_rate (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    last REAL NOT NULL
) WITHOUT ROWID
"""

#: Which registry a file is (see the module docstring).
_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS piimw_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID
"""
_ID_RE = re.compile(r"^[0-9a-f]{32}$")

#: Connections inherited over fork are never touched again (closing one in the child could
#: release POSIX locks the child's own connections hold on the same file); kept referenced.
_inherited: list[sqlite3.Connection] = []


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stored_id(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM piimw_meta WHERE key = 'registry_id'").fetchone()
    return None if row is None else str(row[0])


def _read_id(path: str | None) -> str | None:
    """The id in the id file; None if there is none. Errors as SQLite errors (an outage)."""
    if path is None:
        return None
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        raise sqlite3.OperationalError("cannot read the registry id file") from None
    if not _ID_RE.match(text):
        raise sqlite3.OperationalError("the registry id file is unreadable")
    return text


def _write_id(path: str, registry_id: str) -> None:
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # unique per writer
    try:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(registry_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise sqlite3.OperationalError("cannot write the registry id file") from None


class SQLiteStore(Store):
    """One connection per store, guarded by a lock; opened on first use."""

    kind: ClassVar[str] = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 0.5,
                 write_timeout: float = 5.0) -> None:
        self.path = os.fspath(path)
        self._timeout = timeout
        self._write_timeout = write_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._version: int | None = None
        self._cache: Cache | None = None
        self._identity: tuple[int, int] | None = None
        self._rate_writes = 0
        #: The registry this process uses, once known: from the file or the id file.
        self._registry_id: str | None = None
        self.id_path = None if self.path in ("", ":memory:") else self.path + "-id"

    # -- connection -------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is not None:
            if _identity(self.path) == self._identity:
                return conn
            # Replaced (a backup restored) or deleted: this connection reads a dead inode.
            self._reset()
        on_disk = _read_id(self.id_path)
        expected = self._registry_id or on_disk
        # A known registry is opened, never created: a new empty file in place of a deleted
        # one would opt everyone back in.
        target = self.path if expected is None else \
            "file://" + quote(os.path.abspath(self.path)) + "?mode=rw"
        conn = sqlite3.connect(target, timeout=self._timeout, isolation_level=None,
                               check_same_thread=False, uri=expected is not None)
        try:
            # Setting up writes (WAL mode and the tables of a new file) and waits for other
            # connections doing the same, as a write does; then reads wait less.
            conn.execute(f"PRAGMA busy_timeout = {int(self._write_timeout * 1000)}")
            # Checked before anything is written to the file.
            found = None if expected is None else _stored_id(conn)
            if found != expected:
                raise sqlite3.OperationalError("not the registry file this process knows")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL mode")
            # Opt-outs are legal records: survive a power cut, not just a crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(_SCHEMA)
            conn.execute(_RATE_SCHEMA)
            if found is None:  # a new file, or one from before registry ids
                conn.execute(_META_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO piimw_meta (key, value) "
                             "VALUES ('registry_id', ?)", (secrets.token_hex(16),))
                found = _stored_id(conn)
                if found is None or not _ID_RE.match(found):
                    raise sqlite3.OperationalError("the registry id is unreadable")
            if self.id_path is not None and on_disk != found:
                _write_id(self.id_path, found)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._registry_id = found
        self._version = None
        self._identity = _identity(self.path)
        return conn

    def _reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        if self._cache is not None:
            self._cache.clear()

    def _fail(self, exc: BaseException) -> StoreError:
        self._reset()
        # The error's kind and SQLite's code (SQLITE_BUSY, ...): never its message, which
        # may quote a statement's values.
        code = getattr(exc, "sqlite_errorname", None)
        kind = type(exc).__name__ if code is None else f"{type(exc).__name__} {code}"
        return StoreError(f"sqlite registry unavailable ({kind})")

    # -- Store ------------------------------------------------------------------------------
    def attach(self, cache: Cache) -> None:
        self._cache = cache

    def cache_usable(self) -> bool:
        """Drop the whole cache if another connection committed since the last lookup."""
        with self._lock:
            try:
                cursor = self._connection().execute("PRAGMA data_version")
                try:
                    version = cursor.fetchone()[0]
                finally:
                    cursor.close()  # reset now: an open statement would pin an old snapshot
            except sqlite3.Error as e:
                raise self._fail(e) from None
            if version != self._version:
                self._version = version
                if self._cache is not None:
                    self._cache.clear()
            return True

    def load(self, subject: str) -> Record:
        with self._lock:
            try:
                rows = self._connection().execute(
                    "SELECT field, value FROM piimw_registry WHERE subject = ?",
                    (subject,)).fetchall()
            except sqlite3.Error as e:
                raise self._fail(e) from None
        return Record.from_fields(subject, rows)

    def update(self, subject: str, change: Change) -> tuple[Record, bool]:
        with self._lock:
            try:
                conn = self._connection()
                conn.execute(f"PRAGMA busy_timeout = {int(self._write_timeout * 1000)}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        rows = conn.execute(
                            "SELECT field, value FROM piimw_registry WHERE subject = ?",
                            (subject,)).fetchall()
                        current = Record.from_fields(subject, rows)
                        new = change(current, time.time())
                        if new == current:
                            conn.execute("ROLLBACK")
                            return current, False
                        conn.execute("DELETE FROM piimw_registry WHERE subject = ?", (subject,))
                        conn.executemany(
                            "INSERT INTO piimw_registry (subject, field, value) VALUES (?, ?, ?)",
                            [(subject, k, v) for k, v in new.fields().items()])
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                finally:
                    if self._conn is conn:
                        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            except sqlite3.Error as e:
                raise self._fail(e) from None
            return new, True

    def remove(self, subject: str) -> bool:
        """One DELETE (its own transaction): the rows go unread."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute(f"PRAGMA busy_timeout = {int(self._write_timeout * 1000)}")
                try:
                    cursor = conn.execute("DELETE FROM piimw_registry WHERE subject = ?",
                                          (subject,))
                    removed = cursor.rowcount > 0
                finally:
                    if self._conn is conn:
                        conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            except sqlite3.Error as e:
                raise self._fail(e) from None
        return removed

    def take_token(self, key: str, rate: float, burst: float) -> float | None:
        """The bucket is a row of ``piimw_rate``, changed in one write transaction (the
        wall clock: every process on the host shares it). Rows idle for an hour go."""
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    now = time.time()
                    row = conn.execute("SELECT tokens, last FROM piimw_rate WHERE key = ?",
                                       (key,)).fetchone()
                    held, last = row if row is not None else (None, None)
                    tokens, wait = refill(held, last, now, rate, burst)
                    conn.execute("INSERT OR REPLACE INTO piimw_rate (key, tokens, last) "
                                 "VALUES (?, ?, ?)", (key, tokens, now))
                    self._rate_writes += 1
                    if self._rate_writes % 1000 == 0:
                        conn.execute("DELETE FROM piimw_rate WHERE last < ?", (now - 3600,))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise self._fail(e) from None
        return wait

    def ping(self) -> None:
        with self._lock:
            try:
                self._connection().execute("SELECT 1").fetchone()
            except sqlite3.Error as e:
                raise self._fail(e) from None

    def stats(self) -> dict[str, Any]:
        return {"backend": self.kind, "connected": self._conn is not None}

    def after_fork(self) -> None:
        if self._conn is not None:
            _inherited.append(self._conn)
        self._conn = None
        self._version = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._reset()
