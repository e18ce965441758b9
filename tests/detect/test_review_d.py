"""Review findings on free-text detection, each a regression test."""

from __future__ import annotations

import pytest

from piimw.detect import Detectors, KnownValues, redact


def found(text: str, det: Detectors) -> list[tuple[str, str]]:
    return [(s.detector, text[s.start : s.end]) for s in det.find(text)]


@pytest.mark.parametrize(
    ("region", "text", "numbers"),
    [
        ("GB", "020 7946 0958 020 7946 0958 020 7946 0958", ["020 7946 0958"] * 3),
        ("GB", "call 020 7946 0958 24 hours a day", ["020 7946 0958"]),
        ("GB", "(020) 7946 0958 12 times", ["020) 7946 0958"]),
        ("DE", "Tel. 0171 1234567 0171 1234568", ["0171 1234567", "0171 1234568"]),
    ],
)
def test_trunk0_number_followed_by_more_digit_groups(
    region: str, text: str, numbers: list[str]
) -> None:
    # The scan takes the longest shape, which runs into the groups that follow; only "+"
    # numbers and cards were shortened, so these national numbers went out in clear.
    assert found(text, Detectors(phone_region=region)) == [("phone", n) for n in numbers]


@pytest.mark.parametrize(
    ("region", "kind", "value"),
    [
        ("US", "card", "4111\u00a01111\u00a01111\u00a01111"),
        ("US", "card", "4111\u200b1111\u200b1111\u200b1111"),
        ("US", "card", "4111\u20131111\u20131111\u20131111"),
        ("US", "ssn", "123\u201145\u20116789"),
        ("US", "phone", "+1\u00a0415\u00a0555\u00a02671"),
        ("US", "phone", "(415)\u00a0555\u20112671"),
        ("FR", "phone", "06\u202f12\u202f34\u202f56\u202f78"),
    ],
)
def test_digit_groups_split_by_non_ascii_spaces_and_dashes(
    region: str, kind: str, value: str
) -> None:
    # A no-break space (word processors, locale number formats), a non-breaking hyphen, an en
    # dash or a zero-width space between the groups hid the number from the scan entirely.
    text = f"n\u00b0\u00a0{value}."
    assert found(text, Detectors(phone_region=region)) == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    ["299\u5186399\u51862024\u5e74", "4111?1111?1111?1111", "123?45?6789", "415\u00e9555\u00e92671",
     "+1\u00e9415\u00e9555\u00e92671"],
)
def test_other_characters_between_digit_groups_are_not_separators(text: str) -> None:
    # The scan sees every non-ASCII character as "?"; only spaces and dashes are folded.
    assert found(text, Detectors()) == []


EMAILS_WITH_NON_ASCII = [
    # (text, the address as found)
    ("from josé.garcía@example.com:", "josé.garcía@example.com"),
    ("Name: françois.dupont@example.fr.", "françois.dupont@example.fr"),
    ("jörg-müller@example.de", "jörg-müller@example.de"),
    ("ja\u00adne@example.com", "ja\u00adne@example.com"),  # a soft hyphen
    ("jo\u0308rg@example.com", "jo\u0308rg@example.com"),  # a combining mark (NFD)
    ("дмитрий.jane@example.ru", "дмитрий.jane@example.ru"),
    ("mail info@bücher.de now", "info@bücher.de"),
    ("jane@mail.bücher.de", "jane@mail.bücher.de"),
    ("jane@例え.com", "jane@例え.com"),
    # CJK is written without spaces: the address is what the scan found
    ("連絡先はjörg@example.comに送信", "jörg@example.com"),
]


@pytest.mark.parametrize(("text", "address"), EMAILS_WITH_NON_ASCII)
def test_email_with_non_ascii_letters_is_found_whole(text: str, address: str) -> None:
    # The scan sees non-ASCII letters as "?": it found "a@example.com" in the first (the rest of
    # the name stayed in clear) and nothing at all when the domain had an umlaut.
    assert found(text, Detectors()) == [("email", address)]


@pytest.mark.parametrize(
    "text", ["jane@what?really.com", "jane@\u2192example.com", "https://user@bücher.de/x"]
)
def test_email_domain_keeps_its_rules(text: str) -> None:
    assert found(text, Detectors()) == []


def test_long_text_memo_agrees_with_short_texts() -> None:
    # Verdicts are memoized in long texts by the candidate and the text around it; a local part
    # extended to the left depends on up to 64 characters before the candidate.
    det = Detectors()
    # The 24 characters before "jane" and after the address agree, the ones further back do not.
    same_near = "x" * 30 + "\u00e9.jane@example.com, and some more words after it"
    pieces = [text for text, _ in EMAILS_WITH_NON_ASCII] + ["\u00f6" + same_near, "!" + same_near]
    text = " ".join(pieces * 60)
    assert len(text) > 4096
    expected = [(k, v) for piece in pieces for k, v in found(piece, det)] * 60
    assert found(text, det) == expected


def test_short_untagged_values_are_not_found_inside_longer_words() -> None:
    # Query values are known values of the request: "?format=json&limit=1000" redacted "json" in
    # "jsonschema", "1000" in "10000" and "date" in "update" in every log line of the request.
    known = KnownValues()
    for value in ("json", "1000", "date", "Jane"):
        known.add(value, "user")
    known.add("Anna", "user.name")  # tagged: found wherever it is
    text = "update jsonschema 10000 Janet Annabel; format=json limit=1000 q=Jane,date"
    spans = known.find(text)
    assert redact(text, spans, lambda span, _: "#") == (
        "update jsonschema 10000 Janet #bel; format=# limit=# q=#,#")
    assert known.search("validated jsonschema, 10000 items") is False
    assert known.search("limit=1000") is True
    # Non-ASCII letters do not glue: CJK is written without spaces.
    known.add("\u7530\u4e2d\u592a\u90ce", "user")
    assert known.find("\u7530\u4e2d\u592a\u90ce\u69d8") != []


@pytest.mark.parametrize("region", ["US", "GB", "DE"])
def test_international_numbers_dialled_with_00(region: str) -> None:
    # "00" stands for "+" in most of the world; these were missed in every region.
    text = "call 0044 20 7946 0958 or 0033 6 12 34 56 78, Tel. 0049-171-1234567 12 Uhr"
    assert found(text, Detectors(phone_region=region)) == [
        ("phone", "0044 20 7946 0958"), ("phone", "0033 6 12 34 56 78"),
        ("phone", "0049-171-1234567")]


@pytest.mark.parametrize("text", ["id 0014155552671", "0012 3456 7890", "00.12.2024 10:00"])
def test_zero_padded_numbers_are_not_00_phone_numbers(text: str) -> None:
    assert found(text, Detectors()) == []


@pytest.mark.parametrize(
    "iban",
    ["de89 3704 0044 0532 0130 00", "de89370400440532013000", "gb82west12345698765432",
     "nl91abna0417164300", "be68539007547034", "Fr14 2004 1010 0505 0001 3M02 606"],
)
def test_iban_in_small_letters(iban: str) -> None:
    # Typed by hand, IBANs are often in small letters: only capitals were found.
    assert found(f"iban: {iban}.", Detectors()) == [("iban", iban)]


def test_hex_ids_are_not_ibans_in_small_letters() -> None:
    # "be08e3ef015c52fa" is a valid Belgian IBAN once in capitals (16 characters, mod 97),
    # and the span id of a trace.
    assert found("span_id=be08e3ef015c52fa be08e3ef015c52fa", Detectors()) == []


def test_iban_after_words_shaped_like_an_iban_start() -> None:
    # The scan took "CZ12 YOUR IBAN DE89 ..." as one candidate and skipped all of it.
    for text in ("ref CZ12 YOUR IBAN DE89 3704 0044 0532 0130 00",
                 "ref cz12 your iban DE89 3704 0044 0532 0130 00"):
        assert found(text, Detectors()) == [("iban", "DE89 3704 0044 0532 0130 00")]


@pytest.mark.parametrize(
    ("value", "category", "text", "expected"),
    [
        ("Zo\u00eb \u00c5ngstr\u00f6m", "user.name", "upload Zoe\u0308 A\u030angstro\u0308m.pdf",
         "Zoe\u0308 A\u030angstro\u0308m"),
        ("Zoe\u0308 Ma\u0308rz", "user.name", "hello Zo\u00eb M\u00e4rz!", "Zo\u00eb M\u00e4rz"),
        ("\u5c71\u7530\uff11\uff12\uff13\uff14", "user.name", "user \u5c71\u7530" "1234 in",
         "\u5c71\u7530" "1234"),
    ],
)
def test_known_value_in_another_unicode_normal_form(
    value: str, category: str, text: str, expected: str
) -> None:
    # A name sent composed came back decomposed (a macOS file name) or the other way round, or
    # with its full-width digits normalized by the app (NFKC): none was found.
    known = KnownValues()
    known.add(value, category)
    assert known.search(text)
    assert [text[s.start : s.end] for s in known.find(text)] == [expected]


@pytest.mark.parametrize("space", ["\u00a0", "\u202f"])
def test_iban_grouped_with_no_break_spaces(space: str) -> None:
    iban = space.join(["DE89", "3704", "0044", "0532", "0130", "00"])
    assert found(f"IBAN{space}{iban}.", Detectors()) == [("iban", iban)]


def test_ssn_starting_00_is_not_lost_to_the_00_phone_shape() -> None:
    # "001 18 6424" is also shaped like "+1 18 6424" dialled with 00: not a phone number, so
    # the SSN it is must still be found (5fd3232 returned "nothing" there).
    assert found("could not process 001 18 6424.", Detectors()) == [("ssn", "001 18 6424")]


@pytest.mark.parametrize(
    ("region", "text", "expected"),
    [
        # A bad IBAN (one typo) of the right length: resuming at each of its groups found a
        # German phone number in "0730 5377 1423".
        ("DE", "IT50 7905 0730 5377 1423 7253 594", []),
        ("DE", "user PL37 5579 0658 2333 6816 7418 8828 logged in", []),
        # An IBAN after words shaped like an IBAN's start, longer than the scan's first candidate.
        ("US", "ref cz12 your iban MT84 MALT 0110 0001 2345 MTLC AST0 01S.",
         [("iban", "MT84 MALT 0110 0001 2345 MTLC AST0 01S")]),
        ("US", "ab12 cd34 gb82 west 1234 5698 7654 32", [("iban", "gb82 west 1234 5698 7654 32")]),
    ],
)
def test_iban_inside_a_candidate_that_is_none(
    region: str, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(text, Detectors(phone_region=region)) == expected


@pytest.mark.parametrize("unit", ["DE89 ", "de89 ", "MT12 ", "DE89\u00a0", "ab12 "])
def test_run_of_iban_starts_costs_a_scan_per_candidate(unit: str) -> None:
    # Resuming at every group cost one scan per group, 8 times the scans of a run of "DE89 ".
    det = Detectors()
    calls = []
    scan = det._search
    assert scan is not None

    def counted(data: bytes, pos: int) -> tuple[int, int] | None:
        calls.append(pos)
        return scan(data, pos)

    object.__setattr__(det, "_search", counted)
    text = unit * 5000
    assert det.find(text) == []
    assert len(calls) <= 5000 // 4


@pytest.mark.parametrize(
    ("region", "text", "expected"),
    [
        # Glued to a word by a Unicode dash, as "ORD-123-45-6789" is by "-": no value.
        ("US", "order ORD\u2013123\u201345\u20136789", []),
        ("US", "ref 123\u201345\u20136789\u201312", []),
        ("DE", "Zeitraum 2024\u201305\u201306 2024\u201305\u201306", []),
        ("GB", "x\u2013020\u20137946\u20130958", []),
        # A dash after a space (a bullet, a minus) still leads a value, and one between two
        # values (a range) separates them.
        ("US", "card: \u20134111 1111 1111 1111", [("card", "4111 1111 1111 1111")]),
        ("US", "ssn \u2013 123\u201345\u20136789.", [("ssn", "123\u201345\u20136789")]),
        ("US", "10.1.2.3\u201310.1.2.4", [("ipv4", "10.1.2.3"), ("ipv4", "10.1.2.4")]),
        ("US", "415-555-2671\u2013415-555-2672",
         [("phone", "415-555-2671"), ("phone", "415-555-2672")]),
        ("US", "id\u20134111111111111111", [("card", "4111111111111111")]),
    ],
)
def test_digits_glued_to_a_word_by_a_unicode_dash(
    region: str, text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(text, Detectors(phone_region=region)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A local part ending in a non-ASCII letter: the scan saw "jos?@" and found nothing.
        ("from jos\u00e9@example.com", ["jos\u00e9@example.com"]),
        ("mail ren\u00e9@example.fr now", ["ren\u00e9@example.fr"]),
        ("Zo\u00eb@b\u00fccher.de", ["Zo\u00eb@b\u00fccher.de"]),
        # Not a letter of a word: only the ASCII part is the address, as before.
        ("\u8054\u7cfb\u6211\u4eecsupport@example.com", ["support@example.com"]),
        ("what?x@example.com", ["x@example.com"]),
        ("\u7528\u6237\u540d@example.com", []),
        # Longer than a local part may be: none, as with ASCII letters (not its last 64).
        ("x" + "\u00e9" * 70 + "@example.com", []),
    ],
)
def test_email_local_part_ending_in_a_non_ascii_letter(text: str, expected: list[str]) -> None:
    assert [t for d, t in found(text, Detectors()) if d == "email"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # "123" is no calling code: a zero-padded id, although its digits make +1 234 567 8901.
        ("id 00123 4567 8901 ok", []),
        ("ref 0012 345 678 9012", []),
        ("call 001 234 567 8901", [("phone", "001 234 567 8901")]),
        ("call 0044 20 7946 0958", [("phone", "0044 20 7946 0958")]),
    ],
)
def test_00_number_starts_with_a_calling_code_as_written(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert found(text, Detectors(phone_region="GB")) == expected
