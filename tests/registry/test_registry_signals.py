"""GPP and usprivacy parsing, consent settings, session flags.

GPP strings are built by a small encoder written here from the IAB GPP v1 header and section
layouts (independently of the parser), plus hand-checked literal strings.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from piimw.consent import NON_ESSENTIAL
from piimw.errors import ConfigError
from piimw.signals import (
    ConsentSettings,
    GpcJson,
    Source,
    from_request,
    parse_gpp,
    parse_usprivacy,
    session_consent,
)

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
FIB = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]


def fib(n: int) -> str:
    """Fibonacci code (Zeckendorf bits, smallest first, then a terminating 1)."""
    bits = ["0"] * len(FIB)
    for i in range(len(FIB) - 1, -1, -1):
        if FIB[i] <= n:
            bits[i] = "1"
            n -= FIB[i]
    code = "".join(bits).rstrip("0")
    return code + "1"


def b64(bits: str) -> str:
    bits += "0" * (-len(bits) % 6)
    return "".join(B64[int(bits[i:i + 6], 2)] for i in range(0, len(bits), 6))


def header(ids: list[int]) -> str:
    bits = format(3, "06b") + format(1, "06b") + format(len(ids), "012b")
    prev = 0
    for i in ids:
        bits += "0" + fib(i - prev)
        prev = i
    return b64(bits)


def us_section(notices: int, values: list[int], gpc: bool | None = None, tail: int = 40) -> str:
    bits = format(1, "06b") + "01" * notices + "".join(format(v, "02b") for v in values)
    bits += "0" * tail
    out = b64(bits)
    if gpc is not None:
        out += "." + b64("01" + ("1" if gpc else "0"))
    return out


def gpp(*sections: tuple[int, str]) -> str:
    return "~".join([header([i for i, _ in sections]), *(s for _, s in sections)])


def test_encoder_matches_known_headers() -> None:
    assert header([7]) == "DBABL"  # usnat only
    assert header([2]) == "DBABM"  # tcfeuv2 only (IAB examples show DBABMA)
    assert header([2, 6]) == "DBACNY"
    # The IAB's own example string (TCF EU v2 + uspv1), bytes-padded header "DBACNYA".
    iab = "DBACNYA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN"
    assert parse_gpp(iab).sections == ("uspv1",)
    assert parse_gpp(iab).opted_out is False
    assert parse_gpp(iab.replace("~1YNN", "~1YYN")).opt_outs == ("uspv1.sale",)


@pytest.mark.parametrize(("values", "expected"), [
    ([2, 2, 2], ()),
    ([1, 2, 2], ("usnat.sale",)),
    ([2, 1, 2], ("usnat.sharing",)),
    ([2, 2, 1], ("usnat.targeted_advertising",)),
    ([0, 0, 0], ()),
])
def test_usnat_opt_out_fields(values: list[int], expected: tuple[str, ...]) -> None:
    result = parse_gpp(gpp((7, us_section(6, values))))
    assert result.sections == ("usnat",)
    assert result.opt_outs == expected


def test_usnat_gpc_subsection() -> None:
    assert parse_gpp(gpp((7, us_section(6, [2, 2, 2], gpc=True)))).opt_outs == ("usnat.gpc",)
    assert parse_gpp(gpp((7, us_section(6, [2, 2, 2], gpc=False)))).opt_outs == ()


@pytest.mark.parametrize(("sid", "notices", "name", "field"), [
    (8, 3, "usca", "sharing"),
    (9, 3, "usva", "targeted_advertising"),
    (10, 3, "usco", "targeted_advertising"),
    (11, 4, "usut", "targeted_advertising"),
    (12, 3, "usct", "targeted_advertising"),
    (16, 3, "ustx", "targeted_advertising"),
])
def test_state_sections(sid: int, notices: int, name: str, field: str) -> None:
    assert parse_gpp(gpp((sid, us_section(notices, [1, 2])))).opt_outs == (f"{name}.sale",)
    assert parse_gpp(gpp((sid, us_section(notices, [2, 1])))).opt_outs == (f"{name}.{field}",)
    assert parse_gpp(gpp((sid, us_section(notices, [2, 2])))).opt_outs == ()


def test_several_sections_and_unknown_ones() -> None:
    tcf = "CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA"
    s = gpp((2, tcf), (6, "1YNN"), (7, us_section(6, [2, 2, 2])))
    result = parse_gpp(s)
    assert result.sections == ("uspv1", "usnat")  # TCF is not read: no signal from it
    assert result.opt_outs == ()
    s = gpp((2, tcf), (6, "1YYN"), (7, us_section(6, [2, 2, 2])))
    assert parse_gpp(s).opt_outs == ("uspv1.sale",)


@pytest.mark.parametrize("bad", [
    "", "not-gpp!", "DBABL", "DBABL~a~b", "ABABL~BVVqAAEABgA", "D~x", "DBABL~!!!",
    "x" * 10000,
])
def test_unparseable_gpp_is_no_signal_and_logged_without_value(
        bad: str, caplog: pytest.LogCaptureFixture) -> None:
    import piimw.signals as signals

    signals._last_logged.clear()
    settings = ConsentSettings(gpp_sources=(Source("header", "x-gpp"),))
    with caplog.at_level(logging.WARNING, logger="piimw.signals"):
        consent = from_request([(b"x-gpp", bad.encode())], settings)
    assert consent.is_default
    if bad.strip():
        assert caplog.records
    for record in caplog.records:
        assert bad[:20] not in record.getMessage() or not bad


def test_bad_section_does_not_hide_a_good_one(caplog: pytest.LogCaptureFixture) -> None:
    s = gpp((7, "!!"), (8, us_section(3, [1, 2])))
    with caplog.at_level(logging.WARNING, logger="piimw.signals"):
        result = parse_gpp(s)
    assert result.opt_outs == ("usca.sale",)


def test_value_3_is_invalid() -> None:
    assert parse_gpp(gpp((7, us_section(6, [3, 2, 2])))).sections == ()


@pytest.mark.parametrize(("value", "expected"), [
    ("1YYN", True), ("1NYY", True), ("1yyn", True), ("1YNN", False), ("1---", False),
    ('"1YYN"', True), ("2YYN", None), ("1YY", None), ("1YYNN", None), ("", None), ("1XYN", None),
])
def test_usprivacy(value: str, expected: bool | None) -> None:
    assert parse_usprivacy(value) is expected


def test_from_request_reads_configured_sources() -> None:
    settings = ConsentSettings(gpp_sources=(Source.parse("cookie:__gpp"),
                                            Source.parse("header:X-GPP")))
    opted = gpp((7, us_section(6, [1, 2, 2])))
    consent = from_request([(b"cookie", f"a=b; __gpp={opted}; c=d".encode())], settings)
    assert consent.opted_out_uses == {"marketing", "third_party"}
    assert consent.opted_out_of("marketing") == "gpp"
    consent = from_request([(b"x-gpp", opted.encode())], settings)
    assert consent.opted_out_of("third_party") == "gpp"
    # usprivacy: the standard cookie is read by default.
    consent = from_request([(b"cookie", b"usprivacy=1YYN")])
    assert consent.opted_out_of("marketing") == "usprivacy"
    assert from_request([(b"cookie", b"usprivacy=1YNN")]).is_default
    # Unconfigured sources are not read.
    assert from_request([(b"x-gpp", opted.encode())]).is_default
    assert from_request([(b"cookie", b"usprivacy=1YYN")],
                        ConsentSettings(usprivacy_sources=())).is_default


def test_settings_from_config() -> None:
    s = ConsentSettings.from_config({
        "gpp_sources": ["cookie:__gpp", "header:X-GPP"], "usprivacy_sources": [],
        "session_key": "privacy_opt_out", "gpc_json": {"last_update": "2024-05-01"},
        "write_through": False})
    assert s.gpp_sources == (Source("cookie", "__gpp"), Source("header", "x-gpp"))
    assert s.usprivacy_sources == ()
    assert s.gpc_json == GpcJson(True, "2024-05-01")
    assert s.write_through is False
    assert ConsentSettings.from_config(None) == ConsentSettings()
    assert ConsentSettings.from_config({"gpc_json": True}).gpc_json == GpcJson()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"gpp_sources": ["query:x"]}, "/consent/gpp_sources/0"),
        ({"bogus": 1}, "/consent"),
        ({"gpc_json": {"last_update": "May 1"}}, "/consent/gpc_json/last_update"),
        ({"write_through": "yes"}, "/consent/write_through")]
    for bad, pointer in cases:
        with pytest.raises(ConfigError) as info:
            ConsentSettings.from_config(bad)
        assert info.value.pointer == pointer


def test_session_consent() -> None:
    settings = ConsentSettings(session_key="privacy")
    assert session_consent({"privacy": True}, settings).opted_out_uses == set(NON_ESSENTIAL)
    # A name piimw does not know opts out of everything non-essential: the app asked for an
    # opt-out, and a misspelt one must not leave the subject opted in.
    assert session_consent({"privacy": "analytics, bogus"}, settings).opted_out_uses == set(
        NON_ESSENTIAL)
    assert session_consent({"privacy": "analytics"}, settings).opted_out_uses == {"analytics"}
    consent = session_consent({"privacy": ["marketing", "essential"]}, settings)
    assert consent.opted_out_of("marketing") == "session"
    assert consent.opted_out_of("essential") is None
    # A flag of an unexpected shape is read as the most restrictive choice.
    assert session_consent({"privacy": 1}, settings).opted_out_uses == set(NON_ESSENTIAL)
    assert session_consent({"privacy": False}, settings).is_default
    assert session_consent({}, settings).is_default
    assert session_consent({"privacy": True}).is_default  # no key configured
