"""Where audit records go, chosen by URL, and the background writer that feeds them.

* ``jsonl:///var/log/app/audit.jsonl`` (the embedded default): one line per record. Several
  worker processes append at once: the chain head (sequence number and last hash) lives in a
  signed sidecar ``.audit.jsonl.head`` that is ``flock``-ed around sequence allocation and the
  single ``O_APPEND`` ``write()`` of each batch. The sidecar never moves, so rotation is safe:
  when the trail's inode changes the writer reopens the path and the chain carries on.
* ``sqlite:///var/lib/app/audit.db``: a table; each batch is one ``BEGIN IMMEDIATE`` transaction
  that reads the head, inserts the records and updates the head.
* ``logging://piimw.audit``: each line goes to a :mod:`logging` logger. The chain is kept per
  process (every process starts its own chain id) and nothing records the head, so a cut-off
  end is only visible through checkpoints kept elsewhere.

``scheme:///abs/path`` is an absolute path, ``scheme://rel/path`` one relative to the working
directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import logging
import os
import queue
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from piimw.audit.records import AuditKey, Head, Sealer, read_head, sign_head
from piimw.errors import ConfigError

logger = logging.getLogger("piimw.audit")

SCHEMES = ("jsonl", "sqlite", "logging")
SQLITE_MAGIC = b"SQLite format 3\x00"


class Sink(Protocol):
    """Seals payloads into the chain and stores them, atomically per batch."""

    url: str

    def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]: ...

    def probe(self) -> None: ...

    def finish(self) -> list[bytes]: ...

    def close(self) -> None: ...


def split_url(url: str) -> tuple[str, str]:
    """``jsonl:///a/b`` -> ``("jsonl", "/a/b")``; a bare path is a JSONL file (or SQLite db)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return ("sqlite" if _is_sqlite(url) else "jsonl"), url
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown audit sink scheme {scheme!r}; expected one of "
                          f"{', '.join(SCHEMES)}", pointer="/audit/url")
    if not rest:
        raise ConfigError(f"audit sink URL {url!r} names no path", pointer="/audit/url")
    return scheme, rest


def _is_sqlite(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return path.endswith((".db", ".sqlite", ".sqlite3"))


def open_sink(url: str, sealer: Sealer, *, fsync: bool = False) -> Sink:
    scheme, rest = split_url(url)
    if scheme == "jsonl":
        return JsonlSink(rest, sealer, fsync=fsync)
    if scheme == "sqlite":
        return SqliteSink(rest, sealer, fsync=fsync)
    return LoggingSink(rest, sealer)


# -- JSONL ----------------------------------------------------------------------------------
def sidecar(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p.with_name(f".{p.name}.head")


class JsonlSink:
    """Append-only JSON lines, safe across processes and log rotation."""

    def __init__(self, path: str, sealer: Sealer, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.url = f"jsonl://{path}"
        self.head_path = sidecar(self.path)
        self.sealer = sealer
        self.fsync = fsync
        self._mutex = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._lock_fd = -1
        self._ident: tuple[int, int] | None = None

    # -- descriptors -----------------------------------------------------------------------
    def _ready(self) -> None:
        if self._pid != os.getpid():
            # A forked child shares the parent's open file descriptions, and with them the
            # flock: it must open its own to be excluded.
            self._fd = self._lock_fd = -1
            self._ident = None
            self._pid = os.getpid()
        if self._lock_fd < 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.head_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _log(self) -> int:
        """The trail's descriptor, reopened if the path now names another file (rotation)."""
        try:
            st = os.stat(self.path)
            ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            ident = None
        if self._fd >= 0 and ident == self._ident:
            return self._fd
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(self._fd)
        self._ident = (st.st_dev, st.st_ino)
        return self._fd

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._mutex:
            self._ready()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._log()
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    # -- the chain head --------------------------------------------------------------------
    def _head(self, fd: int) -> tuple[Head, bool]:
        """Read the head under the lock; second value: the trail's last line is unterminated."""
        size = os.fstat(fd).st_size
        partial = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        saved = read_head(_first_line(_pread_all(self._lock_fd)), self.sealer.key)
        ident = self._ident
        if saved is not None:
            head, data = saved
            same_file = ident is not None and data.get("ino") == ident[1] and \
                data.get("dev") == ident[0]
            if not same_file or int(data.get("size", 0)) >= size:
                # Rotated away (new file), copy-truncated, or exactly where we left it.
                return head, partial
        # No sidecar, or lines were written after it was saved (a writer died in between):
        # the trail's last complete record is the truth.
        last = _last_record(fd, size)
        if last is not None:
            return Head.after(*last), partial
        return (saved[0] if saved is not None else Head.new()), partial

    def _save_head(self, head: Head, fd: int) -> None:
        st = os.fstat(fd)
        data = sign_head(head, self.sealer.key, size=st.st_size, ino=st.st_ino, dev=st.st_dev)
        os.pwrite(self._lock_fd, data, 0)
        os.ftruncate(self._lock_fd, len(data))
        if self.fsync:
            os.fsync(self._lock_fd)

    # -- writing ---------------------------------------------------------------------------
    def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]:
        if not payloads:
            return []
        with self._locked() as fd:
            head, partial = self._head(fd)
            lines, head = self.sealer.seal(payloads, head)
            self._write(fd, (b"\n" if partial else b"") + b"".join(lines))
            self._save_head(head, fd)
        return lines

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(fd)

    def probe(self) -> None:
        with self._locked() as fd:
            os.fstat(fd)

    def finish(self) -> list[bytes]:
        """Seal the chain with a final checkpoint (other processes may extend it later)."""
        with self._locked() as fd:
            head, partial = self._head(fd)
            if head.seq == 0:
                return []
            lines, head = self.sealer.close(head)
            self._write(fd, (b"\n" if partial else b"") + b"".join(lines))
            self._save_head(head, fd)
        return lines

    def close(self) -> None:
        with self._mutex:
            if self._pid == os.getpid():
                for fd in (self._fd, self._lock_fd):
                    if fd >= 0:
                        os.close(fd)
            self._fd = self._lock_fd = -1
            self._ident = None


def _pread_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def _first_line(raw: bytes) -> bytes:
    """The head in a sidecar: its first line. The sidecar is rewritten in place (pwrite, then
    ftruncate), so a writer killed in between leaves a shorter new head followed by the rest
    of the old one; the first line is still the whole, signed new head."""
    return raw.split(b"\n", 1)[0]


def _last_record(fd: int, size: int) -> tuple[dict[str, Any], bytes] | None:
    """The last complete, parseable record of a trail, read backwards from the end."""
    end = size
    buf = b""
    while end > 0:
        start = max(0, end - 65536)
        buf = os.pread(fd, end - start, start) + buf
        end = start
        lines = buf.split(b"\n")
        # lines[-1] is the unterminated tail (or b""); lines[0] may be cut unless end == 0.
        complete = lines[1:-1] if end > 0 else lines[:-1]
        for line in reversed(complete):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and "seq" in record and "chain" in record:
                return record, line
        if len(buf) > (8 << 20):
            break
    return None


# -- SQLite ---------------------------------------------------------------------------------
_SQL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS piimw_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "seq INTEGER NOT NULL, kind TEXT NOT NULL, time TEXT NOT NULL, line TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS piimw_audit_time ON piimw_audit (time)",
    "CREATE TABLE IF NOT EXISTS piimw_audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "line TEXT NOT NULL)",
)


_BUSY_SECONDS = 30.0


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the database to WAL, waiting for other connections like every other statement.

    SQLite answers a journal-mode change that meets a lock with "database is locked" at once,
    without its busy handler: processes opening a new trail together would drop records.
    """
    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return  # already (the usual case: only the first connection ever switches)
    deadline = time.monotonic() + _BUSY_SECONDS
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def sqlite_connect(path: str, *, fsync: bool = False, create: bool = True) -> sqlite3.Connection:
    if not create and not Path(path).exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(path, timeout=_BUSY_SECONDS, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_SECONDS * 1000)}")
        if create:
            _use_wal(conn)
            conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
            for stmt in _SQL_SCHEMA:
                conn.execute(stmt)
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteSink:
    """One row per record; the chain head in a one-row table, both under ``BEGIN IMMEDIATE``."""

    def __init__(self, path: str, sealer: Sealer, *, fsync: bool = False) -> None:
        self.path = path
        self.url = f"sqlite://{path}"
        self.sealer = sealer
        self.fsync = fsync
        self._mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            self._conn = None  # never use a connection across fork
            self._pid = os.getpid()
        if self._conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite_connect(self.path, fsync=self.fsync)
        return self._conn

    def _head(self, conn: sqlite3.Connection) -> Head:
        row = conn.execute("SELECT line FROM piimw_audit_head WHERE id = 1").fetchone()
        saved = read_head(row[0].encode(), self.sealer.key) if row else None
        last = conn.execute("SELECT seq, line FROM piimw_audit ORDER BY id DESC LIMIT 1"
                            ).fetchone()
        if saved is not None and (last is None or saved[0].seq >= last[0]):
            return saved[0]
        if last is not None:
            line = last[1].encode()
            return Head.after(orjson.loads(line), line)
        return Head.new()

    def _transaction(self, build: Callable[[Head], tuple[list[bytes], Head]]) -> list[bytes]:
        with self._mutex:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                lines, head = build(self._head(conn))
                rows = []
                for line in lines:
                    rec = orjson.loads(line)
                    rows.append((rec["seq"], rec["kind"], rec["time"], line.decode().rstrip("\n")))
                conn.executemany("INSERT INTO piimw_audit (seq, kind, time, line) "
                                 "VALUES (?, ?, ?, ?)", rows)
                conn.execute("INSERT OR REPLACE INTO piimw_audit_head (id, line) VALUES (1, ?)",
                             (sign_head(head, self.sealer.key).decode().rstrip("\n"),))
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            return lines

    def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]:
        if not payloads:
            return []
        return self._transaction(lambda head: self.sealer.seal(payloads, head))

    def probe(self) -> None:
        with self._mutex:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")

    def finish(self) -> list[bytes]:
        def build(head: Head) -> tuple[list[bytes], Head]:
            return ([], head) if head.seq == 0 else self.sealer.close(head)

        return self._transaction(build)

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


# -- logging --------------------------------------------------------------------------------
class LoggingSink:
    """Forward records to a :mod:`logging` logger; the chain is per process (see module doc)."""

    def __init__(self, name: str, sealer: Sealer) -> None:
        self.url = f"logging://{name}"
        self.logger = logging.getLogger(name)
        self.sealer = sealer
        self._mutex = threading.Lock()
        self._head = Head.new()
        self._pid = os.getpid()

    def _emit(self, lines: list[bytes]) -> None:
        for line in lines:
            # ``piimw_audit`` lets log filters leave these lines alone: they carry no PII.
            self.logger.info("%s", line.decode().rstrip("\n"), extra={"piimw_audit": True})

    def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]:
        with self._mutex:
            if self._pid != os.getpid():
                self._head, self._pid = Head.new(), os.getpid()
            lines, self._head = self.sealer.seal(payloads, self._head)
            self._emit(lines)
        return lines

    def probe(self) -> None:
        return None

    def finish(self) -> list[bytes]:
        with self._mutex:
            if not self._head.seq:
                return []
            lines, self._head = self.sealer.close(self._head)
            self._emit(lines)
        return lines

    def close(self) -> None:
        return None


# -- reading --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Line:
    """One stored record as read back: where it is (line or row number) and its bytes."""

    where: int
    raw: bytes
    complete: bool = True


def read_lines(source: str) -> Iterator[Line]:
    """Every stored line of a trail, in storage order (JSONL, ``.gz`` or SQLite)."""
    scheme, path = split_url(source)
    if scheme == "sqlite":
        yield from _sqlite_lines(path)
        return
    if scheme != "jsonl":
        raise ConfigError("a logging:// trail cannot be read back; save the log lines to a "
                          "file and read that", pointer="/audit/url")
    opener = gzip.open if path.endswith(".gz") else open
    n = 0
    with opener(path, "rb") as f:
        try:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    yield Line(n, raw.rstrip(b"\r\n"), raw.endswith(b"\n"))
        except (EOFError, zlib.error, gzip.BadGzipFile):
            # A rotated file cut short (disk full, compression killed) or not gzip at all:
            # what could be read is checked, and the rest shows as a line cut off here.
            yield Line(n + 1, b"", complete=False)


def _sqlite_lines(path: str) -> Iterator[Line]:
    try:
        conn = sqlite_connect(path, create=False)
        try:
            rows = conn.execute("SELECT id, line FROM piimw_audit ORDER BY id")
            for row_id, line in rows:
                yield Line(int(row_id), str(line).encode())
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:  # no piimw table, or not a database at all
        raise ConfigError(f"not a piimw audit database ({type(e).__name__})",
                          source=path) from None


@dataclass(frozen=True, slots=True)
class StoredHead:
    """What is stored beside a trail. ``found`` without ``head``: a head that is unreadable or
    (given a key) not authentic, which is evidence of tampering, unlike an absent one."""

    found: bool
    head: Head | None = None
    where: str = ""


def stored_head(source: str, key: AuditKey | None) -> StoredHead:
    """The signed head a JSONL sidecar or SQLite head row holds."""
    scheme, path = split_url(source)
    if scheme == "sqlite":
        try:
            conn = sqlite_connect(path, create=False)
            try:
                row = conn.execute("SELECT line FROM piimw_audit_head WHERE id = 1").fetchone()
            finally:
                conn.close()
        except sqlite3.Error:
            row = None
        raw = str(row[0]).encode() if row else b""
        where = "the head row"
    elif scheme != "jsonl" or path.endswith(".gz"):
        return StoredHead(False)
    else:
        try:
            fd = os.open(sidecar(path), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return StoredHead(False)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            raw = _pread_all(fd)
        finally:
            os.close(fd)
        where = sidecar(path).name
    if not raw.strip():  # a sidecar is created empty before the first batch is written
        return StoredHead(False)
    hit = read_head(_first_line(raw), key)
    return StoredHead(True, hit[0] if hit else None, where)


# -- the background writer ------------------------------------------------------------------
class _Flush:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class Writer:
    """A bounded queue drained by one daemon thread that writes batches to the sink.

    The request thread only enqueues (``put_nowait``; in ``fail_closed`` mode it may wait up to
    ``put_timeout``). Items are payload dicts or objects ``build`` turns into payloads in the
    writer thread. On a sink error the batch is dropped and counted, ``healthy`` turns false,
    and the sink is probed every ``retry_interval`` seconds until it works again.
    """

    BATCH = 512

    def __init__(self, sink: Sink, build: Callable[[Any], Mapping[str, Any] | None], *,
                 queue_size: int = 10000, fail_closed: bool = False,
                 put_timeout: float = 0.25, retry_interval: float = 1.0,
                 tick: Callable[[], Mapping[str, Any] | None] | None = None,
                 tick_interval: float = 1.0,
                 on_lines: Callable[[list[bytes]], None] | None = None) -> None:
        self.sink = sink
        self.on_lines = on_lines
        self.build = build
        self.queue_size = queue_size
        self.fail_closed = fail_closed
        self.put_timeout = put_timeout
        self.retry_interval = retry_interval
        self.tick = tick
        self.tick_interval = tick_interval
        self.dropped = 0
        self._dropped_logged = 0
        self.written = 0
        self.failures = 0
        self.sink_ok = True
        self._reset()

    def _reset(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(self.queue_size)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._pid = os.getpid()
        self._stopped = False

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's thread and queue are not ours
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    t = threading.Thread(target=self._run, name="piimw-audit", daemon=True)
                    t.start()
                    self._thread = t

    def submit(self, item: Any, *, count_drop: bool = True) -> bool:
        if self._stopped:
            self.dropped += count_drop
            return False
        self._ensure_thread()
        try:
            if self.fail_closed:
                self._queue.put(item, timeout=self.put_timeout)
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += count_drop
            return False
        return True

    @property
    def backlogged(self) -> bool:
        return self._queue.full()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is written (or dropped)."""
        if self._thread is None or self._pid != os.getpid():
            return True
        marker = _Flush()
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._stopped:
            return
        thread = self._thread if self._pid == os.getpid() else None
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                logger.warning("piimw: audit queue still full at shutdown; records dropped")
            thread.join(timeout)
        self._stopped = True

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        last_tick = last_probe = time.monotonic()
        while True:
            try:
                first = self._queue.get(timeout=min(self.tick_interval, self.retry_interval))
            except queue.Empty:
                first = None
            batch: list[Any] = [] if first is None else [first]
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            now = time.monotonic()
            if self.tick is not None and now - last_tick >= self.tick_interval:
                last_tick = now
                due = self._safe_tick()
                if due is not None:
                    batch.append(due)
            if not self.sink_ok and now - last_probe >= self.retry_interval:
                last_probe = now
                self._probe()
            if self._process(batch):
                return

    def _safe_tick(self) -> Mapping[str, Any] | None:
        assert self.tick is not None
        try:
            return self.tick()
        except Exception as exc:  # never let a summary bug kill the writer
            logger.error("piimw: audit summary failed (%s)", type(exc).__name__)
            return None

    def _process(self, batch: list[Any]) -> bool:
        payloads: list[Mapping[str, Any]] = []
        stop = False
        for item in batch:
            if item is _STOP:
                stop = True
            elif isinstance(item, _Flush):
                # Everything before the marker must be written first.
                self._write(payloads)
                payloads = []
                item.done.set()
            else:
                try:
                    built = item if isinstance(item, Mapping) else self.build(item)
                    if built is not None:
                        payloads.append(built)
                except Exception as exc:
                    self.dropped += 1
                    logger.error("piimw: audit record could not be built (%s)",
                                 type(exc).__name__)
        self._write(payloads)
        return stop

    def _write(self, payloads: list[Mapping[str, Any]]) -> None:
        if not payloads:
            return
        # Summaries state the loss since the last summary that made it to the sink: a lost
        # summary's count is carried forward, never lost with it.
        dropped = self.dropped
        payloads = [dict(p, dropped=dropped - self._dropped_logged)
                    if p.get("kind") == "summary" else p for p in payloads]
        try:
            lines = self.sink.append(payloads)
        except Exception as exc:
            self.failures += 1
            self.dropped += len(payloads)
            if self.sink_ok:
                logger.error("piimw: audit sink %s failed (%s); %d record(s) dropped",
                             _scheme(self.sink.url), type(exc).__name__, len(payloads))
            self.sink_ok = False
            return
        self.written += len(payloads)
        if any(p.get("kind") == "summary" for p in payloads):
            self._dropped_logged = dropped
        if self.on_lines is not None:
            self.on_lines(lines)
        if not self.sink_ok:
            logger.warning("piimw: audit sink %s works again", _scheme(self.sink.url))
        self.sink_ok = True

    def _probe(self) -> None:
        try:
            self.sink.probe()
        except Exception:
            return
        self.sink_ok = True


def _scheme(url: str) -> str:
    return url.partition("://")[0] or "jsonl"
