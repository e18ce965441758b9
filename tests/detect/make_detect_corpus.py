"""Build the labeled detector corpus: ``python tests/detect/make_detect_corpus.py`` rewrites
``corpus.jsonl`` next to this file (deterministic: fixed seeds, no network, no clock).

Each line is one example: ``{"id", "group", "kind", "text", "spans"}`` where ``group`` is the
detector the example was written for, ``kind`` is ``"pos"`` or ``"neg"`` (hard negative) and
``spans`` lists every ``[start, end, detector]`` that should be found (empty for negatives).
Ground truth does not come from piimw: phone numbers are checked with ``phonenumbers.parse`` and
``is_valid_number``, card numbers get their Luhn digit and IBANs their mod-97 check digits from the
independent implementations below.
"""

from __future__ import annotations

import base64
import json
import random
import string
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import phonenumbers

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.jsonl"

# Contexts a value is embedded in. "{v}" is the value; each template must not add PII itself.
TEMPLATES = (
    "{v}",
    "user {v} logged in",
    '{{"field": "{v}", "id": 42}}',
    "2024-05-01T12:00:00Z INFO value={v} status=200",
    "<td>{v}</td>",
    "Error: could not process {v}.",
    "'{v}'",
    "[{v}]",
    "field: {v}, other: 12",
    "{v}\n",
    "msg=\"update\" old={v} took_ms=13",
    "Traceback (most recent call last):\n  ValueError: bad input {v}",
)

Example = dict[str, object]


def _embed(rng: random.Random, value: str, detector: str | None, group: str, kind: str,
           span: tuple[int, int] | None = None, template: str | None = None) -> Example:
    """Put ``value`` into a template; the expected span is ``value`` (or ``span`` within it)."""
    tpl = template if template is not None else rng.choice(TEMPLATES)
    before, _, after = tpl.partition("{v}")
    before = before.replace("{{", "{").replace("}}", "}")
    after = after.replace("{{", "{").replace("}}", "}")
    text = before + value + after
    spans: list[list[object]] = []
    if detector is not None:
        lo, hi = span if span is not None else (0, len(value))
        spans.append([len(before) + lo, len(before) + hi, detector])
    return {"group": group, "kind": kind, "text": text, "spans": spans}


# -- independent checksums --------------------------------------------------------------------


def luhn_digit(partial: str) -> str:
    """The check digit that makes ``partial + digit`` pass Luhn."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def iban_check(country: str, bban: str) -> str:
    """ISO 7064 mod 97-10 check digits for ``country`` and ``bban``."""
    moved = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in moved))
    return f"{98 - number % 97:02d}"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def rand_token(rng: random.Random, size: int, alphabet: str = string.ascii_letters + string.digits
               ) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


# -- email ------------------------------------------------------------------------------------

FIRST = ["jane", "john", "maria", "li", "ahmed", "olga", "pierre", "sam", "noor", "kenji", "ana",
         "fatima", "lars", "chen", "amara", "diego", "eva", "tom", "yuki", "zoe"]
LAST = ["doe", "smith", "garcia", "wang", "khan", "ivanova", "dubois", "lee", "haddad", "sato",
        "silva", "ali", "berg", "liu", "okafor", "perez", "novak", "brown", "tanaka", "muller"]
DOMAINS = ["example.com", "mail.example.co.uk", "corp.example.org", "example.io", "uni.example.edu",
           "x-y.example.net", "example.de", "sub.domain.example.com", "example.travel",
           "EXAMPLE.COM"]


def email_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(80):
        f, last = rng.choice(FIRST), rng.choice(LAST)
        local = rng.choice([f"{f}.{last}", f"{f}_{last}", f"{f}{rng.randrange(100)}",
                            f"{f}.{last}+{rng.choice(['news', 'x', 'tag1'])}", f"{f[0]}{last}",
                            f"{f}-{last}", f"{f.upper()}.{last}", f"{last}.{f}.{i}"])
        value = f"{local}@{rng.choice(DOMAINS)}"
        if i % 10 == 9:
            value = value.replace("@", "%40")
        yield _embed(rng, value, "email", "email", "pos")
    yield _embed(rng, "mailto:jane.doe@example.com", "email", "email", "pos", span=(7, 27))
    yield _embed(rng, "Jane <jane.doe@example.com>", "email", "email", "pos", span=(6, 26))
    negatives = [
        "icon@2x.png", "logo@3x.webp", "sprite@2x.svg", "user@localhost", "name@domain",
        "package@1.2.3", "react@18.2.0", "@types/node", "@app.route('/x')", "x@y.z",
        "email at example dot com", "jane(at)example.com", "first.last@", "@example.com",
        "user@example..com", "ssh://git@github.com/org/repo.git", "a@b", "foo@bar.baz.js",
        "font@1x.woff2", "background@2x.jpg", "user@-example.com", "lodash@4.17.21",
        "@scope/pkg@1.0.0", "jane.doe at example.com", "hello@", "@@", "john@doe", "root@127.0.0.1",
        "https://user@example.com/path",
    ]
    for i in range(70):
        value = negatives[i % len(negatives)]
        yield _embed(rng, value, None, "email", "neg")


# -- phone ------------------------------------------------------------------------------------

US_AREAS = ["212", "213", "312", "415", "617", "646", "702", "713", "303", "206", "305", "404",
            "503", "512", "602", "615", "619", "720", "801", "919"]
INTL_REGIONS = ["GB", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "SE", "NO", "DK", "FI", "PL",
                "IE", "PT", "IN", "JP", "AU", "BR", "MX", "ZA", "SG", "NZ", "CA", "KR", "IL", "AR"]


def _valid_us(rng: random.Random) -> str:
    while True:
        digits = (rng.choice(US_AREAS) + str(rng.randrange(2, 10)) + f"{rng.randrange(100):02d}"
                  + f"{rng.randrange(10000):04d}")
        if phonenumbers.is_valid_number(phonenumbers.parse(digits, "US")):
            return digits


def phone_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(60):
        d = _valid_us(rng)
        a, b, c = d[:3], d[3:6], d[6:]
        fmt = i % 8
        value = [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"{a} {b} {c}",
                 f"1-{a}-{b}-{c}", f"+1 {a} {b} {c}", f"+1{a}{b}{c}", f"+1 ({a}) {b}-{c}"][fmt]
        yield _embed(rng, value, "phone", "phone", "pos")
    fmt_intl = phonenumbers.PhoneNumberFormat.INTERNATIONAL
    fmt_e164 = phonenumbers.PhoneNumberFormat.E164
    for i, region in enumerate(INTL_REGIONS * 2):
        kind = (phonenumbers.PhoneNumberType.MOBILE if i % 2
                else phonenumbers.PhoneNumberType.FIXED_LINE)
        number = phonenumbers.example_number_for_type(region, kind)
        if number is None:
            continue
        value = phonenumbers.format_number(number, fmt_e164 if i >= len(INTL_REGIONS)
                                           else fmt_intl)
        assert phonenumbers.is_valid_number(phonenumbers.parse(value, None)), value
        yield _embed(rng, value, "phone", "phone", "pos")
    yield _embed(rng, "+44 (0) 20 7946 0958", "phone", "phone", "pos")
    yield _embed(rng, "call +1 415 555 2671 3 times", "phone", "phone", "pos", span=(5, 20),
                 template="{v}")
    negatives = [
        "2024-05-01 12:30:45", "05/01/2024", "2024-05-01", "10.2.3", "ORD-415-555-2671",
        "4155552671", "14155552671", "1714566645", "1714566645123", "94105-1234", "(123) 456-7890",
        "555-1234", "2019-2024", "1,234.56", "123-456-789", "+1234", "+0 123 456 789",
        "+1 123 456 7890", "1 2 3 4 5 6 7 8 9 0", "ISBN 978-3-16-148410-0", "v2.415.555.2671",
        "550e8400-e29b-41d4-a716-446655440000", "12:30:45.123", "build 20240501.3",
        "#415-555-2671a",
        "415-555-26711", "0.415.555.2671", "3.14159265358979", "page 415 of 555", "1e10",
        "(555) 555-5555", "+999 123 456 789", "lat 37.7749, lon -122.4194",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "phone", "neg")


# -- card -------------------------------------------------------------------------------------

BRANDS = [("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
          ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("644", 16), ("3528", 16),
          ("3589", 16), ("36", 14), ("300", 14), ("62", 16), ("62", 19), ("6759", 16),
          ("2200", 16)]


def _card(rng: random.Random, prefix: str, size: int) -> str:
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(size - len(prefix) - 1))
    return body + luhn_digit(body)


def _group(digits: str, sep: str) -> str:
    if len(digits) == 15 or len(digits) == 14:
        parts = [digits[:4], digits[4:10], digits[10:]]
    else:
        parts = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return sep.join(parts)


def card_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(80):
        prefix, size = BRANDS[i % len(BRANDS)]
        digits = _card(rng, prefix, size)
        style = (i // len(BRANDS)) % 3
        value = digits if style == 0 or size in (13, 19) else _group(digits, " -"[style - 1])
        yield _embed(rng, value, "card", "card", "pos")
    yield _embed(rng, "paid 2024 4111 1111 1111 1111 ok", "card", "card", "pos", span=(10, 29),
                 template="{v}")
    yield _embed(rng, "4111 1111 1111 1111 123", "card", "card", "pos", span=(0, 19))
    negatives: list[str] = []
    for i in range(30):
        prefix, size = BRANDS[i % len(BRANDS)]
        good = _card(rng, prefix, size)
        bad = good[:-1] + str((int(good[-1]) + 1 + i % 9) % 10)  # wrong check digit
        negatives.append(bad if i % 2 else _group(bad, " "))
    negatives += [
        "1234567812345678", "1714566645123", "ORD-4111-1111-1111-1111", "1Z999AA10123456784",
        "9400 1000 0000 0000 0000 00", "da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "4111111111111111111111", "411111111111", "8111111111111111", "4111-1111-1111-1111-x",
        "0000 0000 0000 0000", "9999999999999999", "order 7000123412341234", "id=1111222233334444",
        "550e8400-e29b-41d4-a716-446655440000", "20240501123045123", "12345678901234567890",
        "4111_1111_1111_1111", "card4111111111111111x", "1.4111111111111111",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "card", "neg")


# -- ssn --------------------------------------------------------------------------------------


def _ssn(rng: random.Random) -> str:
    while True:
        area = rng.randrange(1, 900)
        if area == 666:
            continue
        group, serial = rng.randrange(1, 100), rng.randrange(1, 10000)
        value = f"{area:03d}{group:02d}{serial:04d}"
        if value not in ("078051120", "219099999", "457555462"):
            return value


def ssn_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(70):
        d = _ssn(rng)
        if i % 7 == 6:
            kw = rng.choice(
                ["SSN: ", "ssn=", "Social Security Number ", "SSN #", "social_security "]
            )
            yield _embed(rng, kw + d, "ssn", "ssn", "pos", span=(len(kw), len(kw) + 9))
            continue
        sep = "-" if i % 3 else " "
        yield _embed(rng, f"{d[:3]}{sep}{d[3:5]}{sep}{d[5:]}", "ssn", "ssn", "pos")
    negatives = [
        "000-12-3456", "666-12-3456", "900-12-3456", "987-65-4321", "123-00-4567", "123-45-0000",
        "078-05-1120", "219-09-9999", "123456789", "2024-05-01", "94105-1234", "12-3456-789",
        "12-345-6789", "ORD-123-45-6789", "1234-56-7890", "123-45-67890", "123-45-678",
        "123 456 789",
        "123-45 6789", "id 987654321", "x123-45-6789", "123-45-6789-1", "1.123-45-6789",
        "ssn: 000000000", "SSN 666123456", "ssn=999123456", "123_45_6789", "12345-6789",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "ssn", "neg")


# -- iban -------------------------------------------------------------------------------------

IBAN_SPECS = {  # country: (length, bban maker)
    "DE": 22, "GB": 22, "FR": 27, "NL": 18, "BE": 16, "ES": 24, "IT": 27, "CH": 21, "AT": 20,
    "PL": 28, "SE": 24, "NO": 15, "DK": 18, "FI": 18, "IE": 22, "PT": 25, "LU": 20, "CZ": 24,
    "SK": 24, "HU": 28, "RO": 24, "GR": 27, "TR": 26, "SA": 24, "AE": 23, "MT": 31, "LC": 32,
}
_LETTER_BANKS = {"GB": 4, "NL": 4, "IE": 4, "RO": 4, "MT": 4, "LC": 4}


def _iban(rng: random.Random, country: str) -> str:
    size = IBAN_SPECS[country] - 4
    letters = _LETTER_BANKS.get(country, 0)
    bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(letters))
    bban += "".join(str(rng.randrange(10)) for _ in range(size - letters))
    return country + iban_check(country, bban) + bban


def iban_examples(rng: random.Random) -> Iterator[Example]:
    countries = sorted(IBAN_SPECS)
    for i in range(70):
        value = _iban(rng, countries[i % len(countries)])
        if i % 2:
            value = " ".join(value[j:j + 4] for j in range(0, len(value), 4))
        yield _embed(rng, value, "iban", "iban", "pos")
    for known in ("DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32",
                  "FR14 2004 1010 0505 0001 3M02 606", "NL91ABNA0417164300"):
        yield _embed(rng, known, "iban", "iban", "pos")
    yield _embed(rng, "IBAN DE89 3704 0044 0532 0130 00 EUR", "iban", "iban", "pos",
                 span=(5, 32), template="{v}")
    negatives: list[str] = []
    for i in range(30):
        good = _iban(rng, countries[i % len(countries)])
        check = (int(good[2:4]) + 1 + i % 50) % 100
        bad = good[:2] + f"{check:02d}" + good[4:]
        negatives.append(bad if i % 2 else " ".join(bad[j:j + 4] for j in range(0, len(bad), 4)))
    negatives += [
        "XX12 3456 7890 1234 56", "DE89 3704 0044 0532 0130", "ABCD1234EFGH5678", "INV2024000123",
        "AB12CDEF3456", "DE00370400440532013000", "SKU12ABCD1234EFGH", "US12 3456 7890 1234 5678",
        "GB82 WEST 1234 5698 7654 3", "NL91ABNA04171643001", "ZZ99 ZZZZ ZZZZ ZZZZ", "ISO8601",
        "DE89-3704-0044-0532-0130-00", "RFC7231 SECTION 6", "CVE2024 1234 5678",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "iban", "neg")


# -- ip addresses -----------------------------------------------------------------------------


def ipv4_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(70):
        first = rng.choice([8, 10, 23, 45, 66, 81, 100, 151, 172, 192, 198, 203, 213])
        value = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        style = i % 5
        if style == 1:
            yield _embed(rng, f"http://{value}:8080/x", "ipv4", "ipv4", "pos",
                         span=(7, 7 + len(value)))
        elif style == 2:
            yield _embed(rng, f"{value}:443", "ipv4", "ipv4", "pos", span=(0, len(value)))
        else:
            yield _embed(rng, value, "ipv4", "ipv4", "pos")
    text = "X-Forwarded-For: 203.0.113.7, 198.51.100.23"
    yield {"group": "ipv4", "kind": "pos", "text": text,
           "spans": [[17, 28, "ipv4"], [30, 43, "ipv4"]]}
    negatives = [
        "v1.2.3.4", "version 10.0.0.1", "Version: 2.4.1.0", "Chrome/120.0.6099.109",
        "Foo/1.2.3.4", "1.2.3.4.5", "256.1.1.1", "127.0.0.1", "0.0.0.0", "255.255.255.0",
        "224.0.0.1", "1.3.6.1.4.1.311", "1.2.3", "01.02.2024", "10.0.0", "192.168.01.1",
        "999.1.1.1", "1.2.3.4-beta", "a.1.2.3.4", "x1.2.3.4", "rev 3.2.1.0", "build 5.0.2.1",
        "239.255.255.250", "0.1.2.3", "12.34.56", "1.2.3.4.in-addr.arpa", "v10.20.30.40",
        "release 1.2.3.4", "255.255.255.255", "ver. 4.3.2.1", "3.14.159.26535",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "ipv4", "neg")


def ipv6_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(70):
        groups = [f"{rng.randrange(1, 0x10000):x}" for _ in range(8)]
        groups[0] = rng.choice(["2001", "2a00", "2600", "2c0f", "fe80", "2001:db8"[:4]])
        style = i % 6
        if style == 0:
            value = ":".join(groups)
        elif style == 1:
            value = ":".join(g.zfill(4) for g in groups)
        elif style == 2:
            value = ":".join(groups[:3]) + "::" + ":".join(groups[6:])
        elif style == 3:
            value = groups[0] + "::" + groups[7]
            if not any(c.isdigit() for c in value) or max(len(groups[0]), len(groups[7])) < 3:
                value = "2001:db8::" + groups[7]
        elif style == 4:
            value = f"::ffff:{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.7"
        else:
            value = ":".join(groups[:4]) + "::" + groups[7]
        if i % 7 == 3:
            yield _embed(rng, f"[{value}]:8443", "ipv6", "ipv6", "pos", span=(1, 1 + len(value)))
        else:
            yield _embed(rng, value, "ipv6", "ipv6", "pos")
    negatives = [
        "::1", "::", "00:1a:2b:3c:4d:5e", "12:30:45", "std::vector<int>", "a::b", "dead::beef",
        "Foo::Bar::baz", "ff02::1", "crate::module::function", "1:2:3:4:5:6:7:8:9", "fe80:::1",
        "10:20:30", "aa:bb:cc:dd:ee:ff:00:11", "1::2", "cafe::babe", "Http::Client", "x::1234",
        "0:0:0:0:0:0:0:1", "2001:db8:::1", "::ffff", "12::34", "beef::cafe",
        "ab:cd:ef:01:23:45:67:89",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "ipv6", "neg")


# -- jwt, bearer, secrets, url credentials ----------------------------------------------------

ALGS = ["HS256", "HS384", "HS512", "RS256", "RS512", "ES256", "PS256", "EdDSA", "none"]


def _jwt(rng: random.Random, i: int) -> str:
    header: dict[str, object] = {"alg": ALGS[i % len(ALGS)], "typ": "JWT"}
    if i % 3 == 0:
        header = {"typ": "JWT", "alg": ALGS[i % len(ALGS)], "kid": rand_token(rng, 8)}
    payload = {"sub": str(rng.randrange(10**6)), "iat": 1714566645 + i, "name": rng.choice(FIRST)}
    sep = (",", ":") if i % 2 else (", ", ": ")
    sig = "" if header["alg"] == "none" else b64url(rng.randbytes(32 + i % 32))
    return (b64url(json.dumps(header, separators=sep).encode()) + "."
            + b64url(json.dumps(payload, separators=sep).encode()) + "." + sig)


def jwt_examples(rng: random.Random) -> Iterator[Example]:
    for i in range(70):
        token = _jwt(rng, i)
        style = i % 4
        if style == 1:
            prefix = "Authorization: Bearer "
            yield _embed(rng, prefix + token, "jwt", "jwt", "pos",
                         span=(len(prefix), len(prefix) + len(token)))
        elif style == 2:
            yield _embed(rng, f"session={token}; Path=/", "jwt", "jwt", "pos",
                         span=(8, 8 + len(token)))
        else:
            yield _embed(rng, token, "jwt", "jwt", "pos")
    negatives = [
        b64url(rng.randbytes(20)) + "." + b64url(rng.randbytes(30)) + "." + b64url(rng.randbytes(8))
        for _ in range(10)
    ]
    no_alg = b64url(b'{"typ":"JWT","kid":"1"}') + "." + b64url(b'{"sub":"1"}') + ".c2ln"
    not_json = b64url(b"{not json at all}") + "." + b64url(b'{"sub":"1"}') + ".c2ln"
    negatives += [
        no_alg, not_json, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", "eyJhbGciOi",
        "e.y.z", "eyJhbGciOiJIUzI1NiJ9", "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln",
        "eyeglasses.example.com", "keyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "eyJhbGciOiJIUzI1NiJ9..", "a.b.c",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "jwt", "neg")


def bearer_examples(rng: random.Random) -> Iterator[Example]:
    alphabet = string.ascii_letters + string.digits + "-_."
    for i in range(70):
        if i % 3 == 2:
            user = rng.choice(FIRST) + str(rng.randrange(100))
            password = rand_token(rng, rng.randrange(8, 20))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            prefix = rng.choice(["Authorization: Basic ", "authorization: basic ", "Basic "])
        else:
            token = rand_token(rng, rng.randrange(20, 64), alphabet).strip(".")
            while not any(c.isdigit() for c in token):
                token += str(rng.randrange(10))
            prefix = rng.choice(["Authorization: Bearer ", "authorization: bearer ", "Bearer ",
                                 "BEARER "])
        yield _embed(rng, prefix + token, "bearer", "bearer", "pos",
                     span=(len(prefix), len(prefix) + len(token)))
    negatives = [
        'WWW-Authenticate: Bearer realm="example"', "the bearer token is invalid",
        "Bearer authentication", 'WWW-Authenticate: Basic realm="x"', "basic auth", "Bearer token",
        "Bearer <token>", "Bearer ${TOKEN}", "Basic abc", "Bearer ****", "Authorization: Bearer",
        "bearer of bad news", "Basic dXNlcg==", "basic plan costs 10", "Bearer YourTokenHere",
        "Bearer xxxxxxxxxxxxxxxxxxxxxxxx", "Basic Og==", "Bearer null", "Bearer undefined",
        "Basic usage: run the tool", "the basic idea", "Bearer: see docs", "Bearer {{token}}",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "bearer", "neg")


def _pem(rng: random.Random, label: str, escaped: bool) -> str:
    body = base64.b64encode(rng.randbytes(rng.randrange(90, 300))).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    nl = "\\n" if escaped else "\n"
    return nl.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def secret_examples(rng: random.Random) -> Iterator[Example]:
    alnum = string.ascii_letters + string.digits
    upper = string.ascii_uppercase + string.digits
    makers: list[Callable[[], str]] = [
        lambda: rng.choice(["AKIA", "ASIA"]) + rand_token(rng, 16, upper),
        lambda: rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + rand_token(rng, 36),
        lambda: "github_pat_" + rand_token(rng, 22) + "_" + rand_token(rng, 59),
        lambda: "glpat-" + rand_token(rng, 20, alnum + "-_"),
        lambda: rng.choice(["xoxb-", "xoxp-"]) + f"{rng.randrange(10**11, 10**12)}-"
        f"{rng.randrange(10**12, 10**13)}-" + rand_token(rng, 24),
        lambda: rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + rand_token(rng, 24),
        lambda: "AIza" + rand_token(rng, 35, alnum + "-_"),
        lambda: "sk-" + rand_token(rng, 48),
        lambda: "sk-proj-" + rand_token(rng, 64, alnum + "-_"),
        lambda: "npm_" + rand_token(rng, 36),
        lambda: "SK" + rand_token(rng, 32, "0123456789abcdef"),
        lambda: "SG." + rand_token(rng, 22, alnum + "-_") + "." + rand_token(rng, 43, alnum + "-_"),
    ]
    for i in range(72):
        token = makers[i % len(makers)]()
        while not (any(c.isdigit() for c in token) and any(c.isupper() for c in token[3:])
                   and any(c.islower() for c in token[3:])) and token.startswith("sk-"):
            token = makers[i % len(makers)]()
        yield _embed(rng, token, "secret", "secret", "pos")
    for i, label in enumerate(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY",
                               "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
                               "PGP PRIVATE KEY BLOCK"] * 2):
        yield _embed(rng, _pem(rng, label, escaped=bool(i % 2)), "secret", "secret", "pos")
    negatives = [
        "AKIA" + "ABCDEFGHIJ12345", "AKIAXXXXXXXXXXXXXXXX", "ghp_short",
        "pk_live_" + "a1B2c3D4e5F6g7H8",
        "sk-learn", "sk-proj", "xoxb-123", "AIza" + "SyA1234567890", "npm_" + "abc123",
        "SK" + "0123456789abcdef0123456789abcde", "SG.short.short",
        "sk-some-kebab-case-slug-that-is-long-enough-to-look-like-a-key", "task-1234-abcd",
        "github_pat_short", "glpat-short", "ghp_" + "x" * 36, "sk_live_" + "x" * 24,
        _pem(rng, "PUBLIC KEY", escaped=False), _pem(rng, "CERTIFICATE", escaped=False),
        "-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----",
        "AKIA0000000000000000", "SKU1234567890", "sk-" + "a" * 40, "npm_" + "0" * 36,
        "risk-assessment-2024-quarterly-report-v2", "desk-123456789012345678901234",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "secret", "neg")


def url_credentials_examples(rng: random.Random) -> Iterator[Example]:
    schemes = ["postgres", "postgresql", "mysql", "redis", "amqp", "https", "http", "ftp",
               "mongodb+srv", "rediss", "smtp", "sftp"]
    pw_alphabet = string.ascii_letters + string.digits + "-_.~!&*+,;=%"
    for i in range(70):
        user = rng.choice([rng.choice(FIRST), "admin", "svc_app", "deploy-bot", ""])
        if not user and i % 2:
            user = "root"
        password = rand_token(rng, rng.randrange(8, 24), pw_alphabet)
        host = rng.choice(["db.example.com", "db-primary.internal:5432", "cache.internal:6379",
                           "example.com", "mq.example.org"])
        prefix = f"{schemes[i % len(schemes)]}://"
        value = f"{prefix}{user}:{password}@{host}/app"
        if i % 9 == 4:
            value = value.replace("/", "\\/")
            prefix = prefix.replace("/", "\\/")
        start = len(prefix)
        yield _embed(rng, value, "url_credentials", "url_credentials", "pos",
                     span=(start, start + len(user) + 1 + len(password)))
    negatives = [
        "https://example.com/path", "https://user@example.com", "postgres://user:***@db",
        "postgres://user:password@localhost", "https://host:8080/path",
        "redis://:${REDIS_PASSWORD}@host", "mailto:",
        "ftp://anonymous@ftp.example.com", "http://user:<password>@host",
        "https://user:{password}@host", "scheme://user:%s@host", "postgres://app:xxxxxx@db",
        "http://example.com/a:b@c", "https://example.com/?next=a:b@c", "user:pass without scheme",
        "mysql://root:changeme@localhost", "amqp://guest:********@rabbit",
        "https://user:[REDACTED]@example.com", "postgres://u:$DB_PASS@h",
        "http://[::1]:80/", "file:///etc/passwd", "ssh://git@github.com:22/org/repo",
    ]
    for i in range(70):
        yield _embed(rng, negatives[i % len(negatives)], None, "url_credentials", "neg")


def general_negatives(rng: random.Random) -> Iterator[Example]:
    """Noise every log has: ids, hashes, times, versions. Nothing here is personal."""
    for i in range(120):
        choice = i % 12
        if choice == 0:
            value = f"{rng.getrandbits(128):032x}"
            value = f"{value[:8]}-{value[8:12]}-4{value[13:16]}-a{value[17:20]}-{value[20:]}"
        elif choice == 1:
            value = f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T" \
                    f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}." \
                    f"{rng.randrange(1000):03d}Z"
        elif choice == 2:
            value = f"{rng.getrandbits(160):040x}"
        elif choice == 3:
            value = f"{rng.getrandbits(256):064x}"
        elif choice == 4:
            value = f"{rng.randrange(1, 20)}.{rng.randrange(40)}.{rng.randrange(100)}"
        elif choice == 5:
            value = str(rng.randrange(1_600_000_000_000, 1_800_000_000_000))
        elif choice == 6:
            value = f"ORD-{rng.randrange(10**9):09d}"
        elif choice == 7:
            value = f"{rng.getrandbits(28):07x}"
        elif choice == 8:
            value = f"{rng.randrange(1, 20)}.{rng.randrange(40)}.{rng.randrange(100)}-rc.{i}"
        elif choice == 9:
            value = f"price={rng.randrange(10**5)}.{rng.randrange(100):02d} qty={rng.randrange(50)}"
        elif choice == 10:
            value = str(rng.randrange(10**9, 10**10))
        else:
            value = f"req_{rand_token(rng, 24, string.ascii_lowercase + string.digits)}"
        yield _embed(rng, value, None, "general", "neg")


MIXED = [
    # Realistic lines with several findings; every PII value is wrapped in ⟦detector|value⟧.
    "2024-05-01T12:00:00Z INFO signup email=⟦email|jane.doe@example.com⟧ "
    "phone=⟦phone|+1 415 555 2671⟧ ip=⟦ipv4|203.0.113.7⟧ ua=\"Mozilla/5.0 Chrome/124.0.6367.91\"",
    '{"user": {"email": "⟦email|li.wang@example.org⟧", "card": "⟦card|4111 1111 1111 1111⟧", '
    '"id": "550e8400-e29b-41d4-a716-446655440000", "v": "2.3.1"}}',
    "POST /api/v2/payments 402 iban=⟦iban|DE89 3704 0044 0532 0130 00⟧ amount=12.50 "
    "ts=1714566645123 trace=9f86d081884c7d65",
    "Authorization: Bearer ⟦jwt|eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjMifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c⟧ X-Forwarded-For: ⟦ipv4|198.51.100.23⟧",
    "DATABASE_URL=postgres://⟦url_credentials|app:Zr8#tq_pL2@⟧db.internal:5432/app "
    "AWS_ACCESS_KEY_ID=⟦secret|AKIAIOSFODNN7EXAMPLE⟧ DEBUG=1",
    "Traceback (most recent call last):\n  File \"app.py\", line 42, in handler\n"
    "ValueError: invalid ssn ⟦ssn|123-45-6789⟧ for user ⟦email|ana.silva@example.com⟧",
    "<tr><td>⟦email|tom.brown@example.co.uk⟧</td><td>⟦phone|(212) 555-0147⟧</td>"
    "<td>2024-05-01</td><td>v1.2.3.4</td></tr>",
    "client [⟦ipv6|2001:db8:85a3::8a2e:370:7334⟧]:443 connected in 12.5 ms, session "
    "7f3c9a12-3b1e-4b1e-9c8f-2a1d3e4f5a6b, build 20240501.3",
    "order ORD-2024-000123 paid with ⟦card|5555-5555-5555-4444⟧ on 2024-05-01 12:30:45, "
    "total 1,234.56 EUR, ref 4111-ABCD",
    "curl -H 'Authorization: Basic ⟦bearer|YWxhZGRpbjpvcGVuc2VzYW1l⟧' https://api.example.com/v1",
    "token=⟦secret|ghp_R2d2C3poR2d2C3poR2d2C3poR2d2C3po0001⟧&sha=da39a3ee5e6b4b0d3255bfef9560189"
    "0afd80709&pr=1234",
    # With the default region US, a national-format UK number is not a phone number.
    "call me at ⟦phone|+44 20 7946 0958⟧ or 020 7946 0958 (UK)",
    "SSN on file: ⟦ssn|219 54 8671⟧; EIN 12-3456789; zip 94105-1234; id 987654321",
    "from ⟦ipv4|10.0.0.1⟧ via 127.0.0.1 to ⟦ipv4|172.16.5.4⟧ (v10.2.3.4, OID 1.3.6.1.4.1.311)",
]


def mixed_examples(rng: random.Random) -> Iterator[Example]:
    del rng
    for line in MIXED:
        text = ""
        spans: list[list[object]] = []
        rest = line
        while "⟦" in rest:
            before, _, tail = rest.partition("⟦")
            inner, _, rest = tail.partition("⟧")
            detector, _, value = inner.partition("|")
            text += before
            if detector == "url_credentials":
                value = value[:-1]  # the "@" is context, not the credential
                spans.append([len(text), len(text) + len(value), detector])
                text += value + "@"
                continue
            spans.append([len(text), len(text) + len(value), detector])
            text += value
        text += rest
        yield {"group": "mixed", "kind": "pos", "text": text, "spans": spans}


GROUPS: dict[str, Callable[[random.Random], Iterator[Example]]] = {
    "email": email_examples,
    "phone": phone_examples,
    "card": card_examples,
    "ssn": ssn_examples,
    "iban": iban_examples,
    "ipv4": ipv4_examples,
    "ipv6": ipv6_examples,
    "jwt": jwt_examples,
    "bearer": bearer_examples,
    "secret": secret_examples,
    "url_credentials": url_credentials_examples,
    "general": general_negatives,
    "mixed": mixed_examples,
}


def build() -> list[Example]:
    """All examples, deterministic (one seeded RNG per group)."""
    out: list[Example] = []
    for seed, (name, make) in enumerate(GROUPS.items()):
        rng = random.Random(1000 + seed)
        for n, example in enumerate(make(rng)):
            out.append({"id": f"{name}-{example['kind']}-{n:03d}", **example})
    return out


def dumps(examples: list[Example]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in examples)


def main() -> None:
    text = dumps(build())
    CORPUS.write_text(text, encoding="utf-8")
    print(f"wrote {text.count(chr(10))} examples to {CORPUS}", file=sys.stderr)


if __name__ == "__main__":
    main()
