"""Source cookies are read from the parts that name them only: the same values as the
reading part by part, on headers built from the characters the reading treats specially."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from piimw.signals import ConsentSettings, Source, _cookie_values, _read_sources


def reference(headers: Iterable[tuple[bytes, bytes]], names: frozenset[str]
              ) -> dict[str, list[str]]:
    """Every part of every ``Cookie`` header split and compared (the reading before)."""
    found: dict[str, list[str]] = {}
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            name, eq, val = part.partition("=")
            name = name.strip()
            if eq and name in names:
                found.setdefault(name, []).append(val.strip())
    return found


NAMES = ("usprivacy", "__gpp", "a", "gpp")
#: Names, their overlaps and the bytes that bound a part or are stripped around it.
PIECES = ("usprivacy", "__gpp", "gpp", "a", "=", ";", " ", "\t", "\xa0", "\x85", "x", "1YYN",
          "usprivacyusprivacy", "\x1c")
text = st.lists(st.sampled_from(PIECES), max_size=12).map("".join)
header = st.tuples(st.sampled_from((b"cookie", b"x-other")),
                   text.map(lambda t: t.encode("latin-1")))
name_sets = st.sets(st.sampled_from((*NAMES, "")), max_size=3).map(frozenset)


@settings(max_examples=3000, deadline=None)
@given(st.lists(header, max_size=3), name_sets)
def test_cookie_values_read_as_every_part_is(headers: list[tuple[bytes, bytes]],
                                             names: frozenset[str]) -> None:
    assert _cookie_values(headers, names) == reference(headers, names)


def test_a_name_inside_another_cookie_or_value_is_not_the_cookie() -> None:
    headers = [(b"cookie", b"xusprivacy=1YYN; a=usprivacy=1YYN; usprivacy =1YNN;usprivacy=1Y")]
    assert _cookie_values(headers, frozenset({"usprivacy"})) == {"usprivacy": ["1YNN", "1Y"]}


def test_a_usprivacy_cookie_among_many_opts_out() -> None:
    many = "; ".join(f"c{i}=v{i}" for i in range(40))
    headers = [(b"cookie", f"{many}; usprivacy=1YYN; tail=1".encode())]
    consent = _read_sources(headers, ConsentSettings())
    assert consent.opted_out_of("third_party") == "usprivacy"
    assert _read_sources([(b"cookie", many.encode())], ConsentSettings()).is_default


def test_source_cookie_names_are_precomputed() -> None:
    settings_ = ConsentSettings(gpp_sources=(Source.parse("cookie:__gpp"),
                                             Source.parse("header:X-GPP")))
    assert settings_.source_cookies == frozenset({"__gpp", "usprivacy"})
    assert ConsentSettings(usprivacy_sources=()).source_cookies == frozenset()
