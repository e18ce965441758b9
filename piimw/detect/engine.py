"""The pattern detectors: one RE2 scan per text, then a validator per candidate.

The scan is the whole cost on clean text (a single DFA pass that finds nothing). Each candidate
is classified by its shape (cheap string tests), trimmed to the value (the scan includes the
context characters around digit-shaped values) and validated. A short candidate that fails does
not hide a real value overlapping it: the scan resumes inside it. In a run of 4-digit groups the
card one group later is checked directly instead (``2024 4111 1111 1111 1111`` first yields
``2024 4111 1111 1111``, which fails, then the card) and the rest of the run is skipped, so that
``4111 4111 4111 ...`` costs one candidate per four groups, not one per group.

Lone surrogates and other non-ASCII characters are scanned as ``?`` (see ``_run``); spans are
always indices into the original ``str``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from piimw.detect import validators as v
from piimw.detect._re2 import Searcher, compile_searcher
from piimw.detect.patterns import (
    CATEGORIES,
    DEFAULT_DETECTORS,
    SECRET_PREFIXES,
    combined,
)
from piimw.detect.phones import country_code_for_region, is_calling_code
from piimw.detect.spans import Span

__all__ = ["Detectors"]

_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_BODY_START = frozenset("0123456789+(")
_LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_WORD = _LETTERS | _DIGITS | {"_"}
_LOCAL_ASCII = _WORD | frozenset("%+-.")
_INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")
_SSN_WORDS = ("ssn", "social")
_NANP_SHAPE = re.compile(
    r"(?:1[ .\-]?)?(?:\([2-9]\d\d\)[ .\-]?|[2-9]\d\d[ .\-])[2-9]\d\d[ .\-]\d{4}", re.ASCII
)
_IDD_SHAPE = re.compile(r"00([1-9]\d{0,3})[ .\-].*", re.ASCII | re.DOTALL)
_IBAN_RUN = re.compile(r"[A-Za-z0-9 ]*", re.ASCII)
_TRUNK0_SHAPE = re.compile(r"\(?0\d{1,4}\)?[ .\-/]?\d{2,4}(?:[ .\-]?\d{2,4}){1,3}", re.ASCII)

# A verdict depends on the candidate and at most this many characters around it (the IPv4
# version check looks back 16, the shifted-card check ahead 24); "." or a non-ASCII character just
# before a candidate (an e-mail local part the scan cut short) needs up to _LOCAL_MAX before it,
# "/" or ":" (a URL's user part) more: that is never memoized.
_CONTEXT = 24
_LOCAL_MAX = 64  # characters in an e-mail local part
_MEMO_MAX = 4096
_MEMO_FROM = 4096  # texts shorter than this have too few candidates to repeat
_MEMO_LEN = 128
_CARD_GROUPED = re.compile(r"\d{4}([ \-?])\d{4}(?:\1\d{4})+(?:\1\d{1,3})?", re.ASCII)
#: Spaces and dashes that separate digit groups as " " and "-" do: the no-break spaces of word
#: processors and locale number formats, zero-width spaces and joiners (invisible, yet they would
#: hide a number from the scan), typographic and soft hyphens, the en dash and the minus sign.
_SEPARATOR_FOLD = str.maketrans(
    dict.fromkeys("\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
                  "\u200a\u200b\u200c\u200d\u202f\u205f\u2060\u3000\ufeff", " ")
    | dict.fromkeys("\u00ad\u2010\u2011\u2012\u2013\u2212\ufe63\uff0d", "-")
)

# (detector, start, end) of a finding; detector "" means "none here, resume the scan at start".
_Verdict = tuple[str, int, int]
_NOTHING = ""


class Detectors:
    """A compiled set of pattern detectors. Immutable, thread-safe, build once.

    ``names``: detector names (``None``: all of :data:`DEFAULT_DETECTORS`). ``phone_region``:
    region whose national format phone numbers are recognized without a ``+`` country code.
    """

    __slots__ = ("_enabled", "_nanp", "_search", "names", "phone_region")

    names: tuple[str, ...]
    phone_region: str
    _enabled: frozenset[str]
    _nanp: bool
    _search: Searcher | None

    def __init__(self, names: Iterable[str] | None = None, *, phone_region: str = "US") -> None:
        if names is None:
            chosen = DEFAULT_DETECTORS
        else:
            requested = [names] if isinstance(names, str) else list(names)
            for name in requested:
                if name not in CATEGORIES:
                    raise ValueError(
                        f"unknown detector {name!r}; known: {', '.join(DEFAULT_DETECTORS)}"
                    )
            chosen = tuple(n for n in DEFAULT_DETECTORS if n in requested)
        region = phone_region.upper()
        code = country_code_for_region(region)
        if not code:
            raise ValueError(f"unknown phone region {phone_region!r}")
        nanp = code == 1
        setter = object.__setattr__
        setter(self, "names", chosen)
        setter(self, "phone_region", region)
        setter(self, "_enabled", frozenset(chosen))
        setter(self, "_nanp", nanp)
        pattern = combined(chosen, nanp=nanp)
        setter(self, "_search", compile_searcher(pattern.encode("ascii")) if pattern else None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Detectors is immutable")

    def __repr__(self) -> str:
        return f"Detectors({list(self.names)!r}, phone_region={self.phone_region!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detectors):
            return NotImplemented
        return (self.names, self.phone_region) == (other.names, other.phone_region)

    def __hash__(self) -> int:
        return hash((self.names, self.phone_region))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.names, self.phone_region))

    # -- public API --------------------------------------------------------------------------

    def find(self, text: str) -> list[Span]:
        """Validated findings in ``text``: sorted, non-overlapping."""
        search = self._search
        if search is None or not text:
            return []
        # Non-ASCII characters (and lone surrogates) become "?": one byte per character, so the
        # byte offsets RE2 reports are str indices. All patterns are ASCII.
        data = text.encode("ascii", "replace")
        hit = search(data, 0)
        if hit is None:  # the clean-text fast path: one DFA pass
            return []
        return self._run(text, data, hit, first=False)

    def search(self, text: str) -> bool:
        """Is there any validated finding in ``text``? Stops at the first one."""
        search = self._search
        if search is None or not text:
            return False
        data = text.encode("ascii", "replace")
        hit = search(data, 0)
        return hit is not None and bool(self._run(text, data, hit, first=True))

    def search_utf8(self, data: bytes) -> bool:
        """:meth:`search` for UTF-8 bytes (serialised JSON): no decode for ASCII text."""
        search = self._search
        if search is None or not data:
            return False
        if not data.isascii():
            return self.search(data.decode("utf-8", "surrogatepass"))
        hit = search(data, 0)
        return hit is not None and bool(self._run(data.decode("ascii"), data, hit, first=True))

    # -- the scan ----------------------------------------------------------------------------

    def _run(
        self, text: str, data: bytes, hit: tuple[int, int] | None, *, first: bool
    ) -> list[Span]:
        """Classify candidates from ``hit`` on; ``data`` is ``text`` as scanned (ASCII)."""
        search = self._search
        assert search is not None
        out: list[Span] = []
        size = len(data)
        classify = self._classify
        # Verdicts by candidate-in-context, for this call only: a long text that repeats the same
        # candidate thousands of times (generated or hostile) has it classified once.
        memo: dict[tuple[int, str], _Verdict] | None = {} if size > _MEMO_FROM else None
        while hit is not None:
            s, e = hit
            if memo is None:
                name, a, b = classify(text, s, e)
            else:
                back = _lookback(text[s - 1] if s else " ")
                k0 = s - back if s > back else 0
                key = (s - k0, text[k0 : e + _CONTEXT])
                verdict = memo.get(key)
                if verdict is None:
                    name, a, b = classify(text, s, e)
                    if len(memo) < _MEMO_MAX and e - s <= _MEMO_LEN and back <= _LOCAL_MAX:
                        memo[key] = (name, a - s, b - s)
                else:
                    name, a, b = verdict[0], verdict[1] + s, verdict[2] + s
            if name:
                out.append(Span(a, b, CATEGORIES[name], name))
                if first:
                    return out
                pos = b
            else:
                pos = a if a > s else s + 1
            if pos >= size:
                break
            hit = search(data, pos)
        return out

    def _classify(self, text: str, s: int, e: int) -> _Verdict:
        """Which detector (if any) accepts the candidate ``text[s:e]``, and where exactly."""
        c = text[s:e]
        c0 = c[0]
        enabled = self._enabled
        if c0 == "-" and c.startswith("-----BEGIN"):
            if "secret" in enabled and v.pem_ok(c):
                return ("secret", s, e)
            return (_NOTHING, s + 10, 0)
        if "@" in c:
            if c[-1] == "@" and ("://" in c or ":\\/\\/" in c):
                return self._url_credentials(c, s, e)
            core_end = e if c[-1] in _WORD else e - 1
            if text[core_end - 1] in _LETTERS and "@" in c[1:]:
                return self._email(text, s, core_end)
        elif "%40" in c:
            core_end = e if c[-1] in _WORD else e - 1
            if text[core_end - 1] in _LETTERS:
                return self._email(text, s, core_end)
        if c0 in _LETTERS:
            return self._lettered(text, c, s, e)
        if ":" in c and ("::" in c or c.count(":") >= 7):
            return self._ipv6(c, s, e)
        return self._digits(text, c, s, e)

    def _lettered(self, text: str, c: str, s: int, e: int) -> _Verdict:
        """Candidates starting with a letter: keywords, token prefixes, IBAN, hex IPv6."""
        enabled = self._enabled
        low = c[:6].lower()
        ipv6_shaped = ":" in c and ("::" in c or c.count(":") >= 7)
        if low.startswith(("bearer", "basic")) and "bearer" in enabled:
            return self._bearer(c, s, e)
        # Only the SSN keyword form of the digit shapes starts with a letter.
        if low.startswith(_SSN_WORDS) and "ssn" in enabled and not ipv6_shaped:
            return self._digits(text, c, s, e)
        if "secret" in enabled and c.startswith(SECRET_PREFIXES):
            after = text[e] if e < len(text) else " "
            if after not in _WORD and v.secret_token_ok(c):
                return ("secret", s, e)
        if c[0] == "e" and c[1:2] in ("w", "y") and "jwt" in enabled and "." in c:
            return ("jwt", s, e) if v.jwt_ok(c) else (_NOTHING, e, 0)
        if ipv6_shaped:
            return self._ipv6(c, s, e)
        if c[1:2] in _LETTERS and c[2:4].isdigit() and "iban" in enabled:
            word = _folded(c)
            upper = word.upper()
            n = v.iban_ok(upper)
            if n and (upper == word or not _hex_id(word[:n])):
                return ("iban", s, s + n)
            # Not an IBAN (no such country, wrong length): its digit groups may still be a card
            # or phone number. An IBAN of the right length with a typo is just a bad IBAN.
            rest = word[4:].replace(" ", "")
            if rest.isdigit() and len(rest) + 4 != v.IBAN_LENGTHS.get(upper[:2]):
                return (_NOTHING, s + 4, 0)
            k, n = _iban_inside(text, s, e, word)
            return ("iban", s + k, s + k + n) if n else (_NOTHING, s + k, 0)
        return (_NOTHING, s + 1 if e - s <= 64 else e, 0)

    # -- per-family handlers -----------------------------------------------------------------

    def _url_credentials(self, c: str, s: int, e: int) -> _Verdict:
        if "url_credentials" not in self._enabled:
            return (_NOTHING, e, 0)
        slashes = c.find("://")
        start = slashes + 3 if slashes >= 0 else c.find(":\\/\\/") + 5
        userinfo = c[start:-1]
        user, _, password = userinfo.partition(":")
        if v.url_password_ok(user, password):
            return ("url_credentials", s + start, e - 1)
        return (_NOTHING, e, 0)

    def _email(self, text: str, s: int, end: int) -> _Verdict:
        if "email" not in self._enabled:
            return (_NOTHING, end, 0)
        core = text[s:end]
        at = core.find("@")
        width = 1
        if at < 0:
            at = core.find("%40")
            width = 3
        local = core[:at]
        stripped = local.lstrip("%+-")
        start = s + (len(local) - len(stripped))
        domain = core[at + width :]
        if (not domain.isascii() or "?" in domain) and not all(map(_domain_char, domain)):
            return (_NOTHING, end, 0)
        odd = not local.isascii() or "?" in local
        if odd or (s and (text[s - 1] == "." or not text[s - 1].isascii())):
            # The scan sees a non-ASCII letter as "?" ("josé@", "josé.garcía@"): the local part
            # is the letters before "@" as far back as they go (not a "?" or a CJK word glued
            # to it); redacting less would leave the start of the name behind.
            wider = _local_start(text, s + at)
            if wider < s + at and v.email_ok(text[wider : s + at], domain):
                start, stripped = wider, text[wider : s + at]
            elif odd:
                return (_NOTHING, end, 0)
        if not v.email_ok(stripped, domain) or _in_url_userinfo(text, start):
            return (_NOTHING, end, 0)
        return ("email", start, end)

    def _bearer(self, c: str, s: int, e: int) -> _Verdict:
        basic = c[:5].lower() == "basic"
        i = 5 if basic else 6
        while i < len(c) and c[i] in " \t":
            i += 1
        raw = c[i:]
        a = s + i
        enabled = self._enabled
        # A sentence may end right after the token; an unsigned JWT ends with "." itself.
        for token in dict.fromkeys((raw, raw.rstrip("."))):
            if not token:
                continue
            b = a + len(token)
            if "jwt" in enabled and token[0] == "e" and v.jwt_ok(token):
                return ("jwt", a, b)
            if "secret" in enabled and token.startswith(SECRET_PREFIXES) and v.secret_token_ok(
                token
            ):
                return ("secret", a, b)
            if basic:
                if v.basic_token_ok(token):
                    return ("bearer", a, b)
            elif (token != raw or not raw.endswith(".")) and v.bearer_token_ok(token):
                # An opaque token is taken without the sentence's full stop.
                return ("bearer", a, b)
        return (_NOTHING, a, 0)

    def _ipv6(self, c: str, s: int, e: int) -> _Verdict:
        if "ipv6" not in self._enabled:
            return (_NOTHING, e, 0)
        i, j = 0, len(c)
        if c[0] not in _HEX and c[0] != ":":
            i = 1
        while j > i and c[j - 1] not in _HEX and c[j - 1] != ":" and len(c) - j < 2:
            j -= 1
        body = c[i:j]
        if v.ipv6_ok(body):
            return ("ipv6", s + i, s + j)
        return (_NOTHING, e, 0)

    def _digits(self, text: str, c: str, s: int, e: int) -> _Verdict:
        """Card, SSN, IPv4 or phone: trim the context, then try each shape, shrinking once."""
        c = _folded(c)
        i, j = 0, len(c)
        while i < j and c[i] not in _BODY_START:
            i += 1
        if c[j - 1] not in _DIGITS:
            j -= 1
            if c[j - 1] not in _DIGITS:
                j -= 1
        if j - i < 7 or _dash_glued(text, c, i, j, e):
            return (_NOTHING, s + 1, 0)
        body = c[i:j]
        a = s + i
        first_body, first_a = body, a
        for _ in range(4):
            name = self._digit_kind(text, a, body)
            if name:
                return (name, a, a + len(body))
            if body[0] == "(":
                body = body[1:]
                a += 1
                continue
            # The scan takes the longest shape; a trailing group may not belong to the value
            # ("+1 415 555 2671 3 times", "4111 1111 1111 1111 123"), nor may the groups of
            # the next number after a national one with a trunk 0 ("020 7946 0958 020 ...").
            if (body[0] != "+" and (self._nanp or body[0] != "0") and body[:2] != "00"
                    and body.count(" ") + body.count("-") < 4):
                break
            shorter = body.rstrip("0123456789").rstrip(" .-(?")
            if len(shorter) < 7 or shorter[-1] not in _DIGITS:
                break
            body = shorter
        if "card" in self._enabled and _CARD_GROUPED.fullmatch(first_body):
            # A year or other group just before a card ("2024 4111 1111 1111 1111") makes the
            # scan start one group early. Try the card one group later, then skip the run: a
            # scan resumed at every group of "4111 4111 4111 ..." would cost a call per group.
            start = first_a + 5
            shifted = _folded(text[start : start + 19])
            if _trail_ok(text, start + 19) and v.card_ok(shifted):
                return ("card", start, start + 19)
            return (_NOTHING, first_a + len(first_body), 0)
        return (_NOTHING, first_a + 1, 0)

    def _digit_kind(self, text: str, a: int, body: str) -> str:
        enabled = self._enabled
        b0 = body[0]
        if b0 in "+(":
            if "phone" in enabled and self._phone_shape(body) and v.phone_ok(
                body, self.phone_region
            ):
                return "phone"
            return _NOTHING
        if body.startswith("00") and "phone" in enabled and _idd_ok(body, self.phone_region):
            return "phone"  # "0044 20 7946 0958": "+" dialled as the international prefix
        size = len(body)
        if "ssn" in enabled and (size == 11 or (size == 9 and body.isdigit())) and v.ssn_ok(body):
            return "ssn"
        if "card" in enabled and size >= 13 and v.card_ok(body):
            return "card"
        if "ipv4" in enabled and "." in body and v.ipv4_ok(body, text[max(0, a - 16) : a]):
            return "ipv4"
        if "phone" in enabled and self._phone_shape(body) and v.phone_ok(body, self.phone_region):
            return "phone"
        return _NOTHING

    def _phone_shape(self, body: str) -> bool:
        """Phone-like formatting: ``+`` and digits, or the region's national layout."""
        if body[0] == "+":
            return True
        if self._nanp:
            return _NANP_SHAPE.fullmatch(body) is not None
        return _TRUNK0_SHAPE.fullmatch(body) is not None and not body.isdigit()


def _idd_ok(body: str, region: str) -> bool:
    """A number dialled with ``00``: its first group is a calling code, then a valid number.

    ``"00123 4567 8901"`` is a zero-padded id: "123" is no calling code, although the digits
    make "+1 234 567 8901"."""
    shape = _IDD_SHAPE.fullmatch(body)
    return shape is not None and is_calling_code(shape[1]) and v.phone_ok("+" + body[2:], region)


def _folded(c: str) -> str:
    """``c`` as the scan saw it (non-ASCII characters as ``?``), except that the spaces and dashes
    of :data:`_SEPARATOR_FOLD` separate digit groups as " " and "-" do (``patterns`` admits them
    as ``?``)."""
    if c.isascii():
        return c
    return c.translate(_SEPARATOR_FOLD).encode("ascii", "replace").decode("ascii")


def _dash_glued(text: str, c: str, i: int, j: int, e: int) -> bool:
    """Is the body ``c[i:j]`` of a folded candidate ``text[s:e]`` part of a token whose parts a
    Unicode dash joins, as ``-`` joins ``ORD-123-45-6789``?

    The scan sees the dash as ``?``, which both separates digit groups and may stand around a
    value. The same dash inside the body and gluing it to a word makes one token
    (``ORD\u2013123\u201345\u20136789``, the ``06 2024\u201305\u201306`` of two dates); a dash
    between two values (``10.1.2.3\u201310.1.2.4``, ``id\u20134111...``) does not."""
    s = e - len(c)
    if i == 1 and c[0] == "-" and s > 0 and text[s - 1] in _WORD and text[s] in text[s + 1 : s + j]:
        return True
    return (c[j:] == "-" and e < len(text) and text[e] in _WORD
            and text[e - 1] in text[s + i : s + j])


def _lookback(before: str) -> int:
    """How many characters before a candidate its verdict may depend on, ``before`` being the
    one just before it (more than :data:`_LOCAL_MAX`: too many to memoize)."""
    if before in "/:":
        return 256
    if before == "." or not before.isascii():
        return _LOCAL_MAX
    return _CONTEXT


def _domain_char(ch: str) -> bool:
    """A character of an e-mail domain as the scan admits it: ASCII (but not ``?``, which is how
    the scan sees any non-ASCII character), or a letter, digit or mark of an IDN label."""
    if ch.isascii():
        return ch != "?"
    return ch.isalnum() or unicodedata.category(ch) in ("Mn", "Mc", "Cf")


def _word_char(ch: str) -> bool:
    """A non-ASCII character of a word in a script written with spaces between words: a Latin,
    Greek or Cyrillic letter, a combining mark, an invisible format character (soft hyphen,
    zero-width joiner). Not CJK: an address there is glued to the words around it."""
    if "\u00c0" <= ch < "\u0530" or "\u1e00" <= ch <= "\u1fff":
        return ch not in "\u00d7\u00f7"  # times, divided by; the rest: letters, marks
    return ch in _INVISIBLE


def _local_char(ch: str) -> bool:
    return ch in _LOCAL_ASCII or (not ch.isascii() and _word_char(ch))


def _local_start(text: str, start: int) -> int:
    """Where an e-mail local part the scan cut short at a non-ASCII letter really starts."""
    i = start
    floor = max(0, start - _LOCAL_MAX)
    while i > floor and _local_char(text[i - 1]):
        i -= 1
    if i == floor and i and _local_char(text[i - 1]):
        return start  # longer than a local part may be: no address, as in ASCII
    while i < start and text[i] in "%+-.":
        i += 1
    return i


def _iban_inside(text: str, s: int, e: int, word: str) -> tuple[int, int]:
    """An IBAN the candidate ``text[s:e]`` (folded: ``word``), which is none, runs into, as
    ``(offset, length)``; length 0: none, the scan resumes at ``offset``.

    Words may run into an IBAN ("ref ab12 your iban DE89 3704 ..."). Only a later group shaped
    like an IBAN's start (a country's code and check digits) can begin one, and each is checked
    here on the text from there (the scan would take its groups, or fewer). Resuming the scan at
    every such group instead cost a scan per group on "DE89 DE89 ..." (8 times the calls). A bad
    IBAN's groups are not searched for phone numbers, as before."""
    size = len(word)
    for k in range(5, size - 3):
        if word[k - 1] not in " ?" or not word[k + 2 : k + 4].isdigit():
            continue
        need = v.IBAN_LENGTHS.get(word[k : k + 2].upper())
        if need is None:
            continue
        stop = s + k + need + need // 4 + 2  # single separators: all the scan admits
        if stop > e + _CONTEXT:  # the verdict may depend on no more (memo)
            return (k, 0)
        run = _IBAN_RUN.match(_folded(text[s + k : stop]))
        assert run is not None  # the pattern matches the empty string
        n = v.iban_ok(run[0].upper())
        if n and (run[0][:n].isupper() or not _hex_id(run[0][:n])):
            return (k, n)
    return (size, 0)


def _hex_id(c: str) -> bool:
    """A lower-case hex id ("be08e3ef015c52fa", a trace's span id), not an IBAN typed in small
    letters: no space, and letters after the check digits, all of them hex digits (the letters
    of bank codes are not: "gb82west...", "nl91abna...")."""
    rest = c[4:]
    return " " not in rest and not rest.isdigit() and all(ch in _HEX for ch in rest)


def _trail_ok(text: str, end: int) -> bool:
    """The digit-shape context after a value (``DTRAIL`` in ``patterns``)."""
    after = text[end : end + 2]
    if not after:
        return True
    if after[0] in _WORD:
        return False
    return after[0] not in ".-" or len(after) == 1 or after[1] not in _WORD


def _in_url_userinfo(text: str, start: int) -> bool:
    """``ssh://git@host`` and ``https://user:pw@host``: a URL's user, not a mailbox."""
    if start == 0 or text[start - 1] not in "/:":
        return False
    before = text[max(0, start - 256) : start]
    cut = max(before.rfind(" "), before.rfind("\n"), before.rfind("\t"), before.rfind('"'))
    before = before[cut + 1 :]
    if before.endswith(("//", "\\/\\/")):
        return True
    return before.endswith(":") and ("://" in before or ":\\/\\/" in before)


def _rebuild(names: tuple[str, ...], phone_region: str) -> Detectors:
    """Unpickle a :class:`Detectors` (it holds compiled programs, so it is rebuilt)."""
    return Detectors(names, phone_region=phone_region)
