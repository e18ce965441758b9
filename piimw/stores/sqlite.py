"""SQLite registry backend: the embedded default, shared by worker processes on one host.

WAL mode lets readers go on while a writer commits. A per-process cache stays correct because
every cached lookup first reads ``PRAGMA data_version``, which changes whenever *another*
connection committed; this connection's own writes invalidate the cache directly.
Any SQLite error drops the connection, and so does a file replaced under it (checked by inode
per operation), so that a file restored from a backup is reopened rather than read stale.

A new file gets a random registry id (table ``piimw_meta``), also written to ``<path>-id``
beside the real file (a symlink is followed). A process that knows an id (it opened the
registry, or found the id file) opens only an existing file with that id: a deleted registry,
or another one put in its place, is an outage, never a new empty registry (which would opt
everyone back in). A registry file from before registry ids (``piimw_registry`` without
``piimw_meta``: a backup restored in place) is stamped with the known id. Only a process that
finds neither the file nor the id file creates one. An id file that cannot be written is a
warning: the id in the file is enough for the process that opened it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from typing import Any, ClassVar
from urllib.parse import quote

from piimw.stores import Cache, Change, Record, Store, StoreError, UnreadableRecord, refill

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

logger = logging.getLogger("piimw.registry")

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


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {str(name) for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'piimw_%'")}


def _fields(rows: list[Any]) -> list[tuple[Any, Any]]:
    """Rows fetched as bytes (see :func:`_select`), decoded: bytes that are not UTF-8 make
    the record unreadable (its subject fails closed), never an outage."""
    try:
        return [(_text(field), _text(value)) for field, value in rows]
    except UnicodeDecodeError:
        raise UnreadableRecord("a registry record is unreadable") from None


def _text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _select(conn: sqlite3.Connection, subject: str) -> list[tuple[Any, Any]]:
    """The subject's fields. Text is fetched as bytes and decoded by :func:`_fields`:
    sqlite3 raises OperationalError for text that is not UTF-8 while fetching, which would
    otherwise count as an outage of the whole registry."""
    conn.text_factory = bytes
    try:
        rows = conn.execute("SELECT field, value FROM piimw_registry WHERE subject = ?",
                            (subject,)).fetchall()
    finally:
        conn.text_factory = str
    return _fields(rows)


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
    """Raises OSError (nothing left behind) if the id file cannot be written."""
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
        raise


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
        #: Beside the real file: a symlinked registry (a read-only app directory linking to a
        #: data volume) keeps its id file where SQLite keeps the -wal and -shm files.
        self.id_path = None if self.path in ("", ":memory:") else \
            os.path.realpath(self.path) + "-id"
        self._warned_id_file = False
        self._refusal_logged: str | None = None

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
        try:
            conn = sqlite3.connect(target, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False, uri=expected is not None)
        except sqlite3.Error:
            if expected is not None and not os.path.exists(self.path):
                self._refuse("missing")
            raise
        try:
            # Setting up writes (WAL mode and the tables of a new file) and waits for other
            # connections doing the same, as a write does; then reads wait less.
            conn.execute(f"PRAGMA busy_timeout = {int(self._write_timeout * 1000)}")
            # Checked before anything is written to the file.
            stamp: str | None = None
            if expected is None:
                found = None
            else:
                tables = _tables(conn)  # a damaged file raises: an outage like any error
                if "piimw_meta" in tables:
                    found = _stored_id(conn)
                elif "piimw_registry" in tables:
                    # A copy from before registry ids (a backup restored in place): the same
                    # registry as far as anything can tell; it gets the known id.
                    found = stamp = expected
                else:
                    found = None  # empty, or not a piimw registry at all
                if found != expected:
                    self._refuse("other" if "piimw_meta" in tables else "foreign")
                    raise sqlite3.OperationalError("not the registry file this process knows")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError("cannot switch to WAL mode")
            # Opt-outs are legal records: survive a power cut, not just a crash.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(_SCHEMA)
            conn.execute(_RATE_SCHEMA)
            if found is None or stamp is not None:  # a new file, or one from before ids
                conn.execute(_META_SCHEMA)
                conn.execute("INSERT OR IGNORE INTO piimw_meta (key, value) "
                             "VALUES ('registry_id', ?)", (stamp or secrets.token_hex(16),))
                found = _stored_id(conn)
                if found is None or not _ID_RE.match(found):
                    raise sqlite3.OperationalError("the registry id is unreadable")
                if expected is not None and found != expected:  # stamped meanwhile
                    self._refuse("other")
                    raise sqlite3.OperationalError("not the registry file this process knows")
            if self.id_path is not None and on_disk != found:
                self._save_id(found)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._registry_id = found
        self._version = None
        self._identity = _identity(self.path)
        self._refusal_logged = None
        return conn

    def _save_id(self, registry_id: str) -> None:
        """Write the id file; if that fails, warn once: the id in the file is enough for this
        process, only a deletion seen by a process started later goes undetected."""
        assert self.id_path is not None
        try:
            _write_id(self.id_path, registry_id)
        except OSError as e:
            if not self._warned_id_file:
                self._warned_id_file = True
                logger.warning("piimw: cannot write the registry id file %s (%s); the registry "
                               "works, but a process started after the registry file is "
                               "deleted would create a new, empty one",
                               os.path.basename(self.id_path), type(e).__name__)

    def _refuse(self, why: str) -> None:
        """Log, once per incident, why a registry file is refused and what to do. Files are
        named without their directory (like every registry log, no URL); never a subject."""
        if self._refusal_logged == why:
            return
        self._refusal_logged = why
        what = {
            "missing": "is missing",
            "other": "holds another registry id",
            "foreign": "is not a piimw registry",
        }[why]
        id_file = os.path.basename(self.id_path or "")
        logger.error("piimw: the SQLite registry file %s %s, but this process knows the "
                     "registry by its id (from the id file %s beside it, or the file it had "
                     "open); it is refused so that nobody is opted back in, and signed-in "
                     "requests fail closed. Restore the registry file (a backup of the same "
                     "registry is reopened), or, to start another registry deliberately, "
                     "delete %s and restart every process",
                     os.path.basename(self.path), what, id_file, id_file)

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
                rows = _select(self._connection(), subject)
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
                        current = Record.from_fields(subject, _select(conn, subject))
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
