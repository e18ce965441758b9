"""100 KB hostile inputs give the right answer (timings are in benchmarks/bench_detect.py)."""

from __future__ import annotations

import pytest

from piimw.detect import KnownValues, default_detectors

SIZE = 100_000


def rep(unit: str, size: int = SIZE) -> str:
    return (unit * (size // len(unit) + 1))[:size]


NOTHING = {
    "digit run": rep("1234567890"),
    "repeated 4111": rep("4111"),
    "1 1 1 1": rep("1 "),
    "spaced groups": rep("4111 "),
    "luhn-failing cards": rep("4111 1111 1111 1112 "),
    "a@a.a": rep("a@a.a"),
    "dotted host": "a" + rep(".a", SIZE - 1),
    "dotted digits": rep("1."),
    "x.1.1.1.1": rep("x.1.1.1.1 "),
    "colons": rep("1:"),
    "short ipv6": rep("1::1 "),
    "hexspeak ipv6": rep("dead::beef "),
    "dashes": rep("123-"),
    "plus": rep("+1 "),
    "bearer words": rep("Bearer "),
    "basic words": rep("basic auth "),
    "akia": rep("AKIA"),
    "pem begin": rep("-----BEGIN PRIVATE KEY-----"),
    "percent": rep("%40"),
    "iban-ish": rep("DE89 "),
    "small iban-ish": rep("de89 "),
    "long iban-ish": rep("MT12 "),
    "iban-ish, no-break spaces": rep("DE89\u00a0"),
    "words after an iban start": rep("cz12 your "),
    "no-break spaced groups": rep("4111\u00a0"),
    "question-mark groups": rep("4111?"),
    "00 numbers": rep("0033 6 "),
    "en-dash dates": rep("2024\u201305\u201306 "),
    "non-ascii local parts": rep("\u4e2d@x.com "),
    "question-mark local parts": rep("?@a.bc"),
    "letters": rep("abcdefghij"),
    "unicode": rep("h\u00e9llo w\u00f6rld \u4e2d\u6587 "),
    "surrogates": rep("\ud800a1"),
    "long token": rep("A"),
    "base64 blob": rep("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw+/"),
}


@pytest.mark.parametrize("name", sorted(NOTHING))
def test_hostile_input_without_findings(name: str) -> None:
    text = NOTHING[name]
    det = default_detectors()
    assert det.find(text) == []
    assert not det.search(text)


@pytest.mark.parametrize(
    ("unit", "detector", "value"),
    [
        ("a@a.aa ", "email", "a@a.aa"),
        ("4111 1111 1111 1111 ", "card", "4111 1111 1111 1111"),
        ("123-45-6789 ", "ssn", "123-45-6789"),
        ("10.1.2.3 ", "ipv4", "10.1.2.3"),
        ("(415) 555-2671 ", "phone", "(415) 555-2671"),
        ("+44 20 7946 0958 ", "phone", "+44 20 7946 0958"),
        ("https://a:b@", "url_credentials", "a:b"),
    ],
)
def test_hostile_input_full_of_findings(unit: str, detector: str, value: str) -> None:
    text = rep(unit)
    spans = default_detectors().find(text)
    complete = text.count(unit) + (1 if text.endswith(value) else 0)
    assert len(spans) == complete
    assert all(s.detector == detector and text[s.start : s.end] == value for s in spans)


def test_long_run_of_jwt_like_segments() -> None:
    unit = "eyJhbGciOiJIUzI1NiJ9."
    text = rep(unit)
    spans = default_detectors().find(text)
    assert spans
    for span in spans:
        token = text[span.start : span.end]
        assert span.detector == "jwt"
        assert token.count(".") == 4  # the longest shape: five segments (JWE)


def test_known_value_repeated_back_to_back() -> None:
    known = KnownValues()
    known.add("aaaa", "user.name")
    spans = known.find("a" * SIZE)
    assert len(spans) == SIZE // 4
    assert spans[-1].end == SIZE
