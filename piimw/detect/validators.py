"""Checks that turn a regex candidate into a finding: checksums, issuer ranges, registries.

The scan regexes only find things shaped like PII; most false positives (order ids, digests,
timestamps, placeholders) are thrown out here. Every function is pure, works on a short candidate
that the linear-time scan already bounded, and never raises on odd input (it returns ``False``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

import orjson

from piimw.detect.phones import phone_ok

__all__ = [
    "IBAN_LENGTHS",
    "aws_key_ok",
    "basic_token_ok",
    "bearer_token_ok",
    "card_ok",
    "email_ok",
    "iban_ok",
    "ipv4_ok",
    "ipv6_ok",
    "jwt_ok",
    "luhn_ok",
    "pem_ok",
    "phone_ok",
    "secret_token_ok",
    "ssn_ok",
    "url_password_ok",
]

_DIGITS = frozenset("0123456789")
_SEPARATORS = b" -.()/+"
# Luhn: the doubled value of each digit, digit-summed, as a translation table.
_LUHN_DOUBLE = bytes.maketrans(b"0123456789", b"0246813579")


def digits_of(body: str) -> str:
    """The digits of a digit-and-separator candidate (separators dropped).

    Candidates are ASCII; ``bytes.translate`` is several times faster than ``str.translate``.
    """
    return body.encode("ascii", "replace").translate(None, _SEPARATORS).decode("ascii")


# -- payment cards -------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """Luhn (mod 10) checksum, the check digit every payment card carries."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    raw = digits.encode("ascii")
    # Summing the bytes of ASCII digits is the fastest digit sum CPython offers.
    total = sum(raw[-1::-2]) + sum(raw[-2::-2].translate(_LUHN_DOUBLE))
    return (total - 48 * len(raw)) % 10 == 0


_MAESTRO = frozenset({"5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"})


def issuer_ok(digits: str) -> bool:
    """True if the number falls in an issuer's IIN range with a length that issuer uses.

    Random numbers that happen to pass Luhn (1 in 10) are mostly thrown out here.
    """
    n = len(digits)
    first = digits[0]
    p2 = digits[:2]
    p4 = digits[:4]
    if first == "4":  # Visa
        return n in (13, 16, 19)
    if first == "5":
        if "51" <= p2 <= "55":  # Mastercard
            return n == 16
        return p4 in _MAESTRO and 13 <= n <= 19
    if first == "2":
        if "2221" <= p4 <= "2720":  # Mastercard 2-series
            return n == 16
        return "2200" <= p4 <= "2204" and 16 <= n <= 19  # Mir
    if first == "3":
        if p2 in ("34", "37"):  # American Express
            return n == 15
        if "3528" <= p4 <= "3589":  # JCB
            return 16 <= n <= 19
        # Diners Club
        return ("300" <= digits[:3] <= "305" or p4 == "3095" or p2 in ("36", "38", "39")) and (
            14 <= n <= 19
        )
    if first == "6":
        # Discover (incl. the UnionPay co-branded 622126-622925 range), UnionPay, Maestro.
        if p4 == "6011" or "644" <= digits[:3] <= "649" or p2 in ("65", "62"):
            return 16 <= n <= 19
        return p4 in _MAESTRO and 13 <= n <= 19
    return False


#: Layouts of grouped card numbers, digits written as 9.
_CARD_LAYOUTS = frozenset(
    sep.join("9" * size for size in groups)
    for sep in " -"
    for groups in (
        (4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4, 4, 1), (4, 4, 4, 3), (4, 4, 4, 1),
        (4, 6, 5), (4, 6, 4),
    )
)
_LAYOUT = bytes.maketrans(b"0123456789", b"9999999999")


def card_ok(body: str) -> bool:
    """A card number: 13-19 digits, contiguous or in the usual groups, issuer range and Luhn."""
    if body.isdigit():
        digits = body
    elif body.encode("ascii", "replace").translate(_LAYOUT).decode() in _CARD_LAYOUTS:
        digits = digits_of(body)
    else:
        return False
    if not 13 <= len(digits) <= 19 or not digits.isascii():
        return False
    return issuer_ok(digits) and luhn_ok(digits)


# -- US social security numbers ------------------------------------------------------------------

#: Numbers that were published (and so are not anyone's): the Woolworth wallet card, an old SSA
#: advertisement and a LifeLock promotion.
_SSN_PUBLISHED = frozenset({"078051120", "219099999", "457555462"})


def ssn_ok(body: str) -> bool:
    """US SSN ``AAA-GG-SSSS`` (dashes or spaces, used consistently) or nine bare digits.

    Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
    """
    if len(body) == 11:
        sep = body[3]
        if sep not in "- " or body[6] != sep:
            return False
        digits = body[:3] + body[4:6] + body[7:]
    elif len(body) == 9:
        digits = body
    else:
        return False
    if not (digits.isascii() and digits.isdigit()):
        return False
    area = int(digits[:3])
    if area == 0 or area == 666 or area >= 900:
        return False
    if digits[3:5] == "00" or digits[5:] == "0000":
        return False
    return digits not in _SSN_PUBLISHED


# -- IBAN ----------------------------------------------------------------------------------------

#: IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def iban_mod97_ok(compact: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97."""
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def iban_ok(body: str) -> int:
    """Length of the valid IBAN at the start of ``body`` (in characters of ``body``), or 0.

    The scan may run one group too far (``DE89 3704 0044 0532 0130 00 EUR``): the country's length
    says where the IBAN ends, and that end must fall on a group boundary.
    """
    expected = IBAN_LENGTHS.get(body[:2])
    if expected is None:
        return 0
    count = 0
    end = 0
    for i, ch in enumerate(body):
        if ch == " ":
            continue
        count += 1
        if count == expected:
            end = i + 1
            break
    if not end or (end < len(body) and body[end] != " "):
        return 0
    compact = body[:end].replace(" ", "")
    if not (compact.isascii() and compact.isalnum() and compact[2:4].isdigit()):
        return 0
    return end if iban_mod97_ok(compact) else 0


# -- IP addresses --------------------------------------------------------------------------------

# A version number, not an address: "v1.2.3.4", "version 1.2.3.4", "Chrome/1.2.3.4".
_VERSION_BEFORE = re.compile(
    r"(?:(?:^|[^a-z])(?:v|ver|version|rev|revision|release|build)[\s:=#.]*|[a-z]/)$", re.ASCII
)


def ipv4_ok(body: str, before: str) -> bool:
    """A routable-looking IPv4 address; ``before`` is the text just before it (about 16 chars).

    The scan pattern only admits four decimal octets 0-255 without leading zeros, so what is left
    to decide depends on the first octet: ``0.x.x.x`` (this network), loopback ``127/8``,
    multicast ``224/4`` and reserved ``240/4`` (with the broadcast address) say nothing about a
    person and are skipped, exactly as ``ipaddress`` classifies them (see the tests). Version
    numbers introduced by ``v``/``version``/``Product/`` are skipped too. Private (RFC 1918)
    addresses are reported: behind NAT they still identify a device.
    """
    octets = body.split(".")
    if len(octets) != 4 or not body.replace(".", "").isdigit() or not body.isascii():
        return False
    for octet in octets:
        if not octet or len(octet) > 3 or (octet[0] == "0" and len(octet) > 1) or int(octet) > 255:
            return False
    first = int(octets[0])
    if first == 0 or first == 127 or first >= 224:
        return False
    low = before.lower()
    if "v" in low or "/" in low or "build" in low or "release" in low:
        return _VERSION_BEFORE.search(low) is None
    return True


def ipv6_ok(body: str) -> bool:
    """An IPv6 address that is not loopback/unspecified/multicast and does not look like code.

    ``a::b``, ``dead::beef`` (no digit), ``1::2`` (too short) and MAC/EUI-64-like all-two-digit
    groups are rejected; real addresses have a digit and at least one group of 3-4 hex digits.
    """
    head = body.split(".", 1)[0] if "." in body else body
    groups = [g for g in head.split(":") if g]
    if not groups or max(len(g) for g in groups) < 3:
        return False
    hexdigits = sum(len(g) for g in groups)
    if hexdigits < 4 or not any(ch in _DIGITS for ch in head):
        return False
    try:
        addr = ipaddress.IPv6Address(body)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_unspecified or addr.is_multicast)


# -- email ---------------------------------------------------------------------------------------

#: File extensions that are not top-level domains people have mail at: ``logo@2x.png``.
_FILE_TLDS = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif", "heic", "css",
     "js", "mjs", "cjs", "ts", "tsx", "jsx", "json", "xml", "html", "htm", "txt", "map", "woff",
     "woff2", "ttf", "otf", "eot", "pdf", "yml", "yaml", "toml", "ini", "cfg", "conf", "lock",
     "log", "exe", "dll", "gz", "tgz", "tar", "whl", "egg", "jar", "mp3", "mp4", "wav", "webm"}
)


def email_ok(local: str, domain: str) -> bool:
    """RFC 5321 limits and label rules, plus: the "TLD" must not be a file extension."""
    if not local or len(local) > 64 or len(domain) > 253:
        return False
    if local[0] == "." or local[-1] == "." or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    for label in labels:
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
    tld = labels[-1]
    return tld.isalpha() and tld.lower() not in _FILE_TLDS


# -- credentials ---------------------------------------------------------------------------------

# Values that stand in for a password rather than being one.
_PLACEHOLDER = re.compile(
    r"\**|x+|X+|\.+|-+|_+|\?+|(?i:redacted|\[redacted\]|hidden|masked|secret|password|pass|pwd|"
    r"passwd|changeme|your[_-]?password|xxx+|<[^>]*>|\{[^}]*\}|\$\{[^}]*\}|\$[A-Za-z_]\w*|%s|"
    r"%\([^)]*\)s|\*+[^*]{0,2})"
)


def url_password_ok(user: str, password: str) -> bool:
    """The password part of ``scheme://user:password@``: present and not a placeholder."""
    if not password or len(password) > 512 or len(user) > 512:
        return False
    return _PLACEHOLDER.fullmatch(password) is None


def _diverse(token: str, minimum: int = 6) -> bool:
    """Random tokens use many distinct characters; placeholders (``xxxx``, ``0000``) do not."""
    return len(set(token)) >= minimum


def jwt_ok(token: str) -> bool:
    """Three (JWS) or five (JWE) base64url segments whose first decodes to JSON with ``alg``."""
    if len(token) > 65536:
        return False
    parts = token.split(".")
    if len(parts) not in (3, 5) or len(parts[1]) < 2:
        return False
    header = parts[0]
    if len(header) > 4096:
        return False
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        obj = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return False
    if not isinstance(obj, dict):
        return False
    alg = obj.get("alg")
    if not isinstance(alg, str):
        return False
    # A signed JWS has a signature; only "alg": "none" tokens end with an empty segment.
    return bool(parts[2]) or len(parts) == 5 or alg.lower() == "none"


def bearer_token_ok(token: str) -> bool:
    """An opaque bearer token, not an English word: long enough and not all lowercase letters."""
    if not 12 <= len(token) <= 8192:
        return False
    if any(ch in _DIGITS for ch in token):
        return _diverse(token)
    has_upper = any(ch.isupper() for ch in token)
    has_lower = any(ch.islower() for ch in token)
    return len(token) >= 20 and has_upper and has_lower and _diverse(token, 8)


def basic_token_ok(token: str) -> bool:
    """HTTP Basic credentials: standard base64 of ``user:password`` in printable UTF-8."""
    if not 4 <= len(token) <= 8192 or len(token) % 4:
        return False
    try:
        raw = base64.b64decode(token, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    user, colon, password = decoded.partition(":")
    return bool(colon) and bool(user) and bool(password) and decoded.isprintable()


def aws_key_ok(token: str) -> bool:
    """AWS access key id: 4-letter prefix and 16 upper-case base32-ish characters."""
    return len(token) == 20 and _diverse(token[4:])


def _mixed(token: str) -> bool:
    """Digits, upper and lower case letters all present: generated, not written, text."""
    return (
        any(ch in _DIGITS for ch in token)
        and any(ch.isupper() for ch in token)
        and any(ch.islower() for ch in token)
    )


def secret_token_ok(token: str) -> bool:
    """Provider API keys by their documented prefixes and lengths (see ``patterns.SECRETS``)."""
    if len(token) > 1024:
        return False
    if token.startswith(("AKIA", "ASIA", "ABIA", "ACCA")):
        return aws_key_ok(token)
    if token.startswith(("ghp_", "gho_", "ghu_", "ghs_", "ghr_")):
        return 40 <= len(token) <= 255 and _diverse(token[4:])
    if token.startswith("github_pat_"):
        return 50 <= len(token) <= 255 and _diverse(token[11:])
    if token.startswith("glpat-"):
        return 26 <= len(token) <= 255 and _diverse(token[6:])
    if token.startswith("xox"):
        return len(token) >= 20 and any(ch in _DIGITS for ch in token) and _diverse(token[5:])
    if token.startswith(("sk_live_", "sk_test_", "rk_live_", "rk_test_")):
        return len(token) >= 24 and _diverse(token[8:])
    if token.startswith("AIza"):
        return len(token) == 39 and _diverse(token[4:])
    if token.startswith("sk-"):
        rest = token[3:]
        for prefix in ("proj-", "svcacct-", "admin-"):
            if rest.startswith(prefix):
                rest = rest[len(prefix):]
                break
        return len(rest) >= 32 and _mixed(rest) and _diverse(rest, 10)
    if token.startswith("npm_"):
        return len(token) == 40 and _diverse(token[4:])
    if token.startswith("SK"):
        rest = token[2:]
        return len(rest) == 32 and any(ch in _DIGITS for ch in rest) and _diverse(rest)
    if token.startswith("SG."):
        parts = token.split(".")
        return len(parts) == 3 and len(parts[1]) == 22 and len(parts[2]) == 43 and _diverse(
            parts[2]
        )
    return False


_PEM_LABEL = re.compile(r"-----(?:BEGIN|END)([A-Z0-9 ]*)-----")


def pem_ok(block: str) -> bool:
    """A private-key block with matching BEGIN/END labels and some key material in between.

    A block cut off before its END line (log truncation) also counts: the key is still leaked.
    """
    head_end = block.find("-----", 10)
    if head_end < 0:
        return False
    begin = block[: head_end + 5]
    m = _PEM_LABEL.fullmatch(begin)
    if m is None:
        return False
    tail = block.rfind("-----END")
    if tail > 0:
        end = _PEM_LABEL.fullmatch(block[tail:])
        if end is None or end.group(1) != m.group(1):
            return False
        material = block[head_end + 5 : tail]
    else:
        material = block[head_end + 5 :]
    return sum(ch.isalnum() for ch in material) >= 32
