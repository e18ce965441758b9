"""KnownValues: a request's own values, found again in any common escaped form."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from piimw.detect import KnownValues, Span


def spans_of(known: KnownValues, text: str) -> list[tuple[str, str]]:
    return [(text[s.start : s.end], s.category) for s in known.find(text)]


def test_add_ignores_short_and_meaningless_values() -> None:
    known = KnownValues()
    for value in ("", "   ", "abc", " ab ", "123", "1-2-3", "12 3", True, False, float("nan"),
                  float("inf"), -1.0, 7):
        known.add(value, "user.name")
    assert len(known) == 0
    assert not known
    assert known.find("abc 123 True nan") == []


def test_add_dedupes_strips_and_accepts_numbers_and_aliases() -> None:
    known = KnownValues()
    known.add("  jane@example.com ", "email")
    known.add("jane@example.com", "user.contact.email")
    known.add(1234, "user.unique_id")
    known.add(12.5, "user.financial")  # three digits: ignored like "123"
    known.add(1234.5, "user.financial")
    assert len(known) == 3
    assert known
    assert spans_of(known, "id=1234 mail jane@example.com amount 1234.5 12.5") == [
        ("1234", "user.unique_id"), ("jane@example.com", "user.contact.email"),
        ("1234.5", "user.financial")]


def test_add_rejects_other_types_without_echoing_the_value() -> None:
    known = KnownValues()
    with pytest.raises(TypeError) as info:
        known.add(b"secret-bytes", "user")  # type: ignore[arg-type]
    assert "secret-bytes" not in str(info.value)
    known.add("Jane Q. Doe", "user.name")
    assert "Jane" not in repr(known)


VALUE = "O'Brien & Sons <jane+x@example.com> / \"quoted\" é"


@pytest.mark.parametrize(
    "form",
    [
        VALUE,
        html.escape(VALUE, quote=True),
        html.escape(VALUE, quote=False).replace('"', "&#34;").replace("'", "&#39;"),
        quote(VALUE),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        orjson.dumps(VALUE)[1:-1].decode(),
        json.dumps(VALUE)[1:-1],
        json.dumps(VALUE)[1:-1].replace("/", "\\/"),
        repr(VALUE)[1:-1],
        # found by review: JavaScript's encodeURIComponent, URLSearchParams (and Java's
        # URLEncoder), lower-case hex, and the repr of the UTF-8 bytes (a raw body in an
        # exception message or a debug page's frame locals)
        "O'Brien%20%26%20Sons%20%3Cjane%2Bx%40example.com%3E%20%2F%20%22quoted%22%20%C3%A9",
        "O%27Brien+%26+Sons+%3Cjane%2Bx%40example.com%3E+%2F+%22quoted%22+%C3%A9",
        "O%27Brien%20%26%20Sons%20%3cjane%2bx%40example.com%3e%20/%20%22quoted%22%20%c3%a9",
        "O\\'Brien & Sons <jane+x@example.com> / \"quoted\" \\xc3\\xa9",
    ],
)
def test_escaped_forms(form: str) -> None:
    known = KnownValues()
    known.add(VALUE, "user.name")
    text = f"log: {form} end"
    assert spans_of(known, text) == [(form, "user.name")]


@pytest.mark.parametrize("form", [
    "Se%C3%A1n%20O'Brien~*",  # encodeURIComponent
    "Se%C3%A1n+O%27Brien%7E*",  # URLSearchParams, Java's URLEncoder
    "Se%c3%a1n%20O%27Brien~%2a",  # Python's quote, lower-case hex
])
def test_url_forms_of_other_encoders(form: str) -> None:
    """A name (matched case-sensitively, unlike an email address) as clients other than
    Python percent-encode it (found by review: the access log kept these)."""
    known = KnownValues()
    known.add("Se\u00e1n O'Brien~*", "user.name")
    assert spans_of(known, f"GET /search?name={form} 200") == [(form, "user.name")]


def test_a_name_without_its_accents() -> None:
    """Werkzeug and Django write a download's name without accents beside ``filename*=``
    (found by review: the ASCII fallback carried the name out)."""
    known = KnownValues()
    known.add("Zo\u00eb \u00c5ngstr\u00f6m", "user.name")
    text = 'attachment; filename="Zoe Angstrom invoice.pdf"'
    assert spans_of(known, text) == [("Zoe Angstrom", "user.name")]
    assert known.search(text)


def test_a_value_of_other_scripts_is_not_folded_to_its_ascii_leftovers() -> None:
    """Folding dropped every non-Latin letter: what was left (``@example.com``, ``1-2-3``)
    became a known value and matched other people's text (review)."""
    known = KnownValues()
    known.add("\u0438\u0432\u0430\u043d@example.com", "user.contact.email")
    known.add("\u6771\u4eac\u90fd\u6e2f\u533a 1-2-3", "user.contact.address")
    assert known.find("write to support@example.com, room 1-2-3") == []
    # Latin letters that do not decompose are dropped, as Werkzeug's fallback drops them
    # (review of the guard above: these names went out again)
    for name, fallback in (("S\u00f8ren Kierkegaard", "Sren Kierkegaard"),
                           ("\u0141ukasz W\u00f3jcik", "ukasz Wojcik"),
                           ("J\u00fcrgen Gro\u00dfmann", "Jurgen Gromann")):
        latin = KnownValues()
        latin.add(name, "user.name")
        assert spans_of(latin, f'filename="{fallback}.pdf"') == [(fallback, "user.name")]


def test_email_is_case_insensitive() -> None:
    known = KnownValues()
    known.add("Jane.Doe@Example.com", "user.contact.email")
    assert spans_of(known, "JANE.DOE@EXAMPLE.COM, jane.doe@example.com") == [
        ("JANE.DOE@EXAMPLE.COM", "user.contact.email"),
        ("jane.doe@example.com", "user.contact.email")]
    other = KnownValues()
    other.add("Jane Doe", "user.name")
    assert other.find("jane doe") == []  # only email addresses ignore case


@pytest.mark.parametrize(
    "written",
    ["4155552671", "415-555-2671", "(415) 555-2671", "415.555.2671", "+1 415 555 2671",
     "1 (415) 555 - 2671", "4 1 5 5 5 5 2 6 7 1"],
)
def test_phone_with_any_separators(written: str) -> None:
    known = KnownValues()
    known.add("+1 (415) 555-2671", "user.contact.phone_number")
    spans = known.find(f"call {written} now")
    assert len(spans) == 1
    assert spans[0].category == "user.contact.phone_number"
    covered = f"call {written} now"[spans[0].start : spans[0].end]
    assert "".join(ch for ch in covered if ch.isdigit()).endswith("4155552671")


def test_card_ssn_and_iban_with_other_separators() -> None:
    known = KnownValues()
    known.add("4111111111111111", "user.financial.credit_card")
    known.add("123-45-6789", "user.government_id.national_identification_number")
    known.add("DE89370400440532013000", "user.financial.bank_account")
    text = "c=4111 1111 1111 1111 s=123 45 6789 i=DE89 3704 0044 0532 0130 00"
    assert [t for t, _ in spans_of(known, text)] == [
        "4111 1111 1111 1111", "123 45 6789", "DE89 3704 0044 0532 0130 00"]


def test_truncated_long_values() -> None:
    value = "Apartment 12B, 1600 Pennsylvania Avenue Northwest"
    known = KnownValues()
    known.add(value, "user.contact.address")
    for cut in (16, 20, len(value) - 1):
        for tail in ("...", "\u2026", ""):
            text = f"address={value[:cut]}{tail}"
            assert spans_of(known, text) == [(value[:cut], "user.contact.address")], (cut, tail)
    # A 15-character prefix is too short to be evidence; a prefix followed by more text is not
    # a truncation.
    assert known.find(f"x {value[:15]}...") == []
    assert known.find(f"x {value[:20]} and more") == []


def test_non_ascii_text_offsets_and_surrogates() -> None:
    known = KnownValues()
    known.add("Zoë Ünal", "user.name")
    known.add("bad\ud800value", "user.name")
    text = "🙂 é Zoë Ünal — bad\ud800value ✓ Zoë Ünal"
    spans = known.find(text)
    assert [text[s.start : s.end] for s in spans] == ["Zoë Ünal", "bad\ud800value", "Zoë Ünal"]


def test_pattern_is_cached_until_the_next_add() -> None:
    known = KnownValues()
    known.add("alpha-value", "user.name")
    known.find("x")
    compiled = known._matcher
    known.find("y")
    assert known._matcher is compiled
    known.add("beta-value", "user.name")
    assert known._matcher is None
    assert [t for t, _ in spans_of(known, "alpha-value beta-value")] == ["alpha-value",
                                                                         "beta-value"]


def test_copy_is_independent() -> None:
    known = KnownValues()
    known.add("alpha-value", "user.name")
    twin = known.copy()
    twin.add("beta-value", "user.name")
    assert len(known) == 1
    assert len(twin) == 2
    assert known.find("beta-value") == []
    assert twin.find("beta-value") == [Span(0, 10, "user.name", "known")]


def test_many_values() -> None:
    known = KnownValues()
    values = [f"customer-{i:05d}-{i * 7919 % 10007:05d}" for i in range(3000)]
    for value in values:
        known.add(value, "user.unique_id")
    text = " | ".join(values[::100])
    assert [text[s.start : s.end] for s in known.find(text)] == values[::100]


# -- properties -----------------------------------------------------------------------------

values = st.text(min_size=4, max_size=40).filter(lambda s: len(s.strip()) >= 4)
surrounding = st.text(max_size=30)


def _forms(value: str) -> list[str]:
    forms = [value, html.escape(value), json.dumps(value)[1:-1], repr(value)[1:-1],
             quote_plus(value), orjson.dumps(value)[1:-1].decode()]
    return forms


def _overlaps(spans: list[Span], start: int, end: int) -> bool:
    return any(s.start < end and start < s.end for s in spans)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(value=values, before=surrounding, after=surrounding)
@example(value="aaaa", before="aa", after="a")
@example(value="+1 415 555 2671", before="tel", after="")
def test_every_added_value_is_found_in_any_text_and_form(value: str, before: str,
                                                         after: str) -> None:
    known = KnownValues()
    known.add(value, "user.name")
    assume(known)  # "1-2-3" and other short digit strings are ignored on purpose
    stripped = value.strip()
    for form in _forms(stripped):
        text = before + form + after
        spans = known.find(text)
        assert _overlaps(spans, len(before), len(before) + len(form)), (form, text)
        # Spans are sorted, disjoint and inside the text.
        last = 0
        for span in spans:
            assert last <= span.start < span.end <= len(text)
            last = span.end


@settings(max_examples=200, deadline=None)
@given(value=values, text=st.lists(st.one_of(values, surrounding), max_size=6))
def test_redacting_known_spans_leaves_no_copy(value: str, text: list[str]) -> None:
    known = KnownValues()
    known.add(value, "user.name")
    assume(known)
    stripped = value.strip()
    full = stripped.join(text) if text else stripped
    spans = known.find(full)
    kept, pos = [], 0
    for span in spans:
        kept.append(full[pos : span.start])
        pos = span.end
    kept.append(full[pos:])
    assert not any(stripped in piece for piece in kept)


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet=st.characters(categories=["Cs", "L", "N", "P"]), min_size=4,
                     max_size=12), before=st.text(alphabet=st.characters(categories=["Cs", "L"]),
                                                   max_size=8))
def test_surrogates_never_crash(value: str, before: str) -> None:
    known = KnownValues()
    known.add(value, "user.name")
    assume(known)
    stripped = value.strip()
    text = before + stripped
    assert _overlaps(known.find(text), len(before), len(text))


def test_values_split_over_several_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Very many or very long values are compiled into several RE2 programs; results merge."""
    from piimw.detect import known as known_module

    monkeypatch.setattr(known_module, "_CHUNK_BYTES", 64)
    known = KnownValues()
    values = ["alpha-value-one", "beta-value-two", "alpha-value-one-and-more", "gamma 4155552671"]
    for value in values:
        known.add(value, "user.name")
    text = "x alpha-value-one-and-more y beta-value-two z gamma 415-555-2671 w"
    known.find("warm up: alpha-value-one")  # a hit builds the programs
    assert known._matcher is not None
    assert len(known._matcher.searchers) > 1
    assert [text[s.start : s.end] for s in known.find(text)] == [
        "alpha-value-one-and-more", "beta-value-two", "gamma 415-555-2671"]


_PLANTED = st.sampled_from([
    ("jane.doe@example.com", "email"), ("+1 415 555 0100", "phone"),
    ("4242 4242 4242 4242", "card"), ("Zebulon Quark", "name"),
    ("DE89 3704 0044 0532 0130 00", "iban"), ("a/b&c d'e\"f", "user"),
    ("averyveryverylongvalue-1234567890", "user"),
])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_PLANTED, min_size=1, max_size=4), noise=st.text(max_size=40),
       pick=st.integers(0, 3), form=st.integers(0, 6), cut=st.integers(16, 40))
def test_probe_agrees_with_the_compiled_program(values: list[tuple[str, str]], noise: str,
                                                pick: int, form: int, cut: int) -> None:
    """The byte-string probe that skips compiling RE2 must answer exactly as RE2 would."""
    from piimw.detect.known import _Probe

    known = KnownValues()
    for value, category in values:
        known.add(value, category)
    value = values[pick % len(values)][0]
    forms = [value, quote(value), quote_plus(value), html.escape(value),
             json.dumps(value)[1:-1], repr(value)[1:-1], value[:cut] + "..."]
    for text in (noise, noise + forms[form] + noise, forms[form].upper(),
                 value.replace(" ", "-"), value.replace(" ", "")):
        probe = _Probe(dict(known._values))
        program = KnownValues()
        program._values = dict(known._values)
        program._probe = probe
        probe.calls = 10**9  # bypass the probe: the compiled program answers
        by_program = bool(program.find(text))
        assert probe.hit(text) == by_program
