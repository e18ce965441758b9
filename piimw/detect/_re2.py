"""A thin, fast handle on one RE2 program: "where is the next match at or after ``pos``?".

google-re2's Python ``search`` builds a generator and a match object per call (about 1 µs of
overhead on a 1.5 µs call); the scanners make one call per candidate, so they use the compiled
program's ``Match`` method directly when it is there and fall back to the public API otherwise.

Windows: leftmost-longest matching has to run past a match for as long as some alternative could
still extend it, so on a long run of token characters (``eyJ...`` repeated) every match would cost
a scan to the end of the run, which is quadratic overall. Each call therefore first searches a
window of ``WINDOW`` bytes. A match well inside the window is the answer; one that reaches the
window's edge might be longer and is redone without the limit (long PEM blocks, long tokens). If
the window holds no match, or only one in its last ``OVERLAP`` bytes (where an earlier candidate
could be crossing the edge), the search is repeated without a limit, which sees candidates of any
length whole. Dense matches in a long run thus cost at most a window each; the unbounded searches
happen at most once per ``WINDOW - OVERLAP`` bytes of match-free text.

Patterns are bytes and RE2 runs in Latin-1 mode: the callers hand in ``str.encode("ascii",
"replace")`` (detectors) or UTF-8 (known values), and want byte offsets back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import re2

__all__ = ["OVERLAP", "WINDOW", "PatternError", "Searcher", "compile_searcher"]

WINDOW = 8192
OVERLAP = 512

Searcher = Callable[[bytes, int], "tuple[int, int] | None"]


class PatternError(ValueError):
    """RE2 rejected a pattern. The message never repeats the pattern (it may hold PII)."""


def _options(*, longest: bool, max_mem: int) -> Any:
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.longest_match = longest
    opts.max_mem = max_mem
    opts.log_errors = False  # RE2 would print the offending pattern to stderr
    opts.never_capture = True
    return opts


def compile_searcher(
    pattern: bytes, *, longest: bool = True, max_mem: int = 64 << 20, private: bool = False
) -> Searcher:
    """Compile ``pattern`` and return ``search(data, pos) -> (start, end) | None``.

    ``private=True`` keeps the program out of google-re2's module-level LRU cache: patterns built
    from a request's known values are personal data and must die with the request.
    """
    opts = _options(longest=longest, max_mem=max_mem)
    make = getattr(re2, "_Regexp", None) if private else None
    try:
        compiled = make(pattern, opts) if make is not None else re2.compile(pattern, opts)
    except re2.error:
        raise PatternError("RE2 could not compile a detector pattern") from None
    raw = getattr(compiled, "_regexp", None)
    anchor = getattr(getattr(re2, "_Anchor", None), "UNANCHORED", None)
    raw_match = getattr(raw, "Match", None) if anchor is not None else None

    def match(data: bytes, pos: int, end: int) -> tuple[int, int]:
        if raw_match is not None:
            span: tuple[int, int] = raw_match(anchor, data, pos, end)[0]
            return span
        m = compiled.search(data, pos, end)
        return (-1, -1) if m is None else (m.start(), m.end())

    def search(data: bytes, pos: int) -> tuple[int, int] | None:
        size = len(data)
        end = pos + WINDOW
        if end < size:
            hit = match(data, pos, end)
            start, stop = hit
            if start >= 0:
                if stop == end:  # it may go on past the window
                    return match(data, start, size)
                if start < end - OVERLAP:
                    return hit
        # Nothing in the window, or only near its edge where an earlier candidate may cross it:
        # one unbounded search sees whole candidates of any length.
        hit = match(data, pos, size)
        return None if hit[0] < 0 else hit

    if raw_match is None:
        return search

    def search_fast(data: bytes, pos: int) -> tuple[int, int] | None:
        size = len(data)
        if pos + WINDOW >= size:  # a short text (a log line): one call, no windows
            hit: tuple[int, int] = raw_match(anchor, data, pos, size)[0]
            return None if hit[0] < 0 else hit
        return search(data, pos)

    return search_fast
