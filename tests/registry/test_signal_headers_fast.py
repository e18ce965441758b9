"""The cheap check before reading signal sources decides nothing on its own.

Most requests carry a ``Cookie`` header and few of them a source cookie (``usprivacy``, a
configured GPP cookie): :func:`piimw.signals.from_request` and
:func:`~piimw.signals.header_consent` look for the source's name in the header before
parsing it. These tests compare them with the full reading on every kind of header.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import piimw
from piimw.consent import DEFAULT, Consent, from_headers
from piimw.exchange import Exchange
from piimw.signals import (
    ConsentSettings,
    Source,
    _read_sources,
    from_request,
    header_consent,
)

#: A US National section that opts out of the sale (test_registry_signals.py builds it:
#: ``gpp((7, us_section(6, [1, 2, 2])))``).
GPP_OPTED_OUT = "DBABL~BVVaAAAAAAA"
COOKIE_NAMES = ("usprivacy", "__gpp", "a", "usprivacyX", "xusprivacy", "__gpp_sid")
VALUES = ("1YYN", "1YNN", "1---", GPP_OPTED_OUT, "junk", "")

SETTINGS = (
    ConsentSettings(),  # usprivacy cookie only
    ConsentSettings(usprivacy_sources=()),  # no source at all
    ConsentSettings(gpp_sources=(Source.parse("cookie:__gpp"), Source.parse("header:X-GPP"))),
    ConsentSettings(usprivacy_sources=(Source.parse("header:Cookie"),)),  # the whole header
    ConsentSettings(usprivacy_sources=(Source.parse("cookie:usprivacy"),
                                       Source.parse("header:X-USP"))),
)

cookie_pair = st.tuples(st.sampled_from(COOKIE_NAMES), st.sampled_from(VALUES),
                        st.sampled_from(("", " ")))
cookie_header = st.lists(cookie_pair, max_size=4).map(
    lambda pairs: (b"cookie", "; ".join(f"{sp}{n}={sp}{v}" for n, v, sp in pairs).encode()))
other_header = st.tuples(
    st.sampled_from((b"x-gpp", b"x-usp", b"sec-gpc", b"dnt", b"x-pii-opt-out", b"host")),
    st.sampled_from((b"1", b"0", b"1YYN", GPP_OPTED_OUT.encode(), b"all", b"")))
request_headers = st.lists(st.one_of(cookie_header, other_header), max_size=5)


@settings(max_examples=300, deadline=None)
@given(request_headers, st.sampled_from(SETTINGS))
def test_from_request_answers_as_the_full_reading(headers: list[tuple[bytes, bytes]],
                                                  consent_settings: ConsentSettings) -> None:
    assert from_request(headers, consent_settings) == _read_sources(headers, consent_settings)


@settings(max_examples=300, deadline=None)
@given(request_headers, st.sampled_from(SETTINGS))
def test_header_consent_is_the_standard_signals_merged_with_the_sources(
        headers: list[tuple[bytes, bytes]], consent_settings: ConsentSettings) -> None:
    expected = from_headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers])
    extra = _read_sources(headers, consent_settings)
    if extra is not DEFAULT:
        expected = expected.merge(extra)
    assert header_consent(headers, consent_settings) == expected


def test_a_cookie_without_a_source_cookie_builds_no_consent() -> None:
    headers = [(b"cookie", b"sessionid=abc123; csrftoken=xyz")]
    assert header_consent(headers) is DEFAULT
    assert from_request(headers) is DEFAULT


def test_a_source_cookie_among_others_is_read() -> None:
    headers = [(b"cookie", b"sessionid=abc123; usprivacy=1YYN; csrftoken=xyz")]
    assert header_consent(headers).opted_out_of("marketing") == "usprivacy"
    assert from_request(headers).opted_out_of("marketing") == "usprivacy"
    assert ConsentSettings().cookie_names == (b"usprivacy",)
    assert ConsentSettings(usprivacy_sources=(Source.parse("header:Cookie"),)).cookie_names \
        is None


def test_the_strategies_reach_opt_outs_from_every_kind_of_source() -> None:
    """The comparisons above see real opt-outs, not only defaults."""
    gpp_settings = SETTINGS[2]
    assert from_request([(b"cookie", f"__gpp={GPP_OPTED_OUT}".encode())],
                        gpp_settings).opted_out_of("marketing") == "gpp"
    assert from_request([(b"x-gpp", GPP_OPTED_OUT.encode())],
                        gpp_settings).opted_out_of("marketing") == "gpp"
    assert from_request([(b"cookie", b"usprivacy=1YYN")],
                        SETTINGS[3]).is_default  # the whole header is not a usprivacy string
    assert header_consent([(b"sec-gpc", b"1")]).opted_out_of("marketing") == "gpc"


@settings(max_examples=300, deadline=None)
@given(request_headers, st.sampled_from(SETTINGS))
def test_the_exchange_reads_what_header_consent_reads(
        headers: list[tuple[bytes, bytes]], consent_settings: ConsentSettings) -> None:
    """The exchange skips a Cookie header that cannot hold a source before calling it."""
    config = piimw.Config(consent_settings=consent_settings)
    assert Exchange(config, "GET", "/", headers).consent == header_consent(headers,
                                                                           consent_settings)


def test_the_exchange_reads_the_signals_when_first_asked() -> None:
    """ASGI headers are read for signals on first use of the consent (a request on a route
    without a plan that logs nothing never needs it); what adapters add before or after is
    merged with the signals all the same."""
    headers = [(b"host", b"example.com"), (b"sec-gpc", b"1")]
    lazy = Exchange(piimw.Config(), "GET", "/", headers)
    assert lazy._consent is None  # nothing read yet
    lazy.set_consent(Consent.opt_out(["personalization"], signal="session"))
    assert lazy.consent.opted_out_of("marketing") == "gpc"
    assert lazy.consent.opted_out_of("personalization") == "session"
    given_early = Exchange(piimw.Config(), "GET", "/", headers,
                           consent=Consent.opt_out(["personalization"], signal="session"))
    assert given_early.consent == lazy.consent
    plain = Exchange(piimw.Config(), "GET", "/", [(b"host", b"example.com")])
    assert plain.consent is DEFAULT
    plain.consent = Consent.opt_out(["analytics"], signal="registry")  # adapters may replace it
    assert plain.consent.opted_out_of("analytics") == "registry"
