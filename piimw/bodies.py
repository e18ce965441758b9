"""Bytes of a body as piimw inspects them: content codings, and JSON re-serialization.

Shared by the exchange (responses, request encodings) and the outbound event guard, so
that what piimw inspects and what it forwards are read the same way everywhere.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = ["MULTIPLE", "TooLarge", "content_coding", "declared_length", "decode_content",
           "dumps_exact",
           "encode_content", "forwards_what_was_read", "has_exponent", "loads_exact",
           "may_lose_numbers"]

#: Codings piimw can undo. ``wbits`` 47: gzip or zlib header, detected; 15: zlib (deflate).
_WBITS = {b"gzip": 47, b"x-gzip": 47, b"deflate": 15}
#: Digits to "0", anything else to a space: a run of "0"s is a run of digits.
_DIGIT_MASK = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
#: Integers orjson reads as floats (beyond 64 bits) have at least 19 digits.
_LONG_RUN = b"0" * 19
#: More than one coding, or one given twice: never undone (the body is withheld or refused).
MULTIPLE = b"multiple"


class TooLarge(ValueError):
    """The body, its coding undone, is larger than the limit."""


def declared_length(value: str | bytes | None) -> int | None:
    """A ``Content-Length`` value as a number, or None unless it is ASCII digits only.

    ``str.isdigit`` also accepts ``"²"``, on which ``int`` raises (a 500 with a traceback
    once), and ``int`` also reads signs, spaces and underscores, which HTTP does not allow.
    """
    if not value or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def content_coding(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The body's one content coding (lowercased), None for none or ``identity``.

    Every ``Content-Encoding`` field counts, not only the first: with ``identity`` and
    ``gzip`` in two fields a client undoes gzip, and reading the first alone would let
    compressed bytes pass as inspected. More than one coding reads as :data:`MULTIPLE`.
    """
    found: list[bytes] = []
    for name, value in headers:
        if name == b"content-encoding":
            found += [c for c in (p.strip().lower() for p in value.split(b","))
                      if c and c != b"identity"]
    if not found:
        return None
    return found[0] if len(found) == 1 else MULTIPLE


def decode_content(body: bytes, coding: bytes | None, limit: int) -> bytes:
    """``body`` with its coding undone; ValueError if it cannot be, wholly, within ``limit``.

    A gzip body may hold several members (clients decode them all) and trailing bytes after
    the first: anything left after the first stream, or a stream cut short, is refused, so
    that no part of the body goes out uninspected.
    """
    if coding is None:
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise ValueError("unsupported content-encoding")
    d = zlib.decompressobj(wbits=wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise ValueError("bad compressed data") from e
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge("decompressed body too large")
    if not d.eof or d.unused_data:
        raise ValueError("compressed data cut short or followed by more data")
    return out


def encode_content(body: bytes, coding: bytes | None) -> bytes:
    if coding in (b"gzip", b"x-gzip"):
        return gzip.compress(body, compresslevel=6, mtime=0)
    if coding == b"deflate":
        return zlib.compress(body)
    return body


def forwards_what_was_read(raw: bytes, doc: Any) -> bool:
    """May ``raw`` (valid JSON, parsed by orjson into ``doc``) go out as it is?

    orjson keeps the last of a key given twice; the bytes still hold the first, which no
    check saw (and parsers that keep the first would show). Bytes equal to a serialization
    of ``doc`` hold no such key: orjson's compact one (Starlette and most Flask responses),
    then the standard library's default (Django's ``JsonResponse``) and compact ASCII one
    (Flask's for non-ASCII text). Otherwise the standard library looks for a repeated key,
    at several times the cost of parsing.
    """
    try:
        if orjson.dumps(doc) == raw:
            return True
    except orjson.JSONEncodeError:  # an integer beyond 64 bits (read by loads_exact)
        pass
    try:
        for separators in ((", ", ": "), (",", ":")):
            if json.dumps(doc, separators=separators).encode("ascii") == raw:
                return True
    except (TypeError, ValueError, UnicodeEncodeError):
        pass  # not what the standard library writes: look for a repeated key
    twice = False

    def pairs(items: list[tuple[str, Any]]) -> None:
        nonlocal twice
        if not twice and len({k for k, _ in items}) != len(items):
            twice = True

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return False
    return not twice


def has_exponent(data: bytes) -> bool:
    """Does JSON written by orjson hold a number with an exponent (``1e+19``)? orjson writes
    every float of 1e16 or more that way, the floats it read integers beyond 64 bits as
    included. ``+`` is rare in JSON and found with ``memchr``; ``e+`` would be searched for
    slowly, ``e`` being common."""
    i = data.find(b"+")
    while i > 0:
        if data[i - 1] == 0x65:  # "e"
            return True
        i = data.find(b"+", i + 1)
    return False


def may_lose_numbers(raw: bytes) -> bool:
    """Could orjson have read a number of ``raw`` inexactly? It reads an integer beyond 64
    bits as a float, so a rewritten body would change an id that is no one's personal data.
    Any such integer is a run of 19 digits or more (a long digit string also answers yes)."""
    return raw.translate(_DIGIT_MASK).find(_LONG_RUN) >= 0


def loads_exact(raw: bytes) -> Any:
    """``raw`` (already accepted by orjson) read with the standard library: integers exact.
    ValueError where it cannot (nested deeper than the standard library recurses)."""
    try:
        return json.loads(raw)
    except RecursionError as e:
        raise ValueError("JSON nested too deep to read exactly") from e


def dumps_exact(value: Any) -> bytes:
    """Compact JSON, as orjson writes it, that also writes integers beyond 64 bits."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8", "surrogatepass")
