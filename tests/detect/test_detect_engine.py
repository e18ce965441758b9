"""Detectors: the public interface and the behaviour of each detector on tricky inputs."""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
import pickle
import random
from pathlib import Path

import pytest

import piimw.detect as detect
from piimw.detect import (
    CATEGORIES,
    DEFAULT_DETECTORS,
    Detectors,
    KnownValues,
    Span,
    default_detectors,
    find_all,
    redact,
)
from piimw.detect import validators as v


def found(text: str, det: Detectors | None = None) -> list[tuple[str, str]]:
    return [(s.detector, text[s.start : s.end]) for s in (det or default_detectors()).find(text)]


# -- interface ------------------------------------------------------------------------------


def test_defaults() -> None:
    assert DEFAULT_DETECTORS == (
        "email", "phone", "card", "ssn", "iban", "ipv4", "ipv6", "jwt", "bearer", "secret",
        "url_credentials",
    )
    assert Detectors().names == DEFAULT_DETECTORS
    assert Detectors(None).names == DEFAULT_DETECTORS
    assert default_detectors() is default_detectors()
    assert default_detectors() == Detectors()
    assert set(CATEGORIES) == set(DEFAULT_DETECTORS)


def test_span_is_a_frozen_slotted_dataclass() -> None:
    span = Span(1, 5, "user.contact.email", "email")
    assert dataclasses.is_dataclass(span)
    assert not hasattr(span, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.start = 2  # type: ignore[misc]
    assert [f.name for f in dataclasses.fields(Span)] == ["start", "end", "category", "detector"]


def test_subset_keeps_canonical_order_and_dedupes() -> None:
    assert Detectors(["card", "email", "card"]).names == ("email", "card")
    assert Detectors("email").names == ("email",)  # one name given as a plain string
    assert Detectors([]).names == ()
    assert Detectors([]).find("jane@example.com 4111 1111 1111 1111") == []
    assert not Detectors([]).search("jane@example.com")


def test_unknown_detector_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'mystery'"):
        Detectors(["email", "mystery"])


def test_unknown_region() -> None:
    with pytest.raises(ValueError, match="phone region"):
        Detectors(phone_region="XX")


def test_detectors_are_immutable_hashable_and_picklable() -> None:
    det = Detectors(["email", "phone"], phone_region="gb")
    with pytest.raises(AttributeError):
        det.names = ()
    assert det.phone_region == "GB"
    clone = pickle.loads(pickle.dumps(det))
    assert clone == det
    assert hash(clone) == hash(det)
    assert clone.find("mail a@example.com") == det.find("mail a@example.com")
    assert "GB" in repr(det)


def test_spans_carry_the_detector_category() -> None:
    text = "a@example.com +1 415 555 2671 4111 1111 1111 1111 203.0.113.9"
    spans = default_detectors().find(text)
    assert [s.detector for s in spans] == ["email", "phone", "card", "ipv4"]
    assert all(s.category == CATEGORIES[s.detector] for s in spans)


def test_module_imports_no_framework_and_does_no_io() -> None:
    """The detect layer is pure: standard library, re2, phonenumbers, orjson, piimw only."""
    allowed = {"__future__", "base64", "binascii", "collections", "contextlib", "dataclasses",
               "functools", "html", "ipaddress", "json", "math", "re", "typing", "unicodedata",
               "urllib", "re2", "phonenumbers", "orjson", "piimw"}
    for path in Path(detect.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id != "open", path
                continue
            for name in names:
                assert name.split(".")[0] in allowed, (path.name, name)


# -- detector behaviour ---------------------------------------------------------------------

CASES: list[tuple[str, list[tuple[str, str]]]] = [
    # email
    ("contact john.doe+x@example.co.uk now", [("email", "john.doe+x@example.co.uk")]),
    ("mailto:Jane.Doe@Example.COM.", [("email", "Jane.Doe@Example.COM")]),
    ("?email=jane%40example.com&x=1", [("email", "jane%40example.com")]),
    ("logo@2x.png and ssh://git@github.com/x and user@localhost", []),
    ("https://user@example.com/path", []),
    # phone
    ("call (415) 555-2671 or 415.555.2671 today", [("phone", "(415) 555-2671"),
                                                    ("phone", "415.555.2671")]),
    ("tel:+14155552671", [("phone", "+14155552671")]),
    ("+44 (0) 20 7946 0958", [("phone", "+44 (0) 20 7946 0958")]),
    ("call +1 415 555 2671 3 times", [("phone", "+1 415 555 2671")]),
    ("1-800-555-0199", [("phone", "1-800-555-0199")]),
    ("4155552671 2024-05-01 12:30:45 ORD-415-555-2671 (123) 456-7890", []),
    # card
    ("card 4111 1111 1111 1111 exp", [("card", "4111 1111 1111 1111")]),
    ("card=4111111111111111;", [("card", "4111111111111111")]),
    ("amex 3782 822463 10005", [("card", "3782 822463 10005")]),
    ("paid 2024 4111 1111 1111 1111 ok", [("card", "4111 1111 1111 1111")]),
    ("(4111111111111111)", [("card", "4111111111111111")]),
    ("4111 1111 1111 1112 / 1234567812345678 / 4111-1111-1111-1111-x", []),
    # ssn
    ("ssn: 123-45-6789", [("ssn", "123-45-6789")]),
    ("SSN 123456789 but id 123456789", [("ssn", "123456789")]),
    ("078-05-1120 000-12-3456 666-12-3456 923-45-6789 123-00-4567 123-45-0000", []),
    # iban
    ("IBAN DE89 3704 0044 0532 0130 00 EUR", [("iban", "DE89 3704 0044 0532 0130 00")]),
    ("GB82WEST12345698765432", [("iban", "GB82WEST12345698765432")]),
    ("DE88 3704 0044 0532 0130 00 and XX12 3456 7890 1234 56", []),
    # ip
    ("ip 192.168.1.20, v1.2.3.4 and version 10.0.0.1 and 127.0.0.1",
     [("ipv4", "192.168.1.20")]),
    ("1.2.3.4.5 256.1.1.1 0.0.0.0 224.0.0.1 1.3.6.1.4.1.311", []),
    ("[2001:db8::8a2e:370:7334]:443 fe80::1 std::vector a::b ::1", [
        ("ipv6", "2001:db8::8a2e:370:7334"), ("ipv6", "fe80::1")]),
    ("::ffff:192.0.2.128", [("ipv6", "::ffff:192.0.2.128")]),
    # credentials
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
     [("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")]),
    ("Authorization: Bearer abcDEF123456ghiJKL789", [("bearer", "abcDEF123456ghiJKL789")]),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", [("bearer", "dXNlcjpwYXNzd29yZA==")]),
    ('WWW-Authenticate: Bearer realm="x", basic auth, the bearer token is invalid', []),
    ("key AKIAIOSFODNN7EXAMPLE", [("secret", "AKIAIOSFODNN7EXAMPLE")]),
    ("pk_live_a1B2c3D4e5F6g7H8i9 sk-learn AKIAXXXXXXXXXXXXXXXX", []),
    ("postgres://admin:s3cr3t@db.example.com:5432/app", [("url_credentials", "admin:s3cr3t")]),
    ("redis://:hunter2x@cache:6379", [("url_credentials", ":hunter2x")]),
    ("postgres://user:password@localhost postgres://u:${PW}@h https://u:***@h", []),
    # non-ASCII context keeps str offsets right
    ("café ☕ 4111 1111 1111 1111 — ünïcode jane@example.com",
     [("card", "4111 1111 1111 1111"), ("email", "jane@example.com")]),
    ("\ud800 4111 1111 1111 1111 \udfff", [("card", "4111 1111 1111 1111")]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_cases(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


def test_pem_private_key_whole_and_truncated() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    pem = f"-----BEGIN PRIVATE KEY-----\n{body}\n{body}\n-----END PRIVATE KEY-----"
    text = f"key={pem} done"
    assert found(text) == [("secret", pem)]
    cut = f"-----BEGIN RSA PRIVATE KEY-----\\n{body}\\n{body[:30]}"
    assert found(f"log: {cut}") == [("secret", cut)]
    public = pem.replace("PRIVATE", "PUBLIC")
    assert found(public) == []
    mismatched = pem.replace("END PRIVATE", "END RSA PRIVATE")
    assert found(mismatched) == []


def test_phone_region() -> None:
    gb = Detectors(["phone"], phone_region="GB")
    assert found("ring 020 7946 0958 now", gb) == [("phone", "020 7946 0958")]
    assert found("ring 020 7946 0958 now", Detectors(["phone"])) == []
    assert found("ring (415) 555-2671", gb) == []
    assert found("ring +1 415 555 2671", gb) == [("phone", "+1 415 555 2671")]


def test_subsets_only_report_their_detectors() -> None:
    text = "jane@example.com Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert found(text, Detectors(["bearer"])) == [
        ("bearer", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")]
    assert found(text, Detectors(["jwt"])) == [
        ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")]
    assert found(text, Detectors(["email"])) == [("email", "jane@example.com")]


def test_long_tokens_across_scan_windows() -> None:
    """A token longer than the scan window is still found whole."""
    payload = "eyJ" + "A" * 20000
    token = f"eyJhbGciOiJIUzI1NiJ9.{payload}.c2lnbmF0dXJl"
    text = "x" * 5000 + " " + token + " " + "y" * 5000
    assert found(text) == [("jwt", token)]
    pem_body = "\n".join(["A" * 64] * 300)
    pem = f"-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----"
    assert found("z" * 8000 + pem) == [("secret", pem)]


def test_value_at_every_window_position() -> None:
    filler = "lorem ipsum dolor sit amet, consectetur " * 400
    for offset in range(8000, 8400, 7):
        text = filler[:offset] + " 4111 1111 1111 1111 " + filler[offset:]
        assert found(text) == [("card", "4111 1111 1111 1111")], offset


# -- validators against the standard library ---------------------------------------------------


def test_ipv4_ranges_match_ipaddress() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        expected = not (addr.is_loopback or addr.is_multicast or addr.is_reserved
                        or str(addr).startswith("0."))
        assert v.ipv4_ok(str(addr), " ") == expected, addr


def test_luhn_and_issuers() -> None:
    assert v.luhn_ok("4111111111111111")
    assert not v.luhn_ok("4111111111111112")
    assert v.luhn_ok("79927398713")
    assert v.card_ok("378282246310005")  # Amex
    assert v.card_ok("6011111111111117")  # Discover
    assert v.card_ok("3530111333300000")  # JCB
    assert v.card_ok("5555555555554444")  # Mastercard
    assert v.card_ok("2223003122003222")  # Mastercard 2-series
    assert v.card_ok("30569309025904")  # Diners
    assert not v.card_ok("7111111111111114")  # no issuer starts with 7 in our table
    assert not v.card_ok("4111-1111 1111-1111")  # mixed separators


def test_iban_check() -> None:
    assert v.iban_ok("DE89370400440532013000") == 22
    assert v.iban_ok("DE89 3704 0044 0532 0130 00 EUR") == 27
    assert v.iban_ok("DE89 3704 0044 0532 0130 001") == 0
    assert v.iban_ok("DE88370400440532013000") == 0


# -- find_all and redact --------------------------------------------------------------------


def test_find_all_merges_overlaps_into_their_union() -> None:
    known = KnownValues()
    known.add("Jane Doe <jane", "user.name")
    text = "to: Jane Doe <jane@example.com>"
    spans = find_all(text, default_detectors(), known)
    assert len(spans) == 1
    assert text[spans[0].start : spans[0].end] == "Jane Doe <jane@example.com"
    assert spans[0].detector == "email"  # the longer finding names it


def test_find_all_prefers_known_on_equal_spans() -> None:
    known = KnownValues()
    known.add("jane@example.com", "user.contact.email")
    spans = find_all("jane@example.com", default_detectors(), known)
    assert [(s.start, s.end, s.detector) for s in spans] == [(0, 16, "known")]
    assert find_all("nothing here", default_detectors(), known) == []
    assert find_all("jane@example.com", default_detectors(), None)[0].detector == "email"


def test_redact() -> None:
    text = "a jane@example.com b 4111 1111 1111 1111 c"
    spans = default_detectors().find(text)
    out = redact(text, spans, lambda span, matched: f"[{span.detector}:{len(matched)}]")
    assert out == "a [email:16] b [card:19] c"
    assert redact(text, [], lambda s, m: "") == text


def test_redact_refuses_bad_spans() -> None:
    spans = [Span(0, 5, "user", "x"), Span(3, 8, "user", "x")]
    with pytest.raises(ValueError, match="overlapping") as info:
        redact("secret text", spans, lambda s, m: "")
    assert "secret" not in str(info.value)
    with pytest.raises(ValueError, match="inside"):
        redact("abc", [Span(1, 9, "user", "x")], lambda s, m: "")


def test_public_re2_api_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without google-re2's internals the scanners use its public API, with the same results."""
    import types

    import re2

    from piimw.detect import _re2

    text = "x" * 9000 + " jane@example.com 4111 1111 1111 1111 " + "eyJ" * 4000
    expected = found(text, Detectors())
    known = KnownValues()
    known.add("jane@example.com", "user.contact.email")
    known_expected = known.find(text)
    public = types.SimpleNamespace(Options=re2.Options, compile=re2.compile, error=re2.error)
    monkeypatch.setattr(_re2, "re2", public)
    assert found(text, Detectors()) == expected
    fresh = known.copy()
    fresh.add("another-value", "user.name")
    assert fresh.find(text) == known_expected
