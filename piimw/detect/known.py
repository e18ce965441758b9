"""The values one request brought in, found again wherever they turn up (logs, errors, responses).

A value is looked for in every form it typically leaks in: as is, HTML-escaped (``html.escape``
and the markupsafe/Jinja flavour), URL-encoded (``quote`` with and without ``/``, ``quote_plus``),
JSON-escaped (orjson, and ``json.dumps`` with ``ensure_ascii`` and with ``\\/``), ``repr``-escaped.
Email addresses match regardless of ASCII case. Values made of letters/digits and separators with
at least 7 digits (phone, card, SSN, IBAN, dates) also match with any separators
(``[\\s\\-.()]*``) between their characters, and a ``+`` phone number also without its country code.

Untagged values (query values, the app's ``X-`` headers) shorter than 8 characters are not found
glued to ASCII letters or digits: ``?limit=1000&format=json`` is found in ``limit=1000`` and
``"json"``, not in ``10000`` or ``jsonschema`` (that would garble every log line of the request).

Truncation: a value longer than 16 characters is also found when a prefix of at least 16
characters of it ends the text or is followed by ``...`` or ``\u2026`` (how reporters and log
formatters cut long values), or by :data:`TEXT_BREAK`, which ends a text among texts searched in
one pass. Only the first 256 characters are considered for this (RE2 limits the nesting the
pattern needs); the span covers the prefix, not the ellipsis.

All forms of all values are compiled into one RE2 alternation (leftmost-longest), built lazily on
the first ``find`` after an ``add`` and reused until the next ``add``: requests add a few values
and search many texts. The program is kept out of google-re2's module cache because it is built
from personal data.
"""

from __future__ import annotations

import html
import json
import math
import re
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import orjson
import phonenumbers

from piimw.detect._re2 import Searcher, compile_searcher
from piimw.detect.spans import Span, merge_spans
from piimw.taxonomy import ALIASES

__all__ = ["TEXT_BREAK", "KnownValues"]

#: Joins texts searched in one pass (the engine's check of a document's untagged strings:
#: the clean case costs one call). It ends a text as the end of the input does, so a value
#: truncated at the end of any of them is found in the joined pass too. (A value holding
#: ``\x00`` might match across two texts: that costs a walk that finds nothing, no more.)
TEXT_BREAK = "\n\x00\n"

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
#: Digits as "0", every other byte as " ": ``b"0000000" in mask`` finds a run of 7 digits.
_DIGIT_MASK = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_PHONE_CATEGORY = "user.contact.phone_number"
#: Texts up to this size are first probed with plain string tests (no RE2 program is built
#: unless one of them hits); longer texts go straight to the compiled program.
_PROBE_MAX = 1 << 14
#: After this many probed texts the RE2 program is built after all: about as fast as the
#: program on a short text with a few values, the probe costs more with more values, longer
#: texts and texts that hold URL/HTML/JSON markers; it pays for skipping the compilation
#: (~0.6 ms) only while a request checks fewer texts than this.
_PROBE_CALLS = 128
#: At most this many texts are remembered as checked clean (:meth:`KnownValues.unchecked`).
_CLEAN_MAX = 256
#: Texts from this length on count towards gates: once a probe has checked
#: :data:`_GATE_AFTER` of them, every test first looks for one character of its form (a gate).
#: Choosing the gates costs about 0.45 us a value; on a 2 KB text they save less than a tenth
#: of that, so they pay only for a probe that checks many long texts (long log records); most
#: probes check one (the response body: measured, gating it made a planned request ~3 us
#: slower).
_GATE_FROM = 512
_GATE_AFTER = 8
_LOWER_BYTES = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_SEPARATOR_BYTES = _SEPARATORS.encode("ascii")
_DIGIT_LIKE_BYTES = (_SEPARATORS + "+/").encode("ascii")
_DIGITS_AND_DIGIT_LIKE = "0123456789" + _SEPARATORS + "+/"
_LETTER_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_EMAIL_CATEGORY = "user.contact.email"
#: The category of values no tag classified (query values, ``X-`` headers).
_UNTAGGED = "user"
#: Untagged values shorter than this are only found as whole words or numbers (see :func:`_glued`).
_GLUE_MAX = 8
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _mask(keep: bytes) -> bytes:
    """A ``translate`` table: the bytes of ``keep`` as they are, any other byte as NUL."""
    return bytes(b if b in keep else 0 for b in range(128)) + bytes(128)


#: The characters that fill typical texts (logs, JSON, HTML): small letters, digits, space and
#: common punctuation. A gate is a form's first character not among them, where it has one.
_COMMON_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789 \":,./-_=\n"
_UNCOMMON = _mask(bytes(b for b in range(1, 128) if b not in _COMMON_BYTES))
#: The same for ASCII-lowercased forms: never an ASCII letter (case folding changes them).
_UNCOMMON_FOLDED = _mask(bytes(b for b in range(1, 128)
                               if b not in _COMMON_BYTES and b not in _LETTER_BYTES))
_DIGITS_RARE_FIRST = "7869435210"
_NOT_LETTER = _mask(bytes(b for b in range(1, 128) if b not in _LETTER_BYTES))


def _gate(form: str) -> str:
    """A rare-looking character of ``form`` (not empty): a text without it cannot contain
    ``form``. Looking for one character (``memchr``) is several times faster than for a
    string, so each probe test first looks for its gate; most texts lack it.
    """
    if not form.isascii():
        return _first_non_ascii(form)
    kept = form.encode("ascii").translate(_UNCOMMON).lstrip(b"\x00")
    return chr(kept[0]) if kept else form[0]


def _folded_gate(form: str) -> str:
    """Like :func:`_gate` for an ASCII-lowercased form, among characters that case folding
    leaves alone (anything but ASCII letters); "" (no gate) if the form has none but NUL."""
    if "@" in form:  # an email address
        return "@"
    if not form.isascii():
        return _first_non_ascii(form)
    raw = form.encode("ascii")
    kept = raw.translate(_UNCOMMON_FOLDED).lstrip(b"\x00") or raw.translate(
        _NOT_LETTER).lstrip(b"\x00")
    return chr(kept[0]) if kept else ""


def _alnum_gate(chars: str) -> str:
    """:func:`_gate` for ASCII letters and digits: a capital, else the rarest-looking digit
    (texts are fuller of 0, 1 and 2, in counts, dates and times, than of 7 or 8)."""
    if not chars.isdigit():
        return _gate(chars)
    for digit in _DIGITS_RARE_FIRST:
        if digit in chars:
            return digit
    raise AssertionError("unreachable: chars are digits")


def _first_non_ascii(form: str) -> str:
    for ch in form:
        if ch > "\x7f":
            return ch
    raise AssertionError("unreachable: the form is not ASCII")


def _ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lowercased and nothing else changed (what the RE2 program's
    case-insensitive alternatives match; ``str.lower`` also folds other letters)."""
    if text.isascii():
        return text.lower()
    return text.encode("utf-8", "surrogatepass").translate(_LOWER_BYTES).decode(
        "utf-8", "surrogatepass")


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
    """The ways ``value`` is commonly written into HTML, URLs, JSON and Python reprs, and
    in its other Unicode spellings (:func:`_plain_forms`)."""
    forms = {value, *_plain_forms(value), *_html_forms(value), *_url_forms(value),
             *_escaped_forms(value)}
    forms.discard("")
    return forms


def _plain_forms(value: str) -> set[str]:
    """A non-ASCII ``value`` as other software spells it: without its accents
    (:func:`_ascii_fold`), decomposed (macOS file names, search indexes), composed, and with
    compatibility characters replaced (NFKC: full-width letters and digits as ASCII)."""
    if value.isascii():
        return set()
    forms = {_ascii_fold(value)}
    for form in ("NFC", "NFD", "NFKC"):
        normal = unicodedata.normalize(form, value)
        if len(normal.strip()) >= _MIN_CHARS and _meaningful(normal.strip()):
            forms.add(normal)
    forms.discard(value)
    forms.discard("")
    return forms


def _ascii_fold(value: str) -> str:
    """``value`` without accents, as ASCII fallbacks write it (Werkzeug's and Django's
    ``filename=`` beside ``filename*=``: ``Zoe Angstrom`` for ``Zoë Ångström``); "" for an
    ASCII value or one that folds to too little to be worth finding."""
    if value.isascii():
        return ""
    decomposed = unicodedata.normalize("NFKD", value)
    if any(not ch.isascii() and not unicodedata.combining(ch)
           and not unicodedata.name(ch, "").startswith("LATIN") for ch in decomposed):
        # Another script: what folding leaves is not the value. (Latin letters that do not
        # decompose, ø or ß, are dropped as Werkzeug's fallback drops them: "Sren".)
        return ""
    folded = decomposed.encode("ascii", "ignore").decode("ascii")
    return folded if len(folded.strip()) >= _MIN_CHARS and folded != value else ""


def _html_forms(value: str) -> tuple[str, str]:
    return (html.escape(value, quote=True),
            html.escape(value, quote=False).replace('"', "&#34;").replace("'", "&#39;"))


_HEX_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _url_forms(value: str) -> set[str]:
    """Percent-encoded as Python (``quote``, ``quote_plus``), JavaScript's
    ``encodeURIComponent`` (``!~*'()`` left as they are) and ``URLSearchParams`` or Java's
    ``URLEncoder`` (``*`` left, ``~`` encoded, space as ``+``) write it, with upper- and
    lower-case hex digits (clients choose either)."""
    try:
        forms = {quote(value), quote(value, safe=""), quote_plus(value),
                 quote(value, safe="!~*'()"), quote_plus(value, safe="*").replace("~", "%7E")}
    except UnicodeEncodeError:  # lone surrogates cannot be percent-encoded
        return set()
    return forms | {_HEX_ESCAPE.sub(lambda m: m.group().lower(), f) for f in forms if "%" in f}


def _escaped_forms(value: str) -> set[str]:
    """JSON (``json.dumps``, orjson, with ``\\/``) and ``repr``, of the text and of its UTF-8
    bytes (how Python shows a raw body: ``b'Zo\\xc3\\xab'``)."""
    json_forms = {json.dumps(value)[1:-1]}
    with suppress(orjson.JSONEncodeError):  # lone surrogates cannot be serialized by orjson
        json_forms.add(orjson.dumps(value)[1:-1].decode())
    if "/" in value:  # some encoders (PHP, Java) also escape "/"
        json_forms |= {f.replace("/", "\\/") for f in json_forms}
    forms = {repr(value)[1:-1], *json_forms}
    with suppress(UnicodeEncodeError):
        forms.add(repr(value.encode("utf-8"))[2:-1])
    return forms


def _normalizable(value: str) -> str:
    """The letters and digits of a phone/card/SSN/IBAN-like value, or "" if it is not one."""
    return _normalized(value).decode("ascii")


def _normalized(value: str) -> bytes:
    """:func:`_normalizable` as ASCII bytes (bytes methods are much faster than ``str`` ones)."""
    # Every character a separator, "+", "/" or an ASCII letter or digit; at least 7 digits.
    # A non-ASCII character would survive the deletion of separators, so it rules a value out.
    if not value.isascii():
        return b""
    chars = value.encode("ascii").translate(None, _DIGIT_LIKE_BYTES)
    if not chars.isalnum():  # also b""
        return b""
    if len(chars.translate(None, _LETTER_BYTES)) < _NORMALIZE_MIN_DIGITS:
        return b""
    return chars


def _digit_run(value: str) -> int:
    """The run of digits a text must hold (its separators deleted) to hold ``value``'s digit
    variant: 7 (every variant has 7 digits or more), or fewer when letters split the variant's
    digits (a VIN, a reference code): its longest run of digits."""
    return _letters_split_run(_normalized(value))


def _letters_split_run(chars: bytes) -> int:
    """:func:`_digit_run` of a value whose letters and digits are ``chars``."""
    if len(chars) <= _NORMALIZE_MIN_DIGITS or chars.isdigit() or not chars.isalnum():
        return _NORMALIZE_MIN_DIGITS
    masked = chars.translate(_DIGIT_MASK)
    if masked.count(b"0") < _NORMALIZE_MIN_DIGITS:
        return _NORMALIZE_MIN_DIGITS  # not a digit value at all
    return min(_NORMALIZE_MIN_DIGITS, max(map(len, masked.split())))


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
    return head + tail + rb"(?:\.\.\.|\xe2\x80\xa6|\n\x00\n|$)"


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class _Matcher:
    """Compiled programs plus the tables that map a match back to its value's category.

    No ``repr``: tracebacks that capture locals must not print the values.
    """

    searchers: tuple[Searcher, ...]
    #: The only program, when there is one (the usual case), else None.
    single: Searcher | None
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


def _glued(text: str, start: int, end: int) -> bool:
    """Is ``text[start:end]`` part of a longer ASCII word or number ("json" in "jsonschema")?"""
    return (start > 0 and text[start - 1] in _ALNUM and text[start] in _ALNUM) or (
        end < len(text) and text[end] in _ALNUM and text[end - 1] in _ALNUM)


def _strip_ellipsis(matched: str) -> str:
    for end in _TRUNCATION_ENDS:
        if matched.endswith(end):
            return matched[:-len(end)]
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
    return _Matcher(tuple(searchers), searchers[0] if len(searchers) == 1 else None, exact,
                    folded, normalized, tuple(long_values))


def _compile(alternatives: list[bytes]) -> Searcher:
    pattern = b"|".join(b"(?:" + a + b")" for a in alternatives)
    return compile_searcher(pattern, max_mem=256 << 20, private=True)


#: Probe tests: (gate, form); a text without the gate character cannot contain the form.
_Gated = tuple[tuple[str, str], ...]
#: One family of forms: exact ones, ASCII-folded ones with a gate, folded ones without.
_FormSet = tuple[_Gated, _Gated, tuple[str, ...]]


class _Probe:
    """"Does the matcher match anywhere in this text?", answered with plain substring tests.

    Exactly equivalent to the RE2 program's answer, without building it, which costs most of
    a millisecond per request: every form that differs from its value carries a marker the
    text must contain (``%`` or ``+`` for URL encoding, ``&`` for HTML, a backslash for JSON
    and ``repr``), so each family of forms is computed only for texts that have its marker;
    ASCII case folding is :func:`_ascii_lower`; digit variants are compared with the separators
    deleted from the text (the program allows any run of them between their characters);
    truncated prefixes are extended character by character.

    The tests are on ``str``: a substring of the text is a substring of its UTF-8 bytes and
    back, and ``in`` on ``str`` costs a fraction of ``in`` on ``bytes``. A value longer than
    16 characters is first looked for by its first 16, which its whole form and all its
    truncations start with. The lowercased and separator-free copies of the text are made
    only for a test that gets that far: those tests first look for one character of their
    form (a gate, which most texts lack: "@" for most email addresses, a rare-looking digit of
    a digit string; see :func:`_folded_gate` and :func:`_alnum_gate`). The other tests get
    gates (:func:`_gate`) after :data:`_GATE_AFTER` texts longer than :data:`_GATE_FROM`;
    until then their gate is "", which every text contains: on short texts, and on a few long
    ones, gates save less than choosing them costs. Everything the values need is computed
    once per probe, on first need: the URL, HTML and JSON families, the digit variants (for the
    first text with a run of 7 digits) and the national phone numbers.
    No ``repr``: it holds the values.
    """

    __slots__ = ("_candidates", "_families", "_items", "_national", "_normalized", "_run", "calls",
                 "exact", "folded", "folded_free", "gated", "long_texts", "long_values",
                 "wants_flat")

    def __init__(self, values: dict[str, str], run: int | None = None) -> None:
        # A snapshot: KnownValues.copy() shares the probe, and the original may grow later.
        self._items = items = tuple(values.items())
        # The run of digits a text needs to hold a digit variant (see _flat_hit): KnownValues
        # keeps it up to date as values are added; else computed here.
        if run is None:
            run = min([_NORMALIZE_MIN_DIGITS, *map(_digit_run, values)])
        self._run = b"0" * run
        self.calls = 0
        self.gated = False
        self.long_texts = 0
        exact: list[tuple[str, str]] = []
        folded: list[tuple[str, str]] = []
        folded_free: list[str] = []
        long_values: list[tuple[str, str, str | None, str]] = []
        for value, category in items:
            fold = category.startswith(_EMAIL_CATEGORY) or "@" in value
            # Found as forms of their own, never truncated (most values are ASCII: no call).
            for plain in () if value.isascii() else _plain_forms(value):
                if fold:
                    _add_folded(_ascii_lower(plain), folded, folded_free)
                else:
                    exact.append(("", plain))
            if fold:
                _add_folded(_ascii_lower(value), folded, folded_free)
            if len(value) > _TRUNCATED_MIN:
                # The exact form and every truncation start with the first 16 characters.
                long_values.append(("", value[:_TRUNCATED_MIN], None if fold else value,
                                    value[:_TRUNCATED_MAX]))
            elif not fold:
                exact.append(("", value))
        self.exact: _Gated = tuple(exact)
        self.folded: _Gated = tuple(folded)
        self.folded_free = tuple(folded_free)
        self.long_values = tuple(long_values)
        self._families: dict[str, _FormSet] = {}
        # The digit variants are computed for the first text with a run of 7 digits (fewer if
        # a variant's digits are split by letters): most texts (JSON full of small numbers)
        # never need them. Until then, assume there are.
        self.wants_flat = True
        self._normalized: _Gated | None = None
        self._candidates: list[str] = []
        self._national: _Gated | None = None

    def _add_gates(self) -> None:
        """Gates for the exact tests too (from now on, also for the ones computed later)."""
        self.gated = True
        self.exact = tuple([(_gate(form), form) for _, form in self.exact])
        self.long_values = tuple([(_gate(head), head, whole, chars)
                                  for _, head, whole, chars in self.long_values])
        self._families.clear()  # recomputed, with gates, on next need

    def _family(self, marker: str) -> _FormSet:
        """Forms of the family whose changed forms contain ``marker``."""
        got = self._families.get(marker)
        if got is None:
            gated = self.gated
            exact: list[tuple[str, str]] = []
            folded: list[tuple[str, str]] = []
            folded_free: list[str] = []
            for value, category in self._items:
                fold = _folds(value, category)
                for form in _family_forms(value, marker):
                    if form == value:
                        continue
                    if fold:
                        _add_folded(_ascii_lower(form), folded, folded_free)
                    else:
                        exact.append((_gate(form) if gated else "", form))
            got = self._families[marker] = (tuple(exact), tuple(folded), tuple(folded_free))
        return got

    def _normalized_variants(self) -> _Gated:
        """The letters and digits of phone/card/SSN/IBAN-like values (see :func:`_normalized`),
        and the ``+`` numbers that may also be written without their country code."""
        normalized: list[tuple[str, str]] = []
        candidates: list[str] = []
        for value, category in self._items:
            chars = _normalized(value)
            if chars:
                digits = chars.decode("ascii")
                normalized.append((_alnum_gate(digits), digits))
            if value.startswith("+") and (chars or category.startswith(_PHONE_CATEGORY)):
                candidates.append(value)  # may have a national form (parsed on first need)
        self._candidates = candidates
        self._national = None if candidates else ()
        self.wants_flat = bool(normalized or candidates)
        found = self._normalized = tuple(normalized)
        return found

    def _national_variants(self) -> _Gated:
        national = self._national
        if national is None:
            found: list[tuple[str, str]] = []
            for value in self._candidates:
                digits = _national_digits(value)
                if digits:
                    found.append((_alnum_gate(digits), digits))
            national = self._national = tuple(found)
        return national

    def hit(self, text: str) -> bool:
        if len(text) > _GATE_FROM and not self.gated:
            self.long_texts += 1
            if self.long_texts >= _GATE_AFTER:
                self._add_gates()
        for gate, form in self.exact:
            if gate in text and form in text:
                return True
        lowered: str | None = None
        if self.folded_free:
            lowered = _ascii_lower(text)
            for form in self.folded_free:
                if form in lowered:
                    return True
        for gate, form in self.folded:
            if gate in text:
                if lowered is None:
                    lowered = _ascii_lower(text)
                if form in lowered:
                    return True
        for gate, head, whole, chars in self.long_values:
            if gate in text and head in text and (
                    (whole is not None and whole in text) or _truncated_hit(text, chars)):
                return True
        if ("%" in text or "+" in text) and _forms_hit(self._family("%"), text, lowered):
            return True
        if "&" in text and _forms_hit(self._family("&"), text, lowered):
            return True
        if "\\" in text and _forms_hit(self._family("\\"), text, lowered):
            return True
        return self.wants_flat and self._flat_hit(text)

    def _flat_hit(self, text: str) -> bool:
        """Digit variants (ASCII letters and digits): compared with the text's separators
        deleted. A character of the text is a character of its copy without separators."""
        data = text.encode("utf-8", "surrogatepass")
        # Every variant has 7 digits or more (national forms too), and they are consecutive
        # unless letters split them: a text whose copy without separators has no run of
        # ``_run`` digits holds none of them (JSON full of small numbers stops here).
        # translate() deletes the separators and masks the digits in one call.
        if data.translate(_DIGIT_MASK, _SEPARATOR_BYTES).find(self._run) < 0:
            return False
        normalized = self._normalized
        if normalized is None:
            normalized = self._normalized_variants()
            if not self.wants_flat:
                return False
        raw = data.translate(None, _SEPARATOR_BYTES)
        flat: str | None = None
        for gate, chars in normalized:
            if gate in text:
                if flat is None:
                    flat = raw.decode("utf-8", "surrogatepass")
                if chars in flat:
                    return True
        national = self._national
        if national is None:  # not computed yet: parsing phone numbers costs ~15 us
            national = self._national_variants()
        for gate, chars in national:
            if gate in text:
                if flat is None:
                    flat = raw.decode("utf-8", "surrogatepass")
                if chars in flat:
                    return True
        return False


def _add_folded(form: str, gated: list[tuple[str, str]], free: list[str]) -> None:
    gate = _folded_gate(form)
    if gate:
        gated.append((gate, form))
    else:
        free.append(form)


def _forms_hit(forms: _FormSet, text: str, lowered: str | None) -> bool:
    """Is one of ``forms`` (exact, or ASCII-folded) in ``text``? ``lowered``: the text folded."""
    exact, folded, folded_free = forms
    for gate, form in exact:
        if gate in text and form in text:
            return True
    if folded_free:
        if lowered is None:
            lowered = _ascii_lower(text)
        for form in folded_free:
            if form in lowered:
                return True
    for gate, form in folded:
        if gate in text:
            if lowered is None:
                lowered = _ascii_lower(text)
            if form in lowered:
                return True
    return False


def _folds(value: str, category: str) -> bool:
    return category.startswith(_EMAIL_CATEGORY) or "@" in value


def _family_forms(value: str, marker: str) -> set[str]:
    """The forms of one family (as :func:`_forms` writes them); only the changed ones matter."""
    if marker == "%":
        forms = _url_forms(value)
    elif marker == "&":
        forms = set(_html_forms(value))
    else:
        forms = _escaped_forms(value)
    forms.discard("")
    return forms


def _meaningful(text: str) -> bool:
    """Not just separators and fewer than 4 digits (``text``: stripped, 4 characters or more).

    ``not ((not rest or rest.isdigit()) and len(rest) < 4)`` with ``rest`` the text without
    separators, "+" and "/" (``str.translate`` with a table is slow: ``rest`` is computed only
    when the text has no other character).
    """
    core = text.strip(_DIGITS_AND_DIGIT_LIKE)
    if core and not core[0].isdigit():
        return True  # a character that is neither a digit nor deleted: rest is not all digits
    rest = text.translate(_DROP_DIGIT_LIKE)
    return not ((not rest or rest.isdigit()) and len(rest) < _MIN_DIGITS)


#: What may follow a truncated value (besides the end of the text).
_TRUNCATION_ENDS = ("...", "\u2026", TEXT_BREAK)


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
            if end == size or text.startswith(_TRUNCATION_ENDS, end):
                return True
            if k >= limit or text[end] != chars[k]:
                break
            k += 1
        i = text.find(head, i + 1)
    return False


class KnownValues:
    """Values this request brought in (mutable per request; not shared between requests)."""

    __slots__ = ("_clean", "_clean_for", "_matcher", "_probe", "_run", "_values")

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        #: :func:`_digit_run` of all values (the least), kept as they are added.
        self._run = _NORMALIZE_MIN_DIGITS
        self._matcher: _Matcher | None = None
        self._probe: _Probe | None = None
        #: Texts (UTF-8) in which neither ``_clean_for`` nor these values found anything.
        self._clean: set[bytes] | None = None
        self._clean_for: object = None

    def add(self, value: str | int | float, category: str) -> None:
        """Remember ``value`` as personal data of ``category`` (a key or alias).

        Values shorter than 4 characters (after stripping), or digit strings with fewer than 4
        digits, would match everywhere and are ignored; so are booleans and NaN/infinity.
        """
        if type(value) is str:  # the common case first
            text = value.strip()
        elif isinstance(value, bool):
            return
        elif isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int):
            text = str(value).strip()
        elif isinstance(value, float):
            if not math.isfinite(value):
                return
            text = repr(value).strip()
        else:
            raise TypeError(f"known values are str, int or float, not {type(value).__name__}")
        values = self._values
        if len(text) < _MIN_CHARS:
            return
        held = values.get(text)
        if held is not None:
            # A value first seen untagged (a query or Referer value) and then tagged takes
            # the tag's category: an untagged one is the app's to echo, a tagged one is not.
            if held == "user" and category != "user":
                values[text] = ALIASES.get(category, category)
                self._matcher = self._probe = None
                self._clean = None
            return
        # Digits and separators only, with too few digits, would match everywhere.
        if text.isascii():  # rest: the text without separators, "+" and "/"
            rest = text.encode("ascii").translate(None, _DIGIT_LIKE_BYTES)
            if (not rest or rest.isdigit()) and len(rest) < _MIN_DIGITS:
                return
            if (len(rest) > _NORMALIZE_MIN_DIGITS and rest.isalnum() and not rest.isdigit()
                    and not rest.isalpha()):
                run = _letters_split_run(rest)  # letters and digits only: a VIN, a code
                if run < self._run:
                    self._run = run
        elif not _meaningful(text):
            return
        values[text] = ALIASES.get(category, category)
        self._matcher = None
        self._probe = None
        self._clean = None  # checked against fewer values

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
        other._run = self._run
        other._matcher = self._matcher
        other._probe = self._probe
        return other

    def unchecked(self, detectors: object, texts: list[bytes]) -> list[bytes]:
        """``texts`` less those already found clean by ``detectors`` and these values.

        A response that echoes what its request brought in (the created resource) holds the
        same untagged text the request's check found clean; nothing has changed since if no
        value was added (adding one forgets every text), so it need not be scanned again.
        The detector pass is a pure function of the text, hence the memo, per request only.
        """
        clean = self._clean
        if clean is None or self._clean_for is not detectors:
            return texts
        return [t for t in texts if t not in clean]

    def checked_clean(self, detectors: object, texts: list[bytes]) -> None:
        """Remember that neither ``detectors`` nor these values found anything in ``texts``."""
        clean = self._clean
        if clean is None or self._clean_for is not detectors:
            clean = self._clean = set()
            self._clean_for = detectors
        if len(clean) < _CLEAN_MAX:
            clean.update(texts)

    def _probed(self, text: str) -> bool | None:
        """The probe's answer while there is no program and it may still answer, else None.

        The probe answers exactly as the program would; after ``_PROBE_CALLS`` texts (or for
        a text longer than ``_PROBE_MAX``) the program is worth building.
        """
        if self._matcher is None and len(text) <= _PROBE_MAX:
            probe = self._probe
            if probe is None:
                probe = self._probe = _Probe(self._values, self._run)
            if probe.calls < _PROBE_CALLS:
                probe.calls += 1
                return probe.hit(text)
        return None

    def _program(self) -> _Matcher:
        matcher = self._matcher
        if matcher is None:
            matcher = self._matcher = _build(self._values)
        return matcher

    def search(self, text: str) -> bool:
        """Does any known value (any form) occur in ``text``? ``bool(find(text))``, cheaper."""
        if not self._matches(text):
            return False
        # A short untagged value may match only inside a longer word, which find drops (see
        # _glued); a text that holds one is about to be scrubbed anyway.
        return _UNTAGGED not in self._values.values() or bool(self.find(text))

    def _matches(self, text: str) -> bool:
        """Does the program (or the probe while it answers) match anywhere in ``text``?"""
        matcher = self._matcher
        if matcher is None:  # no program yet: the probe answers while it may
            if not self._values or not text:
                return False
            answer = self._probed(text)
            if answer is not None:
                return answer
            matcher = self._program()
        elif not text:
            return False
        data = text.encode("utf-8", "surrogatepass")
        single = matcher.single
        if single is not None:  # the common case, without a generator
            return single(data, 0) is not None
        return any(search(data, 0) is not None for search in matcher.searchers)

    def find(self, text: str) -> list[Span]:
        """Occurrences of known values (any form) in ``text``: sorted, non-overlapping."""
        if not self._values or not text:
            return []
        if self._probed(text) is False:
            return []
        matcher = self._program()
        data = text.encode("utf-8", "surrogatepass")
        spans: list[Span] = []
        is_ascii: bool | None = None
        for search in matcher.searchers:
            hit = search(data, 0)
            if hit is None:  # the common case: nothing
                continue
            if is_ascii is None:
                is_ascii = len(data) == len(text)
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
                if category == _UNTAGGED and end - start < _GLUE_MAX and _glued(text, start, end):
                    hit = search(data, s + 1) if s + 1 < len(data) else None
                    continue
                spans.append(Span(start, end, category, "known"))
                hit = search(data, e) if e < len(data) else None
        if len(matcher.searchers) > 1:
            spans = merge_spans(spans)
        return spans
