"""KnownValues' cheap paths agree with their definitions: the ``str`` probe with the compiled
RE2 program (with and without gates), ``search`` with ``find``, ``add``'s and the probe's
shortcuts with the rules they replace."""

from __future__ import annotations

import html
import json
from contextlib import suppress
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from piimw.detect import KnownValues
from piimw.detect import known as known_module
from piimw.detect.known import (
    _GATE_AFTER,
    _GATE_FROM,
    _ascii_lower,
    _folded_gate,
    _gate,
    _normalizable,
    _Probe,
)

_POOL = [
    ("jane.doe@example.com", "email"), ("Jane.Doe@Example.COM", "user.contact.email"),
    ("JANEDOE", "user.contact.email"), ("ab@cd", "user"), ("+1 415 555 0100", "phone"),
    ("+44 20 7946 0123", "phone"), ("+39 06 1234 5678", "user"), ("+1 800 FLOWERS", "phone"),
    ("4242 4242 4242 4242", "card"), ("DE89 3704 0044 0532 0130 00", "iban"),
    ("12345", "address"), ("1 Main St", "address"), ("203.0.113.77", "ip"),
    ("Zebulon Quark", "name"), ("Zoë Ünal", "name"), ("bad\ud800value", "name"),
    ("日本語テキスト", "name"),
    ("a/b&c d'e\"f", "user"), ("averyveryverylongvalue-1234567890", "user"),
    ("tok_5f2a9c0d7e1b4a36", "secret"),
    ("O'Brien & Sons <jane+x@example.com> / \"quoted\" é", "user"),
    # Letters between digit runs shorter than 7 (a VIN, a reference code): found by review.
    ("1HGCM82633A004072", "user"), ("AB-12-CD-34-EF-56-GH-78", "iban"),
]
_NOISE = st.text(alphabet=st.sampled_from("abcAZ09 -.()+/%&\\@_é\u2026\n\t日\ud800"), max_size=30)


def _forms(value: str, cut: int) -> list[str]:
    forms = [value, html.escape(value), json.dumps(value)[1:-1], repr(value)[1:-1],
             value.upper(), value.lower(), value.replace(" ", "-"), value.replace(" ", ""),
             value[:cut] + "...", value[:cut] + "\u2026", value[:cut]]
    with suppress(UnicodeEncodeError):  # lone surrogates
        forms += [quote_plus(value), quote(value), quote(value, safe="")]
    return forms


def _program(values: dict[str, str]) -> KnownValues:
    """A KnownValues that answers with the compiled program, never the probe."""
    program = KnownValues()
    program._values = dict(values)
    program._matcher = known_module._build(program._values)
    return program


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.sampled_from(_POOL), min_size=1, max_size=5, unique=True),
       noise=_NOISE, pick=st.integers(0, 4), form=st.integers(0, 13), cut=st.integers(10, 40),
       long=st.booleans())
@example(picks=[("+1 415 555 0100", "phone")], noise="", pick=0, form=0, cut=16, long=True)
def test_probe_agrees_with_the_program(picks: list[tuple[str, str]], noise: str, pick: int,
                                       form: int, cut: int, long: bool) -> None:
    known = KnownValues()
    for value, category in picks:
        known.add(value, category)
    program = _program(known._values)
    value = picks[pick % len(picks)][0]
    forms = _forms(value, cut)
    planted = forms[form % len(forms)]
    pad = noise * (_GATE_FROM // max(len(noise), 1) + 1) if long and noise else noise
    texts = [noise, noise + planted + noise, pad + planted, planted + pad, "call 415-555-0100",
             "+44 (0)20 7946 0123", "x" + pad]
    for gated in (False, True):
        probe = _Probe(dict(known._values))
        if gated:
            probe._add_gates()  # gates on short texts too
        for text in texts:
            if text:
                expected = program._matches(text)
                assert probe.hit(text) is expected, (picks, text)
                assert program.search(text) is bool(program.find(text))


@settings(max_examples=200, deadline=None)
@given(picks=st.lists(st.sampled_from(_POOL), min_size=0, max_size=4, unique=True),
       text=st.text(max_size=60), planted=st.booleans())
def test_search_is_bool_of_find(picks: list[tuple[str, str]], text: str, planted: bool) -> None:
    known = KnownValues()
    for value, category in picks:
        known.add(value, category)
    if planted and picks:
        text += picks[0][0]
    by_probe = known.search(text)  # the probe answers first (no program built)
    assert by_probe is bool(known.find(text))
    assert known.search(text) is by_probe  # the program, if that find built it
    compiled = _program(known._values) if known._values else known
    assert compiled.search(text) is by_probe


def test_search_after_the_probe_budget_uses_the_program() -> None:
    known = KnownValues()
    known.add("Zebulon Quark", "user.name")
    for _ in range(known_module._PROBE_CALLS):
        assert not known.search("nothing here")
    assert known._matcher is None
    assert not known.search("nothing here")
    assert known._matcher is not None
    assert known.search("hello Zebulon Quark")
    assert not known.search("")


def test_copy_keeps_its_own_values_in_the_shared_probe() -> None:
    known = KnownValues()
    known.add("alpha-value", "user.name")
    assert not known.search("x")  # builds the probe
    twin = known.copy()
    assert twin._probe is known._probe
    known.add("beta&value", "user.name")  # the original grows; the twin does not
    assert known.search("beta&amp;value")
    assert not twin.search("beta&amp;value")  # the HTML family is computed after the add
    assert twin.find("beta&amp;value") == []


# -- the shortcuts against the rules they replace --------------------------------------------
_DROP = str.maketrans("", "", "\t\n\f\r -.()+/")
_DROP_LETTERS = str.maketrans("", "", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _accepted(text: str) -> bool:
    """The rule of ``KnownValues.add`` as written before its shortcuts."""
    text = text.strip()
    if len(text) < 4:
        return False
    rest = text.translate(_DROP)
    return not ((not rest or rest.isdigit()) and len(rest) < 4)


def _normalizable_reference(value: str) -> str:
    body = value[1:] if value.startswith("+") else value
    chars = body.translate(_DROP)
    if not chars or not (chars.isascii() and chars.isalnum()):
        return ""
    if len(chars.translate(_DROP_LETTERS)) < 7:
        return ""
    return chars


_VALUE_CHARS = st.sampled_from("0123456789 \t\n-.()+/aZ@é²١٣\u00a0\u2007\ud800_x")


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet=_VALUE_CHARS, max_size=14))
@example(text="1-2-3")
@example(text="12 3")
@example(text="١٢٣٤")
@example(text="+1 (415) 555-2671")
def test_add_accepts_exactly_what_the_rule_accepts(text: str) -> None:
    known = KnownValues()
    known.add(text, "user.name")
    assert bool(known) is _accepted(text)
    assert _normalizable(text) == _normalizable_reference(text)


@pytest.mark.parametrize("value", [1234, 123, -12, 12.5, 1234.5, float("nan"), True, 10**20])
def test_add_numbers(value: float) -> None:
    known = KnownValues()
    known.add(value, "user.unique_id")
    text = repr(value) if isinstance(value, float) else str(value)
    expected = not isinstance(value, bool) and text != "nan" and _accepted(text)
    assert bool(known) is expected


@given(text=st.text(max_size=40))
def test_ascii_lower_folds_ascii_letters_only(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    folded = data.translate(bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                            b"abcdefghijklmnopqrstuvwxyz"))
    assert _ascii_lower(text) == folded.decode("utf-8", "surrogatepass")


@given(form=st.text(min_size=1, max_size=30))
def test_gates_are_characters_of_their_form(form: str) -> None:
    assert _gate(form) in form
    lowered = _ascii_lower(form)
    gate = _folded_gate(lowered)
    if gate:
        assert gate in lowered
        assert not (gate.isascii() and gate.isalpha())  # case folding leaves it alone
    else:  # no gate: the form is ASCII letters (and NULs)
        assert lowered.replace("\x00", "").isascii()
        assert lowered.replace("\x00", "a").isalpha()


def test_gates_are_chosen_only_for_a_probe_that_checks_many_long_texts() -> None:
    # Choosing gates costs more than they save on one long text (a planned response body).
    probe = _Probe({"Jane Doe": "user.name", "jane@example.com": "user.contact.email"})
    long_text = "x" * (_GATE_FROM + 1)
    for _ in range(_GATE_AFTER - 1):
        assert not probe.hit(long_text)
        assert not probe.gated
    assert probe.hit("y" * _GATE_FROM + " Jane Doe")
    assert probe.gated  # the eighth long text
    assert probe.hit(long_text + "Jane Doe")
    assert not probe.hit(long_text)


def test_digit_variants_are_computed_for_the_first_text_with_seven_digits() -> None:
    # A planned JSON body full of small numbers never needs them (half the probe's set-up).
    probe = _Probe({"+1 415 555 2671": "user.contact.phone_number", "Jane Doe": "user.name"})
    assert not probe.hit('[{"sku":"SKU-10037","qty":2,"price":118.75}]')
    assert probe._normalized is None
    assert probe.hit("call 415-555-2671 after six")  # national form, separators changed
    assert probe._normalized == (("7", "14155552671"),)
    assert not probe.hit("order 2026-11-28 1200")  # seven digits, none of the values
    only_names = _Probe({"Jane Doe": "user.name"})
    assert not only_names.hit("2026-11-28")
    assert not only_names.wants_flat  # no digit values: later texts skip the digit check


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(picks=st.lists(st.sampled_from(_POOL), min_size=1, max_size=4, unique=True),
       parts=st.lists(st.tuples(_NOISE, st.integers(0, 13), st.integers(10, 40),
                                st.booleans()), min_size=1, max_size=4),
       pick=st.integers(0, 3))
@example(picks=[("averyveryverylongvalue-1234567890", "user")],
         parts=[("x ", 10, 20, True), ("", 0, 10, False)], pick=0)
def test_one_pass_over_joined_texts_answers_as_the_texts_one_by_one(
        picks: list[tuple[str, str]], parts: list[tuple[str, int, int, bool]],
        pick: int) -> None:
    """The engine checks a document's untagged strings joined by TEXT_BREAK in one pass. A
    value truncated at the end of a text that is not the last one was missed there (the end of
    that text was not the end of the input), and the echo memo then never scanned it again."""
    known = KnownValues()
    for value, category in picks:
        known.add(value, category)
    value = picks[pick % len(picks)][0]
    texts = []
    for noise, form, cut, plant in parts:
        forms = _forms(value, cut)
        texts.append(noise + forms[form % len(forms)] if plant else noise)
    joined = known_module.TEXT_BREAK.join(texts)
    program = _program(known._values)
    expected = any(program.find(t) for t in texts)
    assert bool(program.find(joined)) is expected, texts
    # The probe answers as the program matches (find then drops short untagged values glued
    # to a word).
    matched = any(program._matches(t) for t in texts if t)
    assert _Probe(dict(known._values)).hit(joined) is matched, texts


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.sampled_from([v for v, _ in _POOL]) | st.text(
    alphabet=st.sampled_from("AZaz0189 -.+/é"), min_size=4, max_size=24), max_size=6))
def test_the_digit_run_kept_by_add_is_the_one_computed_from_the_values(
        values: list[str]) -> None:
    """KnownValues keeps the run a text needs (fewer than 7 digits where letters split a
    variant's, found by review) as values are added; the probe it builds must use the run
    the values give."""
    known = KnownValues()
    for value in values:
        known.add(value, "user")
    assert known._run == min([7, *map(known_module._digit_run, known._values)])
    assert known.copy()._run == known._run


def test_a_vin_is_found_by_the_probe_as_by_the_program() -> None:
    for value, text in [("1HGCM82633A004072", "vehicle 1HGCM-82633-A004072 sold"),
                        ("AB-12-CD-34-EF-56-GH-78", "ref AB.12.CD.34.EF.56.GH.78")]:
        known = KnownValues()
        known.add(value, "user.unique_id")
        assert known.search(text)  # the probe answers first
        assert known._matcher is None
        assert bool(_program(known._values).find(text))
