"""RE2 sources of the built-in detectors, joined into one alternation and scanned once per text.

Design rules, all for speed and for linear time on hostile input:

* RE2 syntax only (no look-around, no back-references) and no capture groups: the engine runs
  the DFA and reports where a candidate starts and ends; the validators decide what it is.
* Matching is leftmost-longest, so a candidate is always the longest shape at its start.
* Shapes that would fire on half of every log line (bare digit runs, ``a::b``) are excluded by the
  regex itself rather than by a validator, because each candidate costs a round trip into Python.
  Digit-shaped values therefore carry their context in the pattern (``DLEAD``/``DTRAIL``): they
  must not be glued to a letter, digit, ``_``, or a ``.``/``-`` that continues a longer token
  (``ORD-123-45-6789``, ``1.2.3.4.5``, a UUID). Those context characters are part of the RE2
  match and trimmed off again by the engine.
* Everything is ASCII: the engine scans ``text.encode("ascii", "replace")`` with RE2 in Latin-1
  mode, which keeps byte offsets equal to ``str`` indices (any non-ASCII character becomes ``?``).
  Digit shapes therefore accept ``?`` where they accept a space or a dash: a no-break space (a
  word processor's, a locale's number format) or a non-breaking hyphen separates digit groups
  too. The engine folds those to " " and "-" before validating; any other character (a real
  ``?``, a letter) keeps the candidate from validating.
"""

from __future__ import annotations

__all__ = [
    "ALTERNATIVES",
    "CATEGORIES",
    "DEFAULT_DETECTORS",
    "IDD_PHONE",
    "NANP_PHONE",
    "SECRET_PREFIXES",
    "TRUNK0_PHONE",
    "combined",
]

#: Built-in detector names, in the order their alternatives are tried when shapes tie.
DEFAULT_DETECTORS: tuple[str, ...] = (
    "email",
    "phone",
    "card",
    "ssn",
    "iban",
    "ipv4",
    "ipv6",
    "jwt",
    "bearer",
    "secret",
    "url_credentials",
)

CATEGORIES: dict[str, str] = {
    "email": "user.contact.email",
    "phone": "user.contact.phone_number",
    "card": "user.financial.credit_card",
    "ssn": "user.government_id.national_identification_number",
    "iban": "user.financial.bank_account",
    "ipv4": "user.device.ip_address",
    "ipv6": "user.device.ip_address",
    "jwt": "user.authorization.credentials",
    "bearer": "user.authorization.credentials",
    "secret": "user.authorization.credentials",
    "url_credentials": "user.authorization.credentials",
}

# Context of digit-shaped values. Before: start of text, a character that cannot continue a token,
# or an escaped newline/tab of a JSON log ("\n4111..."). After: end of text, such a character, or
# sentence punctuation ("call 555-123-4567.").
DLEAD = r"(?:^|[^A-Za-z0-9_.\-]|\\[nrt])"
DTRAIL = r"(?:$|[^A-Za-z0-9_.\-]|[.\-](?:$|[^A-Za-z0-9_]))"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_H = r"[0-9A-Fa-f]{1,4}"

# A local part and a domain's labels may hold non-ASCII letters ("?" to the scan: josé@bücher.de);
# the engine checks what they are. The top-level domain is ASCII (or its punycode).
EMAIL = (
    r"[A-Za-z0-9_%+\-?]+(?:\.[A-Za-z0-9_%+\-?]+)*(?:@|%40)"
    r"(?:[A-Za-z0-9?](?:[A-Za-z0-9\-?]*[A-Za-z0-9?])?\.)+[A-Za-z]{2,}"
    r"(?:$|[^A-Za-z0-9_@\-])"
)

CARD = (
    DLEAD
    + r"(?:[2-6][0-9]{12,18}"
    + r"|[2-6][0-9]{3}[ \-?][0-9]{4}[ \-?][0-9]{4}[ \-?][0-9]{1,4}(?:[ \-?][0-9]{1,3})?"
    + r"|3[0-9]{3}[ \-?][0-9]{6}[ \-?][0-9]{4,5})"
    + DTRAIL
)

SSN = (
    DLEAD
    + r"(?:[0-8][0-9]{2}-[0-9]{2}-[0-9]{4}|[0-8][0-9]{2} [0-9]{2} [0-9]{4}"
    + r"|[0-8][0-9]{2}\?[0-9]{2}\?[0-9]{4})"
    + DTRAIL
)
# Nine bare digits are an SSN only right after a keyword.
SSN_KEYWORD = (
    r"\b(?i:ssn|social[ _\-]?security(?:[ _\-]?(?:number|num|no))?)[^A-Za-z0-9]{0,5}"
    r"[0-8][0-9]{8}" + DTRAIL
)

# International: "+", country code, then groups; at most one bracketed group ("+44 (0) 20 ...").
INTL_PHONE = (
    DLEAD
    + r"\+[1-9][0-9]{0,3}(?:[ .\-?]?\([0-9]{1,4}\))?(?:[ .\-?]?[0-9]{1,6}){1,6}"
    + DTRAIL
)
# The same dialled with the international prefix most of the world uses ("0044 20 7946 0958"). A
# separator after the country code is required: zero-padded ids are not phone numbers.
IDD_PHONE = (
    DLEAD
    + r"00[1-9][0-9]{0,3}[ .\-?](?:\([0-9]{1,4}\)[ .\-?]?)?[0-9]{1,6}(?:[ .\-?]?[0-9]{1,6}){0,5}"
    + DTRAIL
)
# North American national format; separators required (bare 10-digit runs are ids, not phones).
NANP_PHONE = (
    DLEAD
    + r"(?:1[ .\-?]?)?(?:\([2-9][0-9]{2}\)[ .\-?]?|[2-9][0-9]{2}[ .\-?])[2-9][0-9]{2}[ .\-?]"
    + r"[0-9]{4}"
    + DTRAIL
)
# National format of countries whose trunk prefix is 0 ("020 7946 0958", "06 12 34 56 78").
TRUNK0_PHONE = (
    DLEAD
    + r"(?:\(0[0-9]{1,4}\)|0[0-9]{1,4})[ .\-/?]?[0-9]{2,4}(?:[ .\-?]?[0-9]{2,4}){1,3}"
    + DTRAIL
)

# Typed by hand, an IBAN is often in small letters ("de89 3704 ..."); "?" is a no-break space.
IBAN = r"\b(?i:[A-Z]{2}[0-9]{2}(?:[ ?]?[A-Z0-9]{4}){2,7}(?:[ ?]?[A-Z0-9]{1,3})?)\b"

IPV4 = DLEAD + _OCTET + r"(?:\." + _OCTET + r"){3}" + DTRAIL

_L = r"[0-9A-Fa-f]{3,4}"
_V4TAIL = r"(?:\.[0-9]{1,3}){3}"
_TRAIL6 = r"(?:$|[^A-Za-z0-9_:.]|\.(?:$|[^A-Za-z0-9_]))"
# Every real address has a group of 3-4 hex digits ("fe80", "2001", "db8"); requiring one keeps
# "a::b", "1::2" and MAC addresses from becoming candidates at all.
_IPV6_FULL = "|".join(
    rf"\b(?:{_H}:){{{k}}}{_L}(?::{_H}){{{7 - k}}}" for k in range(8)
)
IPV6 = (
    r"(?:" + _IPV6_FULL
    + r"|\b(?:" + _H + r":)*" + _L + r"(?::" + _H + r")*::(?:" + _H + r"(?::" + _H + r")*)?"
    + r"|(?:\b" + _H + r"(?::" + _H + r")*::|(?:^|[^A-Za-z0-9_:])::)(?:" + _H + r":)*" + _L
    + r"(?::" + _H + r")*)"
    + r"(?:" + _V4TAIL + r")?" + _TRAIL6
)

# Header segment starts with '{"' or '{ ' or '{\n' in base64url: "ey" or "ew".
JWT = (
    r"\be[wy][A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"
    r"(?:\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]*)?"
)

# Tokens shorter than these are words ("Bearer realm", "basic auth"), not credentials.
BEARER = r"\b(?:(?i:bearer)[ \t]+[A-Za-z0-9\-._~+/]{12,}|(?i:basic)[ \t]+[A-Za-z0-9+/]{8,})=*"

#: Token prefixes the secret detector knows; the engine dispatches on them.
SECRET_PREFIXES: tuple[str, ...] = (
    "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
    "glpat-", "xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-", "sk_live_", "sk_test_", "rk_live_",
    "rk_test_", "AIza", "sk-", "npm_", "SK", "SG.",
)

SECRETS = (
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16,}",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",
    r"\bgithub_pat_[A-Za-z0-9_]{40,}",
    r"\bglpat-[A-Za-z0-9_\-]{20,}",
    r"\bxox[baprs]-[A-Za-z0-9\-]{10,}",
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\bAIza[A-Za-z0-9_\-]{35,}",
    r"\bsk-[A-Za-z0-9_\-]{20,}",
    r"\bnpm_[A-Za-z0-9]{36,}",
    r"\bSK[0-9A-Fa-f]{32,}",
    r"\bSG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
    # A PEM private key, whole; its body cannot contain "--", so it stops at the first END line.
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^\-]|-[^\-])*"
    r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----",
    # ... or cut off before its END line.
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----[A-Za-z0-9+/=\s\\]{40,}",
)

# scheme://user:password@ (also JSON-escaped "https:\/\/..."); the finding is "user:password".
# Passwords in connection strings are often not percent-encoded, so "#" and "?" are allowed there.
URL_CREDENTIALS = (
    r"[A-Za-z][A-Za-z0-9+.\-]*:(?://|\\/\\/)[^\s/?#@:\"'<>\\]*:[^\s/@\"'<>\\]+@"
)

#: Scan alternatives of each detector except ``phone`` (which depends on the region).
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "email": (EMAIL,),
    "card": (CARD,),
    "ssn": (SSN, SSN_KEYWORD),
    "iban": (IBAN,),
    "ipv4": (IPV4,),
    "ipv6": (IPV6,),
    "jwt": (JWT,),
    "bearer": (BEARER,),
    "secret": SECRETS,
    "url_credentials": (URL_CREDENTIALS,),
}


def phone_alternatives(nanp: bool) -> tuple[str, ...]:
    """Phone shapes for a default region: international (``+``) always, plus national format.

    National format is recognized for NANP regions (US, CA, ...) and for countries whose
    numbers are written with a leading trunk ``0`` (GB, DE, FR, IT, ...); elsewhere (ES, DK, ...)
    numbers need their ``+`` country code to be found.
    """
    return (INTL_PHONE, IDD_PHONE, NANP_PHONE if nanp else TRUNK0_PHONE)


def combined(names: tuple[str, ...], *, nanp: bool) -> str:
    """The one alternation scanned per text for the detectors ``names``."""
    parts: list[str] = []
    for name in names:
        alts = phone_alternatives(nanp) if name == "phone" else ALTERNATIVES[name]
        parts.extend(alts)
    return "|".join(f"(?:{p})" for p in parts)
