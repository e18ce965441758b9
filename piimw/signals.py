"""Opt-out signals that need configuration: IAB GPP strings, the legacy ``usprivacy`` string,
session flags; and the ``consent`` settings that name where to find them.

``Sec-GPC`` and ``DNT`` need no configuration and are read in :mod:`piimw.consent`.
Parsing is conservative: a string that cannot be parsed is no signal (and is logged, without
its value); a section piimw does not know contributes nothing. Only opt-outs are read, never
an opt-in: "did not opt out" in a CMP string does not lift anything.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

from piimw.consent import DEFAULT, HEADER_NAMES, Consent, from_headers, from_session_flag
from piimw.errors import ConfigError

logger = logging.getLogger("piimw.signals")

#: Sale, sharing and targeted-advertising opt-outs: the same reach as GPC.
SALE_USES: Final = ("marketing", "third_party")
MAX_SIGNAL_CHARS: Final = 8192

_SOURCE = "^(cookie|header):[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
CONSENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "gpp_sources": {"type": "array", "items": {"type": "string", "pattern": _SOURCE}},
        "usprivacy_sources": {"type": "array", "items": {"type": "string", "pattern": _SOURCE}},
        "session_key": {"type": "string", "minLength": 1, "maxLength": 128},
        "gpc_json": {"anyOf": [
            {"type": "boolean"},
            {"type": "object", "additionalProperties": False, "properties": {
                "gpc": {"type": "boolean"},
                "last_update": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            }},
        ]},
        "write_through": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class Source:
    """Where a signal string is read from: a cookie (exact name) or a header (any case)."""

    kind: Literal["cookie", "header"]
    name: str

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, _, name = text.partition(":")
        if kind not in ("cookie", "header") or not name:
            raise ValueError("a source is 'cookie:NAME' or 'header:NAME'")
        return cls("cookie" if kind == "cookie" else "header",
                   name.lower() if kind == "header" else name)


@dataclass(frozen=True)
class GpcJson:
    """What ``/.well-known/gpc.json`` says (https://privacycg.github.io/gpc-spec/)."""

    gpc: bool = True
    last_update: str | None = None


#: The headers each standard signal is read from (``registry``: none, it is per user).
STANDARD_VARY: Final[dict[str, tuple[str, ...]]] = {
    "gpc": ("Sec-GPC",), "dnt": ("DNT", "X-Do-Not-Track"), "header": ("X-PII-Opt-Out",),
    "session": ("Cookie",),
}


def _source_headers(sources: tuple[Source, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys("Cookie" if s.kind == "cookie" else s.name for s in sources))


@dataclass(frozen=True)
class ConsentSettings:
    """The ``consent`` section of the configuration."""

    gpp_sources: tuple[Source, ...] = ()
    usprivacy_sources: tuple[Source, ...] = (Source("cookie", "usprivacy"),)
    session_key: str | None = None
    gpc_json: GpcJson | None = None
    write_through: bool = True

    #: Request header names that may carry a GPP or usprivacy string (``cookie`` too).
    header_names: frozenset[bytes] = dataclasses.field(init=False, repr=False,
                                                            compare=False)
    #: Those plus the opt-out headers: a request with none of them carries no signal.
    signal_headers: frozenset[bytes] = dataclasses.field(init=False, repr=False,
                                                            compare=False)
    #: The source cookies' names; None when a source is the ``Cookie`` header itself. A
    #: ``Cookie`` header that contains none of them carries no signal (see
    #: :func:`from_request`).
    cookie_names: tuple[bytes, ...] | None = dataclasses.field(init=False, repr=False,
                                                                compare=False)
    #: The source cookies' names as :func:`_cookie_values` looks them up.
    source_cookies: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    #: Request headers a response changed by each signal varies on (for ``Vary``).
    vary: Mapping[str, tuple[str, ...]] = dataclasses.field(init=False, repr=False,
                                                            compare=False)
    #: The headers of every signal that arrives in its own header (not ``Cookie``): a
    #: response a signal could change varies on them whether or not this request sent one.
    header_vary: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sources = self.gpp_sources + self.usprivacy_sources
        names = frozenset(b"cookie" if s.kind == "cookie" else s.name.lower().encode("latin-1")
                          for s in sources)
        object.__setattr__(self, "header_names", names)
        object.__setattr__(self, "signal_headers", names | HEADER_NAMES)
        whole = any(s.kind == "header" and s.name.lower() == "cookie" for s in sources)
        object.__setattr__(self, "cookie_names", None if whole else tuple(
            {s.name.encode("latin-1"): None for s in sources if s.kind == "cookie"}))
        object.__setattr__(self, "source_cookies",
                           frozenset(s.name for s in sources if s.kind == "cookie"))
        object.__setattr__(self, "vary", {
            **STANDARD_VARY,
            "gpp": _source_headers(self.gpp_sources),
            "usprivacy": _source_headers(self.usprivacy_sources),
        })
        object.__setattr__(self, "header_vary", tuple(sorted(
            {name for names in self.vary.values() for name in names} - {"Cookie"})))

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None, *,
                    source: str = "<config>") -> ConsentSettings:
        if raw is None:
            return cls()
        _validate(raw, source)
        gpc_json = raw.get("gpc_json", False)
        return cls(
            gpp_sources=tuple(Source.parse(s) for s in raw.get("gpp_sources", ())),
            usprivacy_sources=tuple(Source.parse(s) for s in raw.get(
                "usprivacy_sources", ["cookie:usprivacy"])),
            session_key=raw.get("session_key"),
            gpc_json=None if gpc_json is False else GpcJson() if gpc_json is True else GpcJson(
                bool(gpc_json.get("gpc", True)), gpc_json.get("last_update")),
            write_through=bool(raw.get("write_through", True)),
        )


DEFAULT_SETTINGS: Final = ConsentSettings()


def _validate(raw: Mapping[str, Any], source: str) -> None:
    """The checks of :data:`CONSENT_SCHEMA`, for callers that skip the config schema."""
    def fail(pointer: str, message: str) -> ConfigError:
        return ConfigError(message, source=source, pointer="/consent" + pointer)

    if not isinstance(raw, Mapping):
        raise fail("", "expected object")
    extra = sorted(set(raw) - set(CONSENT_SCHEMA["properties"]))
    if extra:
        raise fail("", f"unknown setting(s) {', '.join(map(repr, extra))}")
    for key in ("gpp_sources", "usprivacy_sources"):
        items = raw.get(key, [])
        if not isinstance(items, list):
            raise fail(f"/{key}", "expected array")
        for i, item in enumerate(items):
            if not isinstance(item, str) or not re.match(_SOURCE, item):
                raise fail(f"/{key}/{i}", "expected 'cookie:NAME' or 'header:NAME'")
    key_ = raw.get("session_key")
    if key_ is not None and (not isinstance(key_, str) or not 0 < len(key_) <= 128):
        raise fail("/session_key", "expected a non-empty string")
    if not isinstance(raw.get("write_through", True), bool):
        raise fail("/write_through", "expected boolean")
    gpc = raw.get("gpc_json", False)
    if isinstance(gpc, Mapping):
        if set(gpc) - {"gpc", "last_update"}:
            raise fail("/gpc_json", "unknown setting(s)")
        if not isinstance(gpc.get("gpc", True), bool):
            raise fail("/gpc_json/gpc", "expected boolean")
        date = gpc.get("last_update")
        if date is not None and (not isinstance(date, str)
                                 or not re.match("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", date)):
            raise fail("/gpc_json/last_update", "expected a date YYYY-MM-DD")
    elif not isinstance(gpc, bool):
        raise fail("/gpc_json", "expected boolean or object")


# -- logging without values, at most once a minute per reason ----------------------------------
_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


def _unparseable(kind: str, reason: str) -> None:
    key = f"{kind}:{reason}"
    now = time.monotonic()
    with _log_lock:
        last = _last_logged.get(key)
        if last is not None and now - last < 60.0:
            return
        _last_logged[key] = now
    logger.warning("piimw: ignored an unparseable %s string (%s); it counts as no signal",
                   kind, reason)


# -- usprivacy --------------------------------------------------------------------------------
_USP = re.compile(r"^1[YN-]{3}$")


def parse_usprivacy(value: str) -> bool | None:
    """``True`` if a ``1YYN``-style string says "opted out of sale"; None if unparseable.

    Characters: version ``1``, notice given, opted out of sale, LSPA covered (``Y``/``N``/``-``).
    """
    text = value.strip().strip('"').upper()
    if not _USP.match(text):
        return None
    return text[2] == "Y"


# -- GPP ----------------------------------------------------------------------------------------
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_INDEX = {c: i for i, c in enumerate(_B64)}
_FIB = [1, 2]
while len(_FIB) < 40:
    _FIB.append(_FIB[-1] + _FIB[-2])
MAX_SECTIONS: Final = 64

#: US sections whose layout piimw reads: section id -> (name, {field: bit offset}). Each field
#: is 2 bits (0 not applicable, 1 opted out, 2 did not opt out), after a 6-bit version and the
#: section's notice fields (IAB GPP v1 section specifications).
US_SECTIONS: Final[dict[int, tuple[str, dict[str, int]]]] = {
    7: ("usnat", {"sale": 18, "sharing": 20, "targeted_advertising": 22}),
    8: ("usca", {"sale": 12, "sharing": 14}),
    9: ("usva", {"sale": 12, "targeted_advertising": 14}),
    10: ("usco", {"sale": 12, "targeted_advertising": 14}),
    11: ("usut", {"sale": 14, "targeted_advertising": 16}),
    12: ("usct", {"sale": 12, "targeted_advertising": 14}),
    13: ("usfl", {"sale": 12, "targeted_advertising": 14}),
    14: ("usmt", {"sale": 12, "targeted_advertising": 14}),
    15: ("usor", {"sale": 12, "targeted_advertising": 14}),
    16: ("ustx", {"sale": 12, "targeted_advertising": 14}),
    17: ("usde", {"sale": 12, "targeted_advertising": 14}),
    18: ("usia", {"sale": 14, "targeted_advertising": 16}),
    19: ("usne", {"sale": 12, "targeted_advertising": 14}),
    20: ("usnh", {"sale": 12, "targeted_advertising": 14}),
    21: ("usnj", {"sale": 12, "targeted_advertising": 14}),
    22: ("ustn", {"sale": 12, "targeted_advertising": 14}),
    23: ("usmn", {"sale": 12, "targeted_advertising": 14}),
    # Sections of the newer MSPA layout: a 6-bit MSPA version, the covered-transaction and
    # mode fields and the processing notice come first.
    24: ("usmd", {"sale": 16, "targeted_advertising": 18}),
    25: ("usin", {"sale": 16, "targeted_advertising": 18}),
    26: ("usky", {"sale": 16, "targeted_advertising": 18}),
    27: ("usri", {"sale": 16, "targeted_advertising": 18}),
}
#: Sections that encoders write either core first or after a section header (the section's
#: id in 6 bits, a version, the subsections present); both layouts are in use.
US_HEADED_SECTIONS: Final = frozenset({24, 25, 26, 27})
USPV1_SECTION: Final = 6


class _Bad(ValueError):
    """Unparseable, with a reason that never contains the input."""


def _bits(segment: str) -> str:
    try:
        return "".join(format(_B64_INDEX[c], "06b") for c in segment)
    except KeyError:
        raise _Bad("not base64url") from None


def _fibonacci(bits: str, pos: int) -> tuple[int, int]:
    end = bits.find("11", pos)
    if end < 0 or end - pos >= len(_FIB):
        raise _Bad("bad Fibonacci integer")
    value = sum(_FIB[i] for i, b in enumerate(bits[pos:end + 1]) if b == "1")
    return value, end + 2


def _section_ids(header: str) -> list[int]:
    bits = _bits(header)
    if len(bits) < 24:
        raise _Bad("header too short")
    if int(bits[0:6], 2) != 3:
        raise _Bad("not a GPP header")
    if int(bits[6:12], 2) != 1:
        raise _Bad("unknown GPP version")
    count, pos, offset = int(bits[12:24], 2), 24, 0
    ids: list[int] = []
    for _ in range(count):
        if pos >= len(bits):
            raise _Bad("header truncated")
        is_range, pos = bits[pos] == "1", pos + 1
        if is_range:
            start, pos = _fibonacci(bits, pos)
            start += offset
            end, pos = _fibonacci(bits, pos)
            end += start
            if end - start + len(ids) > MAX_SECTIONS:
                raise _Bad("too many sections")
            ids.extend(range(start, end + 1))
            offset = end
        else:
            value, pos = _fibonacci(bits, pos)
            offset += value
            ids.append(offset)
        if len(ids) > MAX_SECTIONS:
            raise _Bad("too many sections")
    return ids


@dataclass(frozen=True)
class GppResult:
    """What a GPP string said: the sections read, and which opt-outs they carry."""

    sections: tuple[str, ...]
    opt_outs: tuple[str, ...]  # e.g. "usnat.sale", "usca.gpc"

    @property
    def opted_out(self) -> bool:
        return bool(self.opt_outs)


def _us_section(section_id: int, text: str) -> tuple[str, list[str]]:
    name, fields = US_SECTIONS[section_id]
    segments = text.split(".")
    if (section_id in US_HEADED_SECTIONS and len(segments) > 1
            and _bits(segments[0][:1]) == format(section_id, "06b")):
        # A section header first: a core segment starts with its version (1), never the id.
        segments = segments[1:]
    core = _bits(segments[0])
    needed = max(fields.values()) + 2
    if len(core) < needed:
        raise _Bad(f"{name} section too short")
    if int(core[0:6], 2) < 1:
        raise _Bad(f"{name} section version")
    found = []
    for field, at in fields.items():
        value = int(core[at:at + 2], 2)
        if value == 3:
            raise _Bad(f"{name} section value out of range")
        if value == 1:
            found.append(f"{name}.{field}")
    for extra in segments[1:]:
        sub = _bits(extra)
        if len(sub) >= 3 and int(sub[0:2], 2) == 1 and sub[2] == "1":
            found.append(f"{name}.gpc")
    return name, found


def parse_gpp(value: str) -> GppResult:
    """Parse a GPP string (``DBABL~...``). Raises ValueError (no value in the message)."""
    text = value.strip().strip('"')
    if not text or len(text) > MAX_SIGNAL_CHARS:
        raise _Bad("empty or too long")
    parts = text.split("~")
    ids = _section_ids(parts[0].split(".")[0])
    if len(ids) != len(parts) - 1:
        raise _Bad("section count differs from header")
    sections: list[str] = []
    opt_outs: list[str] = []
    for section_id, section in zip(ids, parts[1:], strict=True):
        try:
            if section_id in US_SECTIONS:
                name, found = _us_section(section_id, section)
            elif section_id == USPV1_SECTION:
                name, usp = "uspv1", parse_usprivacy(section)
                if usp is None:
                    raise _Bad("uspv1 section")
                found = ["uspv1.sale"] if usp else []
            else:
                continue  # a section piimw does not read (TCF, other states): no signal
        except _Bad as e:
            _unparseable("GPP section", str(e))  # the others still count
            continue
        sections.append(name)
        opt_outs.extend(found)
    return GppResult(tuple(sections), tuple(opt_outs))


# -- reading requests -------------------------------------------------------------------------
def _cookie_values(headers: Iterable[tuple[bytes, bytes]],
                   names: frozenset[str]) -> dict[str, list[str]]:
    """The values of the cookies named ``names``, in the order the headers give them.

    A cookie is a ``;``-separated part whose text before its first ``=``, stripped, is the
    name; its value is the rest, stripped. Only the parts that contain a name are split:
    browsers send dozens of cookies, and reading each one in Python cost more than all the
    rest of a request's consent (tests compare this with the reading part by part).
    """
    found: dict[str, list[str]] = {}
    for key, value in headers:
        if key != b"cookie":
            continue
        text = value.decode("latin-1")
        for name in names:
            at = text.find(name)
            while at >= 0:
                start = text.rfind(";", 0, at) + 1
                end = text.find(";", at)
                if end < 0:
                    end = len(text)
                cookie, eq, val = text[start:end].partition("=")
                if eq and cookie.strip() == name:
                    found.setdefault(name, []).append(val.strip())
                at = text.find(name, end + 1)  # from the next part: one reading each
    return found


def _values(headers: list[tuple[bytes, bytes]], sources: tuple[Source, ...],
            cookies: dict[str, list[str]]) -> list[str]:
    out: list[str] = []
    for src in sources:
        if src.kind == "cookie":
            out.extend(cookies.get(src.name, ()))
        else:
            name = src.name.encode("latin-1")
            out.extend(v.decode("latin-1") for k, v in headers if k == name)
    return out


def header_consent(headers: list[tuple[bytes, bytes]],
                   settings: ConsentSettings = DEFAULT_SETTINGS) -> Consent:
    """Every opt-out signal in a request's headers: ``Sec-GPC``, ``DNT`` and the opt-out
    headers (:func:`piimw.consent.from_headers`), then the configured GPP and usprivacy
    sources (:func:`from_request`). :data:`~piimw.consent.DEFAULT` itself when there is none.
    One pass over the headers: the exchange calls this for every request with a cookie."""
    standard: list[tuple[bytes, bytes]] | None = None
    size = 0
    sources = False
    present = settings.header_names
    cookies = settings.cookie_names
    for k, v in headers:
        if k in HEADER_NAMES:
            if standard is None:
                standard = []
            standard.append((k, v))
            size += len(v)
        if not sources and k in present:
            sources = may_hold_source(k, v, cookies)
    if standard is None:
        consent = DEFAULT
    elif size <= _MEMO_VALUE_BYTES:  # the key holds the values, and clients choose them
        consent = _memo_standard(tuple(standard))
    else:
        consent = _read_standard(standard)
    if sources:
        extra = _read_sources(headers, settings)
        if extra is not DEFAULT:
            consent = consent.merge(extra)
    return consent


#: Longest opt-out header values (together) whose reading is memoised: real ones are a few
#: bytes (``1``, ``analytics, marketing``).
_MEMO_VALUE_BYTES = 256


def _read_standard(pairs: Iterable[tuple[bytes, bytes]]) -> Consent:
    """:func:`~piimw.consent.from_headers` of ASGI header pairs."""
    return from_headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs])


#: Most browsers that send a signal send the same one (``Sec-GPC: 1``): one reading serves all.
_memo_standard = lru_cache(maxsize=256)(_read_standard)


def from_request(headers: Iterable[tuple[bytes, bytes]],
                 settings: ConsentSettings = DEFAULT_SETTINGS) -> Consent:
    """GPP and usprivacy opt-outs from the configured sources (ASGI-style header pairs)."""
    hdrs = headers if isinstance(headers, list) else list(headers)
    present = settings.header_names
    cookies = settings.cookie_names
    for k, v in hdrs:
        if k in present and may_hold_source(k, v, cookies):
            return _read_sources(hdrs, settings)
    return DEFAULT


def may_hold_source(name: bytes, value: bytes, cookies: tuple[bytes, ...] | None) -> bool:
    """Could this source header (``name`` is one) hold a signal? Exact, and cheap where it
    matters: most requests carry cookies and few of them a source cookie, whose name a
    ``Cookie`` header must then contain (:func:`_cookie_values` splits its latin-1 text, so
    a name found there is a substring of its bytes)."""
    if name != b"cookie" or cookies is None:
        return True
    for cookie in cookies:  # noqa: SIM110 (a generator in any() costs more than the search)
        if value.find(cookie) >= 0:  # not ``in``: bytes.__contains__ tries an int first
            return True
    return False


def _read_sources(hdrs: list[tuple[bytes, bytes]], settings: ConsentSettings) -> Consent:
    """The configured sources' strings, parsed (:func:`from_request` without its check)."""
    names = settings.source_cookies
    cookies = _cookie_values(hdrs, names) if names else {}
    consent = DEFAULT
    for value in _values(hdrs, settings.gpp_sources, cookies):
        try:
            result = parse_gpp(value)
        except ValueError as e:
            _unparseable("GPP", str(e))
            continue
        if result.opted_out:
            consent = consent.merge(Consent.opt_out(SALE_USES, signal="gpp"))
            break
    for value in _values(hdrs, settings.usprivacy_sources, cookies):
        usp = parse_usprivacy(value)
        if usp is None:
            _unparseable("usprivacy", "not a 1YNN-style string")
        elif usp:
            consent = consent.merge(Consent.opt_out(SALE_USES, signal="usprivacy"))
            break
    return consent


def session_consent(session: Mapping[str, Any] | None,
                    settings: ConsentSettings = DEFAULT_SETTINGS) -> Consent:
    """The opt-out an application keeps in its session under ``consent.session_key``.

    The flag's meaning is :func:`piimw.consent.from_session_flag`'s (one reading for every
    adapter): ``True`` or ``"all"``, a use or a list of uses; any other shape opts out of all
    non-essential uses.
    """
    key = settings.session_key
    if not key or not session:
        return DEFAULT
    return from_session_flag(session.get(key)) or DEFAULT


__all__ = ["CONSENT_SCHEMA", "DEFAULT_SETTINGS", "SALE_USES", "ConsentSettings", "GpcJson",
           "GppResult", "Source", "from_request", "parse_gpp", "parse_usprivacy",
           "session_consent"]
