"""The values one request brought in, found again wherever they turn up (logs, errors, responses).

A value is looked for in every form it typically leaks in: as is, HTML-escaped (``html.escape``
and the markupsafe/Jinja flavour), URL-encoded (``quote`` with and without ``/``, ``quote_plus``),
JSON-escaped (orjson, and ``json.dumps`` with ``ensure_ascii`` and with ``\\/``), ``repr``-escaped.
Email addresses match regardless of ASCII case. Values made of letters/digits and separators with
at least 7 digits (phone, card, SSN, IBAN, dates) also match with any separators
(``[\\s\\-.()]*``) between their characters, and a ``+`` phone number also without its country code.

Truncation: a value longer than 16 characters is also found when a prefix of at least 16
characters of it ends the text or is followed by ``...`` or ``\u2026`` (how reporters and log
formatters cut long values). Only the first 256 characters are considered for this (RE2 limits the
nesting the pattern needs); the span covers the prefix, not the ellipsis.

All forms of all values are compiled into one RE2 alternation (leftmost-longest), built lazily on
the first ``find`` after an ``add`` and reused until the next ``add``: requests add a few values
and search many texts. The program is kept out of google-re2's module cache because it is built
from personal data.
"""

from __future__ import annotations

import html
import json
import math
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import orjson
import phonenumbers

from piimw.detect._re2 import Searcher, compile_searcher
from piimw.detect.spans import Span, merge_spans
from piimw.taxonomy import ALIASES

__all__ = ["KnownValues"]

_MIN_CHARS = 4
_MIN_DIGITS = 4
_NORMALIZE_MIN_DIGITS = 7
_TRUNCATED_MIN = 16
_TRUNCATED_MAX = 256
_CHUNK_BYTES = 1 << 20  # alternatives per RE2 program, by pattern size

_SEPARATORS = "\t\n\f\r -.()"
_DROP_SEPARATORS = str.maketrans("", "", _SEPARATORS)
_SEPARATOR_CLASS = rb"[\t\n\f\r \-.()]*"
_DIGIT_LIKE_EXTRA = frozenset(_SEPARATORS + "+/")
_DROP_DIGIT_LIKE = str.maketrans("", "", _SEPARATORS + "+/")
_DROP_LETTERS = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: Digits as "0", every other byte as " ": ``b"0000000" in mask`` finds a run of 7 digits.
_DIGIT_MASK = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_PHONE_CATEGORY = "user.contact.phone_number"
#: Texts up to this size are first probed with plain string tests (no RE2 program is built
#: unless one of them hits); longer texts go straight to the compiled program.
_PROBE_MAX = 1 << 14
#: After this many probed texts the RE2 program is built after all: a few microseconds slower
#: per text than the program, the probe pays for skipping its compilation (~0.6 ms) only while
#: a request checks fewer texts than this.
_PROBE_CALLS = 128
_LOWER_BYTES = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_SEPARATOR_BYTES = _SEPARATORS.encode("ascii")
_EMAIL_CATEGORY = "user.contact.email"


def _escape_table(fold: bool) -> tuple[bytes, ...]:
    table: list[bytes] = []
    for byte in range(256):
        ch = chr(byte)
        if ch.isascii() and ch.isdigit():
            table.append(bytes([byte]))
        elif ch.isascii() and ch.isalpha():
            if fold:
                table.append(b"[" + ch.upper().encode() + ch.lower().encode() + b"]")
            else:
                table.append(bytes([byte]))
        else:
            table.append(b"\\x%02x" % byte)
    return tuple(table)


_EXACT = _escape_table(fold=False)
_FOLDED = _escape_table(fold=True)


def _literal(raw: bytes, fold: bool = False) -> bytes:
    """RE2 (Latin-1 mode) source matching exactly the bytes ``raw``."""
    table = _FOLDED if fold else _EXACT
    return b"".join([table[b] for b in raw])


def _encode(text: str) -> bytes:
    # Lone surrogates cannot be UTF-8; pass them through so values and texts agree byte for byte.
    return text.encode("utf-8", "surrogatepass")


def _forms(value: str) -> set[str]:
    """The ways ``value`` is commonly written into HTML, URLs, JSON and Python reprs."""
    json_forms = {json.dumps(value)[1:-1]}
    with suppress(orjson.JSONEncodeError):  # lone surrogates cannot be serialized by orjson
        json_forms.add(orjson.dumps(value)[1:-1].decode())
    if "/" in value:  # some encoders (PHP, Java) also escape "/"
        json_forms |= {f.replace("/", "\\/") for f in json_forms}
    forms = {
        value,
        html.escape(value, quote=True),
        html.escape(value, quote=False).replace('"', "&#34;").replace("'", "&#39;"),
        repr(value)[1:-1],
        *json_forms,
    }
    with suppress(UnicodeEncodeError):  # nor percent-encoded
        forms.update((quote(value), quote(value, safe=""), quote_plus(value)))
    forms.discard("")
    return forms


def _normalizable(value: str) -> str:
    """The letters and digits of a phone/card/SSN/IBAN-like value, or "" if it is not one."""
    body = value[1:] if value.startswith("+") else value
    chars = body.translate(_DROP_DIGIT_LIKE)
    # Every character a separator, "+", "/" or an ASCII letter or digit; at least 7 digits.
    if not chars or not (chars.isascii() and chars.isalnum()):
        return ""
    if len(chars.translate(_DROP_LETTERS)) < _NORMALIZE_MIN_DIGITS:
        return ""
    return chars


def _national_digits(value: str) -> str:
    """``+1 415 555 2671`` -> ``4155552671``: the number as written without the country code."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return ""
    nsn = str(phonenumbers.national_significant_number(number))
    return nsn if len(nsn) >= _NORMALIZE_MIN_DIGITS else ""


def _spaced(chars: str) -> bytes:
    """Characters in order with any run of separators between them."""
    return _SEPARATOR_CLASS.join(_literal(ch.encode()) for ch in chars)


def _truncated(value: str) -> bytes:
    """A prefix of ``value`` (at least 16 chars) followed by an ellipsis or the end of the text."""
    chars = value[:_TRUNCATED_MAX]
    head = _literal(_encode(chars[:_TRUNCATED_MIN]))
    tail = b""
    for ch in reversed(chars[_TRUNCATED_MIN:]):
        tail = b"(?:" + _literal(_encode(ch)) + tail + b")?"
    return head + tail + rb"(?:\.\.\.|\xe2\x80\xa6|$)"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class _Matcher:
    """Compiled programs plus the tables that map a match back to its value's category.

    No ``repr``: tracebacks that capture locals must not print the values.
    """

    searchers: tuple[Searcher, ...]
    exact: dict[str, str]
    folded: dict[str, str]
    normalized: dict[str, str]
    long_values: tuple[tuple[str, str], ...]

    def resolve(self, matched: str) -> tuple[str, int]:
        """Category of the value ``matched`` came from, and how many trailing characters (an
        ellipsis after a truncated value) are not part of it."""
        found = self.exact.get(matched) or self.folded.get(matched.lower())
        if found:
            return found, 0
        found = self.normalized.get(matched.translate(_DROP_SEPARATORS))
        if found:
            return found, 0
        prefix = _strip_ellipsis(matched)
        for value, category in self.long_values:
            if value.startswith(prefix):
                return category, len(matched) - len(prefix)
        return "user", 0  # unreachable by construction; never drop a match for want of a label


def _strip_ellipsis(matched: str) -> str:
    if matched.endswith("..."):
        return matched[:-3]
    if matched.endswith("\u2026"):
        return matched[:-1]
    return matched


def _build(values: dict[str, str]) -> _Matcher:
    alternatives: list[bytes] = []
    exact: dict[str, str] = {}
    folded: dict[str, str] = {}
    normalized: dict[str, str] = {}
    long_values: list[tuple[str, str]] = []
    for value, category in values.items():
        fold = category.startswith(_EMAIL_CATEGORY) or "@" in value
        for form in _forms(value):
            exact.setdefault(form, category)
            if fold:
                folded.setdefault(form.lower(), category)
            alternatives.append(_literal(_encode(form), fold))
        chars = _normalizable(value)
        variants = [chars] if chars else []
        if value.startswith("+") and (chars or category.startswith(_PHONE_CATEGORY)):
            national = _national_digits(value)
            if national:
                variants.append(national)
        for variant in variants:
            normalized.setdefault(variant, category)
            alternatives.append(_spaced(variant))
        if len(value) > _TRUNCATED_MIN:
            long_values.append((value, category))
            alternatives.append(_truncated(value))
    # Longest first only to make chunking deterministic; RE2 picks the longest match anyway.
    alternatives = sorted(set(alternatives), key=lambda a: (-len(a), a))
    searchers: list[Searcher] = []
    chunk: list[bytes] = []
    size = 0
    for alt in alternatives:
        if chunk and size + len(alt) > _CHUNK_BYTES:
            searchers.append(_compile(chunk))
            chunk, size = [], 0
        chunk.append(alt)
        size += len(alt) + 5
    if chunk:
        searchers.append(_compile(chunk))
    return _Matcher(tuple(searchers), exact, folded, normalized, tuple(long_values))


def _compile(alternatives: list[bytes]) -> Searcher:
    pattern = b"|".join(b"(?:" + a + b")" for a in alternatives)
    return compile_searcher(pattern, max_mem=256 << 20, private=True)


class _Probe:
    """"Does the matcher match anywhere in this text?", answered with plain byte-string tests.

    Exactly equivalent to the RE2 program's answer (both look at the UTF-8 bytes), without
    building it, which costs most of a millisecond per request: every form that differs from
    its value carries a marker the text must contain (``%`` or ``+`` for URL encoding, ``&``
    for HTML, a backslash for JSON and ``repr``), so each family of forms is computed only for
    texts that have its marker; ASCII case folding is a byte translation; digit variants are
    compared with the separators deleted from the text (the program allows any run of them
    between their characters); truncated prefixes are extended character by character.
    No ``repr``: it holds the values.
    """

    __slots__ = ("_families", "_national", "_values", "calls", "folded", "long_values",
                 "normalized", "raw", "wants_flat")

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.calls = 0
        self.raw: list[bytes] = []
        self.folded: list[bytes] = []
        self.normalized: list[bytes] = []
        self.long_values: list[str] = []
        self._national: list[bytes] | None = None
        self._families: dict[str, tuple[list[bytes], list[bytes]]] = {}
        plus = False
        for value, category in values.items():
            raw = _encode(value)
            if _folds(value, category):
                self.folded.append(raw.translate(_LOWER_BYTES))
            else:
                self.raw.append(raw)
            chars = _normalizable(value)
            if chars:
                self.normalized.append(chars.encode("ascii"))
            plus = plus or value.startswith("+")
            if len(value) > _TRUNCATED_MIN:
                self.long_values.append(value[:_TRUNCATED_MAX])
        self.wants_flat = plus or bool(self.normalized)

    def _family(self, marker: str) -> tuple[list[bytes], list[bytes]]:
        """Forms (exact, ASCII-folded) of the family whose changed forms contain ``marker``."""
        got = self._families.get(marker)
        if got is None:
            exact: list[bytes] = []
            folded: list[bytes] = []
            for value, category in self._values.items():
                fold = _folds(value, category)
                for form in _family_forms(value, marker):
                    if form != value:
                        raw = _encode(form)
                        if fold:
                            folded.append(raw.translate(_LOWER_BYTES))
                        else:
                            exact.append(raw)
            got = self._families[marker] = (exact, folded)
        return got

    def _national_variants(self) -> list[bytes]:
        if self._national is None:
            self._national = [n.encode("ascii") for value, category in self._values.items()
                              if value.startswith("+") and (_normalizable(value)
                                                            or category.startswith(
                                                                _PHONE_CATEGORY))
                              and (n := _national_digits(value))]
        return self._national

    def hit(self, text: str) -> bool:
        data = _encode(text)
        for form in self.raw:
            if form in data:
                return True
        lowered = data.translate(_LOWER_BYTES) if self.folded else data
        for form in self.folded:
            if form in lowered:
                return True
        if (b"%" in data or b"+" in data) and self._family_hit("%", data, lowered):
            return True
        if b"&" in data and self._family_hit("&", data, lowered):
            return True
        if b"\\" in data and self._family_hit("\\", data, lowered):
            return True
        if self.wants_flat:
            flat = data.translate(None, _SEPARATOR_BYTES)
            for chars in self.normalized:
                if chars in flat:
                    return True
            if b"0000000" in flat.translate(_DIGIT_MASK):
                for chars in self._national_variants():
                    if chars in flat:
                        return True
        return any(_truncated_hit(text, value) for value in self.long_values)

    def _family_hit(self, family: str, data: bytes, lowered: bytes) -> bool:
        exact, folded = self._family(family)
        for form in exact:
            if form in data:
                return True
        if folded:
            if lowered is data:
                lowered = data.translate(_LOWER_BYTES)
            for form in folded:
                if form in lowered:
                    return True
        return False


def _folds(value: str, category: str) -> bool:
    return category.startswith(_EMAIL_CATEGORY) or "@" in value


def _family_forms(value: str, marker: str) -> set[str]:
    """The forms of one family (as :func:`_forms` writes them); only the changed ones matter."""
    forms: set[str] = set()
    if marker == "%":
        with suppress(UnicodeEncodeError):
            forms.update((quote(value), quote(value, safe=""), quote_plus(value)))
    elif marker == "&":
        forms.add(html.escape(value, quote=True))
        forms.add(html.escape(value, quote=False).replace('"', "&#34;").replace("'", "&#39;"))
    else:
        forms.add(repr(value)[1:-1])
        json_forms = {json.dumps(value)[1:-1]}
        with suppress(orjson.JSONEncodeError):
            json_forms.add(orjson.dumps(value)[1:-1].decode())
        if "/" in value:
            json_forms |= {f.replace("/", "\\/") for f in json_forms}
        forms |= json_forms
    forms.discard("")
    return forms


def _truncated_hit(text: str, chars: str) -> bool:
    """A prefix of ``chars`` (16 characters or more) followed by an ellipsis or the end."""
    head = chars[:_TRUNCATED_MIN]
    size = len(text)
    i = text.find(head)
    while i >= 0:
        limit = min(len(chars), size - i)
        k = _TRUNCATED_MIN
        while True:
            end = i + k
            if end == size or text.startswith(("...", "\u2026"), end):
                return True
            if k >= limit or text[end] != chars[k]:
                break
            k += 1
        i = text.find(head, i + 1)
    return False


class KnownValues:
    """Values this request brought in (mutable per request; not shared between requests)."""

    __slots__ = ("_matcher", "_probe", "_values")

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._matcher: _Matcher | None = None
        self._probe: _Probe | None = None

    def add(self, value: str | int | float, category: str) -> None:
        """Remember ``value`` as personal data of ``category`` (a key or alias).

        Values shorter than 4 characters (after stripping), or digit strings with fewer than 4
        digits, would match everywhere and are ignored; so are booleans and NaN/infinity.
        """
        if isinstance(value, bool):
            return
        if isinstance(value, str):
            text = value
        elif isinstance(value, int):
            text = str(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return
            text = repr(value)
        else:
            raise TypeError(f"known values are str, int or float, not {type(value).__name__}")
        text = text.strip()
        if len(text) < _MIN_CHARS or text in self._values:
            return
        rest = text.translate(_DROP_DIGIT_LIKE)
        if (not rest or rest.isdigit()) and len(rest) < _MIN_DIGITS:
            return  # digits and separators only, too few digits
        self._values[text] = ALIASES.get(category, category)
        self._matcher = None
        self._probe = None

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:
        return f"<KnownValues: {len(self._values)} values>"

    def copy(self) -> KnownValues:
        """An independent copy (adds to it do not affect this one); shares the compiled program."""
        other = KnownValues()
        other._values = dict(self._values)
        other._matcher = self._matcher
        other._probe = self._probe
        return other

    def find(self, text: str) -> list[Span]:
        """Occurrences of known values (any form) in ``text``: sorted, non-overlapping."""
        if not self._values or not text:
            return []
        matcher = self._matcher
        if matcher is None and len(text) <= _PROBE_MAX:
            probe = self._probe
            if probe is None:
                probe = self._probe = _Probe(self._values)
            if probe.calls < _PROBE_CALLS:
                probe.calls += 1
                if not probe.hit(text):
                    return []
        if matcher is None:
            matcher = self._matcher = _build(self._values)
        data = _encode(text)
        is_ascii = len(data) == len(text)
        spans: list[Span] = []
        for search in matcher.searchers:
            hit = search(data, 0)
            byte_pos = char_pos = 0
            while hit is not None:
                s, e = hit
                matched = data[s:e].decode("utf-8", "surrogatepass")
                category, cut = matcher.resolve(matched)
                if is_ascii:
                    start, end = s, e - cut
                else:
                    char_pos += len(data[byte_pos:s].decode("utf-8", "surrogatepass"))
                    start = char_pos
                    end = start + len(matched) - cut
                    byte_pos, char_pos = s, start
                spans.append(Span(start, end, category, "known"))
                hit = search(data, e) if e < len(data) else None
        if len(matcher.searchers) > 1:
            spans = merge_spans(spans)
        return spans
