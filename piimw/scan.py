"""Find personal data that already leaked into files: logs, JSON logs, ``.gz``, trees, stdin.

Built for multi-gigabyte inputs: files are read in blocks of whole lines, blocks go to a
process pool with a bounded number in flight (constant memory), and results come back in
order. Findings carry a masked preview, never the raw value; a baseline stores fingerprints
(a hash over file, line content and category), never values.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import fnmatch
import gzip
import hashlib
import io
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import orjson

from piimw.audit.records import safe_pattern, suspicious_keys
from piimw.detect import Detectors, KnownValues, Span, find_all
from piimw.transform import mask_string, redact_token

BLOCK_SIZE = 1 << 20
MAX_LINE = 64 << 20  # a "line" longer than this is split (line numbers then drift by one)
PARALLEL_AFTER = 4 << 20  # bytes scanned in-process before starting the pool
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".tox", ".venv"})
FINGERPRINT_PREFIX = b"piimw-scan/v1\x00"
#: Byte order marks of the encodings read besides UTF-8 (UTF-32 first: it starts like UTF-16).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
#: What a damaged input raises part-way (a .gz cut short, not gzip at all, an I/O error).
READ_ERRORS = (EOFError, zlib.error, OSError)


@dataclass(frozen=True, slots=True)
class Hit:
    """One finding: where (1-based line, 1-based columns, end exclusive) and what, masked."""

    path: str
    line: int
    col: int
    end_col: int
    category: str
    detector: str
    preview: str
    fingerprint: str
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "line": self.line, "column": self.col,
                             "end_column": self.end_col, "category": self.category,
                             "detector": self.detector, "preview": self.preview,
                             "fingerprint": self.fingerprint}
        if self.field is not None:
            d["field"] = self.field
        return d


@dataclass(frozen=True)
class Input:
    display: str
    path: Path | None  # None: standard input
    size: int = 0
    encoding: str | None = None  # a UTF-16/32 codec (by its BOM); None: UTF-8

    @property
    def gz(self) -> bool:
        return self.path is not None and self.path.suffix == ".gz"


def fingerprint(path: str, line: str, category: str) -> str:
    h = hashlib.sha256(FINGERPRINT_PREFIX)
    h.update(path.encode("utf-8", "surrogateescape") + b"\x00" + category.encode() + b"\x00")
    h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:32]


# -- the worker side ------------------------------------------------------------------------
_STATE: dict[str, Any] = {}


def init_worker(detectors: Sequence[str] | None, known: Sequence[tuple[str, str]]) -> None:
    _STATE["detectors"] = Detectors(list(detectors) if detectors else None)
    kv = KnownValues()
    for value, category in known:
        kv.add(value, category)
    _STATE["known"] = kv if known else None


@dataclass
class BlockResult:
    """Hits with line numbers relative to the block (1 = its first line), and its size."""

    hits: list[Hit]
    redacted: bytes | None
    nbytes: int
    nlines: int


@dataclass(frozen=True, slots=True)
class Task:
    """A block of whole lines: its bytes, or where a worker reads them (no copy through pipes)."""

    display: str
    data: bytes | None
    file: str | None = None
    offset: int = 0
    length: int = 0
    redact: bool = False


def scan_block(task: Task) -> BlockResult:
    """Scan one block of whole lines. Runs in a worker process (or in-process)."""
    path, want_redacted, first_line = task.display, task.redact, 1
    data = task.data
    if data is None:
        assert task.file is not None
        with open(task.file, "rb") as f:
            f.seek(task.offset)
            data = f.read(task.length)
    text = data.decode("utf-8", "surrogateescape")
    det, known = _STATE["detectors"], _STATE["known"]
    keys = suspicious_keys(det, known)
    spans = _line_spans(text, find_all(text, det, known), det, known)
    hits: list[Hit] = []
    edits: list[tuple[int, int, str]] = []
    line_no, pos = first_line, 0
    by_line: dict[int, list[Span]] = {}
    starts: dict[int, int] = {}
    for s in spans:
        line_no += text.count("\n", pos, s.start)
        pos = s.start
        by_line.setdefault(line_no, []).append(s)
        starts.setdefault(line_no, text.rfind("\n", 0, s.start) + 1)
    json_candidates = _json_lines_with_escapes(text, first_line) if "\\u" in text or \
        "\\/" in text else {}
    for n, start in json_candidates.items():
        by_line.setdefault(n, [])
        starts.setdefault(n, start)
    for n in sorted(by_line):
        start = starts[n]
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        line_spans = [Span(s.start - start, s.end - start, s.category, s.detector)
                      for s in by_line[n]]
        fields = _json_fields(line) if line.lstrip().startswith("{") else None
        previews: dict[int, str] = {}
        suspicious = keys
        if fields is not None:
            line_spans = _escaped_hits(line, line_spans, fields, det, known, edits, start,
                                       previews)
            suspicious = _key_test(line, fields, line_spans, keys)
        for s in line_spans:
            value = line[s.start:s.end]
            field_ptr = _field_for(fields, s.start, suspicious) if fields is not None else None
            hits.append(Hit(path, n, s.start + 1, s.end + 1,
                            s.category, s.detector,
                            previews.get(s.start) or mask_string(value, s.category),
                            fingerprint(path, line, s.category), field_ptr))
            if s.detector != "json-escaped":
                edits.append((start + s.start, start + s.end, redact_token(s.category)))
    redacted = None
    if want_redacted:
        redacted = _apply(text, edits).encode("utf-8", "surrogateescape") if edits else data
    return BlockResult(hits, redacted, len(data), data.count(b"\n"))


def _line_spans(text: str, spans: list[Span], det: Any, known: Any) -> list[Span]:
    """Spans never cross a line: one that does is replaced by a rescan of its lines."""
    out: list[Span] = []
    for s in spans:
        if "\n" not in text[s.start:s.end]:
            out.append(s)
            continue
        a = text.rfind("\n", 0, s.start) + 1
        b = text.find("\n", s.end)
        b = len(text) if b < 0 else b
        offset = a
        for line in text[a:b].split("\n"):
            out.extend(Span(x.start + offset, x.end + offset, x.category, x.detector)
                       for x in find_all(line, det, known))
            offset += len(line) + 1
    out.sort(key=lambda s: s.start)
    dedup: list[Span] = []
    for s in out:
        if not dedup or s.start >= dedup[-1].end:
            dedup.append(s)
    return dedup


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    parts, pos = [], 0
    for a, b, rep in sorted(edits):
        if a < pos:
            continue
        parts.append(text[pos:a])
        parts.append(rep)
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


# -- JSON log lines -------------------------------------------------------------------------
def _json_lines_with_escapes(text: str, first_line: int) -> dict[int, int]:
    """Lines that are JSON objects with escapes (``\\u0040``) detectors cannot see through."""
    out: dict[int, int] = {}
    n, start = first_line, 0
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end]
        if ("\\u" in line or "\\/" in line) and line.lstrip().startswith("{"):
            out[n] = start
        n += 1
        start = end + 1
    return out


def _json_fields(line: str) -> list[tuple[int, int, str, bool]] | None:
    """String tokens of a JSON object line: (start, end, pointer, is_key); None if not JSON."""
    stack: list[list[Any]] = []  # [kind, key or index]
    out: list[tuple[int, int, str, bool]] = []
    i, n = 0, len(line)
    expect_key = False
    while i < n:
        c = line[i]
        if c == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= n:
                return None
            token = line[i:j + 1]
            if expect_key:
                stack[-1][1] = None
                out.append((i, j + 1, _pointer(stack), True))
                try:
                    stack[-1][1] = orjson.loads(token)
                except orjson.JSONDecodeError:
                    return None
            else:
                out.append((i, j + 1, _pointer(stack), False))
            i = j + 1
            continue
        if c == "{":
            stack.append(["o", None])
            expect_key = True
        elif c == "[":
            stack.append(["a", 0])
            expect_key = False
        elif c in "}]":
            if not stack:
                return None
            stack.pop()
            expect_key = False
        elif c == ":":
            expect_key = False
        elif c == ",":
            if stack and stack[-1][0] == "a":
                stack[-1][1] += 1
            expect_key = bool(stack) and stack[-1][0] == "o"
        i += 1
    return out if not stack else None


def _pointer(stack: list[list[Any]]) -> str:
    parts = []
    for kind, key in stack:
        if kind == "a":
            parts.append(str(key))
        elif key is not None:
            parts.append(str(key).replace("~", "~0").replace("/", "~1"))
    return "/" + "/".join(parts) if parts else "/"


def _field_for(fields: list[tuple[int, int, str, bool]], offset: int,
               suspicious: Callable[[str], bool]) -> str | None:
    for a, b, ptr, is_key in fields:
        if a <= offset < b:
            safe = safe_pattern(ptr, suspicious)  # keys of a log line may themselves be PII
            return f"{safe} (a key)" if is_key else safe
    return None


def _key_test(line: str, fields: list[tuple[int, int, str, bool]], spans: list[Span],
              keys: Callable[[str], bool]) -> Callable[[str], bool]:
    """``keys`` (the scan's detectors and known values), and every key of this line that a
    finding overlaps: the report must not print in a pointer what it masks as a finding."""
    found: set[str] = set()
    for a, b, _, is_key in fields:
        if is_key and any(s.start < b and a < s.end for s in spans):
            try:
                key = orjson.loads(line[a:b])
            except orjson.JSONDecodeError:
                continue
            found.add(str(key).replace("~", "~0").replace("/", "~1"))

    def suspicious(segment: str) -> bool:
        return segment in found or keys(segment)

    return suspicious


def _escaped_hits(line: str, spans: list[Span], fields: list[tuple[int, int, str, bool]],
                  det: Any, known: Any, edits: list[tuple[int, int, str]],
                  base: int, previews: dict[int, str]) -> list[Span]:
    """PII hidden behind JSON escapes: decode escaped strings, report the whole token."""
    covered = [(s.start, s.end) for s in spans]
    out = list(spans)
    for a, b, _, _ in fields:
        token = line[a:b]
        if "\\" not in token or any(a <= s < b for s, _ in covered):
            continue
        try:
            value = orjson.loads(token)
        except orjson.JSONDecodeError:
            continue
        found = find_all(value, det, known)
        if not found:
            continue
        cat = found[0].category
        out.append(Span(a, b, cat, "json-escaped"))
        first = found[0]
        previews[a] = mask_string(value[first.start:first.end], cat)
        cleaned = _apply(value, [(s.start, s.end, redact_token(s.category)) for s in found])
        edits.append((base + a, base + b, orjson.dumps(cleaned).decode()))
    out.sort(key=lambda s: s.start)
    return out


# -- reading --------------------------------------------------------------------------------
def iter_inputs(paths: Sequence[str], exclude: Sequence[str] = (),
                skipped: list[str] | None = None) -> Iterator[Input]:
    """Files to scan, in a stable order; ``-`` is stdin. Raises FileNotFoundError.

    Binary files of a directory walk are left out and appended to ``skipped`` (so the
    summary can say so); a UTF-16/32 file with a byte order mark is text.
    """
    for p in paths:
        if p == "-":
            yield Input("<stdin>", None)
            continue
        path = Path(p)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for name in sorted(files):
                    f = Path(root) / name
                    rel = f.relative_to(path).as_posix()
                    if _excluded(rel, name, exclude) or not f.is_file() or f.is_symlink():
                        continue
                    encoding, binary = _sniff(f)
                    if binary:
                        if skipped is not None:
                            skipped.append(f.as_posix())
                        continue
                    yield Input(f.as_posix(), f, f.stat().st_size, encoding)
        elif path.is_file():
            yield Input(path.as_posix(), path, path.stat().st_size, _sniff(path)[0])
        else:
            raise FileNotFoundError(p)


def _excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in patterns)


def _sniff(path: Path) -> tuple[str | None, bool]:
    """(encoding by byte order mark, binary?) from the start of a file (decompressed)."""
    gz = path.suffix == ".gz"
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            head = f.read(4 if gz else 4096)
    except READ_ERRORS:
        return None, not gz  # an unreadable .gz is reported when it is scanned
    encoding = _bom(head)[0]
    return encoding, encoding is None and not gz and b"\x00" in head


def _bom(head: bytes) -> tuple[str | None, int]:
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    return None, 0


class _Recoded:
    """A UTF-16/32 stream read as UTF-8 (its BOM dropped), so lines, columns and every
    detector work as for any other file."""

    def __init__(self, stream: IO[bytes], encoding: str) -> None:
        self._stream = stream
        self._decoder = codecs.getincrementaldecoder(encoding)("replace")
        self._skip = True  # the BOM, decoded as U+FEFF

    def read(self, size: int) -> bytes:
        while True:
            raw = self._stream.read(size)
            text = self._decoder.decode(raw, final=not raw)
            if self._skip and text:
                text, self._skip = text.removeprefix("\ufeff"), False
            if text or not raw:
                return text.encode("utf-8", "replace")


@contextlib.contextmanager
def open_input(inp: Input) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """(stream of decompressed bytes, underlying raw file for progress)."""
    if inp.path is None:
        yield sys.stdin.buffer, sys.stdin.buffer
        return
    raw = open(inp.path, "rb")  # noqa: SIM115 - closed below, whatever happens
    try:
        if inp.gz:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield cast(IO[bytes], gz), raw
        else:
            yield raw, raw
    finally:
        raw.close()


def iter_blocks(stream: IO[bytes], block_size: int = BLOCK_SIZE) -> Iterator[tuple[int, bytes]]:
    """(first line number, bytes of whole lines); at least one (maybe empty) block.

    A read error (a .gz cut short) is raised after the blocks read before it.
    """
    line = 1
    carry = b""
    emitted = False
    error: BaseException | None = None
    while error is None:
        chunk, error = _read_block(stream, block_size)
        if not chunk:
            break
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            if len(buf) < MAX_LINE:
                carry = buf
                continue
            cut = len(buf) - 1
        block, carry = buf[:cut + 1], buf[cut + 1:]
        yield line, block
        emitted = True
        line += block.count(b"\n")
    if carry or not emitted:
        yield line, carry
    if error is not None:
        raise error


def _read_block(stream: Any, size: int) -> tuple[bytes, BaseException | None]:
    """Up to ``size`` bytes in small reads, so a read error loses only what follows it."""
    read = getattr(stream, "read1", stream.read)
    parts: list[bytes] = []
    got = 0
    try:
        while got < size:
            chunk = read(size - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    except READ_ERRORS as exc:
        return b"".join(parts), exc
    return b"".join(parts), None


def block_bounds(path: Path, block_size: int = BLOCK_SIZE) -> Iterator[tuple[int, int]]:
    """(offset, length) of blocks of whole lines, found by reading a little past each cut."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos < size:
            end = min(pos + block_size, size)
            f.seek(end)
            while end < size:
                chunk = f.read(65536)
                if not chunk:
                    break
                nl = chunk.find(b"\n")
                if nl >= 0:
                    end += nl + 1
                    break
                end += len(chunk)
                if end - pos >= MAX_LINE:
                    break
            yield pos, end - pos
            pos = end
    if size == 0:
        yield 0, 0


def iter_tasks(inp: Input, block_size: int, redact: bool,
               raw_tell: Callable[[], int] | None = None) -> Iterator[tuple[Task, int]]:
    """Tasks for one input, with the raw bytes each accounts for (for the progress bar)."""
    if inp.path is not None and not inp.gz and inp.encoding is None:
        name = str(inp.path)
        for offset, length in block_bounds(inp.path, block_size):
            yield Task(inp.display, None, name, offset, length, redact), length
        return
    with open_input(inp) as (stream, raw):
        before = _tell(raw)
        source = cast(IO[bytes], _Recoded(stream, inp.encoding)) if inp.encoding else stream
        for _, data in iter_blocks(source, block_size):
            pos = _tell(raw)
            read = max(pos - before, 0) if pos >= 0 else len(data)
            before = pos
            yield Task(inp.display, data, redact=redact), read


# -- progress -------------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total: int, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total = total
        self.done = 0
        self.t0 = time.monotonic()
        self._last = 0.0

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.1:
            return
        self._last = now
        rate = self.done / max(now - self.t0, 1e-6) / 1e6
        mb = self.done / 1e6
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"[{bar:<30}] {frac:4.0%} {mb:,.1f}/{self.total / 1e6:,.1f} MB {rate:,.1f} MB/s"
        else:
            text = f"{mb:,.1f} MB {rate:,.1f} MB/s"
        self.stream.write("\r" + text + " " * 4)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


# -- the scan -------------------------------------------------------------------------------
@dataclass
class Options:
    detectors: tuple[str, ...] | None = None
    known: list[tuple[str, str]] = field(default_factory=list)
    jobs: int = 0  # 0: one per CPU
    block_size: int = BLOCK_SIZE
    baseline: frozenset[str] = frozenset()
    redact_dir: Path | None = None
    in_place: bool = False
    progress: bool = True
    parallel_after: int = PARALLEL_AFTER


@dataclass
class Summary:
    files: int = 0
    bytes: int = 0
    findings: int = 0
    suppressed: int = 0
    files_with_findings: int = 0
    seconds: float = 0.0
    fingerprints: set[str] = field(default_factory=set)
    by_category: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, error type)
    skipped: list[str] = field(default_factory=list)  # binary files left out of a walk

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "findings": self.findings,
                "suppressed": self.suppressed, "files_with_findings": self.files_with_findings,
                "seconds": round(self.seconds, 3), "by_category": self.by_category,
                "unreadable": len(self.unreadable), "skipped_binary": len(self.skipped)}


class _Outputs:
    """Cleaned copies: under ``redact_dir`` mirroring the input, or in place via a temp file."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.current: io.BufferedIOBase | None = None
        self.raw: io.BufferedIOBase | None = None
        self.tmp: Path | None = None
        self.target: Path | None = None
        self.encoding: str | None = None

    def open(self, inp: Input) -> None:
        o = self.options
        if o.in_place:
            assert inp.path is not None
            target = inp.path
        else:
            assert o.redact_dir is not None
            rel = Path(inp.display.lstrip("/")) if inp.path is not None else Path("stdin.txt")
            rel = Path(*[p for p in rel.parts if p not in ("..", ".")])
            target = o.redact_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".piimw-", dir=target.parent)
        self.raw = raw = cast(io.BufferedIOBase, os.fdopen(fd, "wb"))
        self.current = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if inp.gz else raw
        self.tmp, self.target = Path(tmp), target
        self.encoding = inp.encoding
        if inp.encoding:  # written back in the input's encoding, BOM first
            self.current.write("\ufeff".encode(inp.encoding))

    def write(self, data: bytes) -> None:
        assert self.current is not None
        if self.encoding:  # blocks end at a line break: each is whole characters
            data = data.decode("utf-8", "replace").encode(self.encoding)
        self.current.write(data)

    def close(self, ok: bool = True) -> None:
        if self.current is None:
            return
        if self.current is not self.raw:
            self.current.close()
        assert self.raw is not None
        assert self.tmp is not None
        assert self.target is not None
        self.raw.close()
        if ok:
            if self.target.exists():
                os.chmod(self.tmp, self.target.stat().st_mode & 0o7777)
            os.replace(self.tmp, self.target)
        else:
            self.tmp.unlink(missing_ok=True)
        self.current = self.raw = None


def _context() -> Any:
    """``fork`` when nothing else runs (instant workers); ``forkserver`` when threads do."""
    linux = sys.platform.startswith("linux")  # (a variable: checked on every platform)
    if not linux:
        return multiprocessing.get_context("spawn")
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["piimw.scan"])
    return ctx


@dataclass
class _FileState:
    file: Input | None = None
    found: bool = False
    line: int = 1


def scan(inputs: Sequence[Input], options: Options, on_hit: Callable[[Hit], None]) -> Summary:
    """Scan ``inputs`` in order, calling ``on_hit`` for each finding not in the baseline.

    Blocks are scanned in-process until ``parallel_after`` bytes, then by a pool with at most
    two blocks per worker in flight; results are handled in input order.
    """
    summary = Summary()
    t0 = time.monotonic()
    jobs = options.jobs or os.cpu_count() or 1
    want_redacted = options.redact_dir is not None or options.in_place
    progress = Progress(sum(i.size for i in inputs)) if options.progress else None
    init_worker(options.detectors, options.known)
    outputs = _Outputs(options) if want_redacted else None
    pool: Any = None
    pending: deque[tuple[Any, Input, bool, int]] = deque()
    state = _FileState()

    def handle(res: BlockResult, inp: Input, last: bool, read: int) -> None:
        if state.file is not inp:
            state.file, state.found, state.line = inp, False, 1
            summary.files += 1
            if outputs is not None:
                outputs.open(inp)
        for h in res.hits:
            summary.fingerprints.add(h.fingerprint)
            if h.fingerprint in options.baseline:
                summary.suppressed += 1
                continue
            summary.findings += 1
            summary.by_category[h.category] = summary.by_category.get(h.category, 0) + 1
            if not state.found:
                state.found = True
                summary.files_with_findings += 1
            on_hit(dataclasses.replace(h, line=h.line + state.line - 1))
        state.line += res.nlines
        summary.bytes += res.nbytes
        if outputs is not None and res.redacted is not None:
            outputs.write(res.redacted)
        if last and outputs is not None:
            # never replace a file by the readable part of it
            outputs.close(ok=not any(p == inp.display for p, _ in summary.unreadable))
        if progress is not None:
            progress.advance(read)

    try:
        for inp in inputs:
            tasks = _readable(inp, iter_tasks(inp, options.block_size, want_redacted), summary)
            nxt = next(tasks, None)
            while nxt is not None:
                task, read = nxt
                nxt = next(tasks, None)
                last = nxt is None
                if pool is None and jobs > 1 and summary.bytes > options.parallel_after:
                    pool = _context().Pool(jobs, init_worker, (options.detectors, options.known))
                if pool is None:
                    handle(scan_block(task), inp, last, read)
                    continue
                pending.append((pool.apply_async(scan_block, (task,)), inp, last, read))
                while len(pending) >= jobs * 2:
                    fut, p_inp, p_last, p_read = pending.popleft()
                    handle(fut.get(), p_inp, p_last, p_read)
        while pending:
            fut, p_inp, p_last, p_read = pending.popleft()
            handle(fut.get(), p_inp, p_last, p_read)
    except BaseException:
        if outputs is not None:
            outputs.close(ok=False)
        raise
    finally:
        if pool is not None:
            pool.terminate() if pending else pool.close()
            pool.join()
        if progress is not None:
            progress.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _readable(inp: Input, tasks: Iterator[tuple[Task, int]],
              summary: Summary) -> Iterator[tuple[Task, int]]:
    """The tasks of one input until it fails to read (named in ``summary``): a .gz cut short
    must not stop the scan of the rest, nor hide what could be read of it."""
    try:
        yield from tasks
    except READ_ERRORS as exc:
        summary.unreadable.append((inp.display, type(exc).__name__))


def _tell(raw: IO[bytes]) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return -1


# -- baselines ------------------------------------------------------------------------------
def read_baseline(path: Path) -> frozenset[str]:
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict) or not isinstance(data.get("fingerprints"), list):
        raise ValueError("not a piimw scan baseline")
    return frozenset(str(f) for f in data["fingerprints"])


def write_baseline(path: Path, fingerprints: set[str]) -> None:
    doc = {"version": 1, "tool": "piimw scan",
           "note": "fingerprints of accepted findings: hash of file, line content and "
                   "category; no values", "fingerprints": sorted(fingerprints)}
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
