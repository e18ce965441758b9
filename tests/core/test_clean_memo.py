"""Texts a request already found clean are not scanned again (a response echoing its request).

The memo lives in the request's :class:`KnownValues`: adding a value forgets it, and it only
answers for the detectors that checked the texts.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import piimw
from piimw.detect import Detectors, KnownValues
from piimw.engine import Scrubber

PLAN = piimw.compile_schema({
    "type": "object",
    "properties": {"email": {"type": "string", "x-pii": "email"}},
})
ORDER = {"email": "jane@example.com",
         "items": [{"sku": "SKU-10037", "qty": 2, "note": "gift wrap, leave at the door"}],
         "note": "deliver after six"}


class CountingDetectors(Detectors):
    """Detectors that count the bytes they are asked to scan."""

    __slots__ = ("scanned",)

    def __init__(self, names: Any = None) -> None:
        super().__init__(names)
        object.__setattr__(self, "scanned", [])  # Detectors refuse attribute assignment

    scanned: list[bytes]

    def search_utf8(self, data: bytes) -> bool:
        self.scanned.append(data)
        return super().search_utf8(data)


def _after_request() -> tuple[CountingDetectors, Scrubber, KnownValues, Any]:
    """A scrubber counting its scans, and the known values once ORDER came in as a request."""
    detectors = CountingDetectors()
    scrubber = Scrubber(detectors=detectors)
    known = KnownValues()
    request = scrubber.scrub(ORDER, PLAN, sink="app", known=known, collect=True)
    return detectors, scrubber, known, request


def test_echoed_untagged_text_is_scanned_once() -> None:
    detectors, scrubber, known, request = _after_request()
    assert len(detectors.scanned) == 1
    echo = scrubber.scrub({**ORDER, "id": 7}, PLAN, sink="client",
                          known=known)
    assert len(detectors.scanned) == 1  # items and note were found clean by the request
    assert echo.value["items"] == ORDER["items"]
    assert [f.location for f in request.findings] == ["/email"]


def test_only_texts_not_seen_are_scanned() -> None:
    detectors, scrubber, known, _ = _after_request()
    scrubber.scrub({**ORDER, "note": "leave it with the neighbour"}, PLAN, sink="client",
                   known=known)
    assert detectors.scanned[-1] == b"leave it with the neighbour"


def test_a_value_added_later_is_found_in_a_text_checked_before() -> None:
    scrubber = Scrubber()
    known = KnownValues()
    doc = {"note": "ask for Bartholomew at the desk"}
    assert not scrubber.scrub(doc, PLAN, sink="log", known=known).findings
    known.add("Bartholomew", "name")
    res = scrubber.scrub(doc, PLAN, sink="log", known=known)
    assert [(f.location, f.detector) for f in res.findings] == [("/note", "known")]
    assert "Bartholomew" not in str(res.value)


def test_texts_checked_by_other_detectors_are_scanned_again() -> None:
    known = KnownValues()
    doc = {"note": "write to jane.doe@example.com"}
    phones_only = Scrubber(detectors=Detectors(["phone"]))
    assert not phones_only.scrub(doc, PLAN, sink="log", known=known).findings
    res = Scrubber().scrub(doc, PLAN, sink="log", known=known)
    assert [f.detector for f in res.findings] == ["email"]


def test_a_copy_does_not_share_the_memo() -> None:
    detectors, scrubber, known, _ = _after_request()
    scrubber.scrub(ORDER, PLAN, sink="client", known=known.copy())
    assert len(detectors.scanned) == 2


texts = st.sampled_from([
    "gift wrap", "call +1 415 555 2671", "4111 1111 1111 1111", "jane@example.com",
    "Bartholomew", "nothing to see", "ref 12345", "",
    # A long value cut off (found at the end of a text, or before an ellipsis).
    "Profile of Bartholomew Fitzgera", "Bartholomew Fitzgerald-Sm...", "Bartholomew Fitzgerald",
]) | st.text(max_size=20)
documents = st.dictionaries(
    st.sampled_from(["email", "note", "items", "memo"]),
    texts | st.lists(st.dictionaries(st.sampled_from(["note", "sku"]), texts, max_size=2),
                     max_size=2),
    max_size=4)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(first={"note": "Profile of Bartholomew Fitzgera", "memo": "hello"},
         second={"note": "Profile of Bartholomew Fitzgera"}, echo=False,
         values=["Bartholomew Fitzgerald-Smythe"])  # cut off, not last in the request
@given(first=documents, second=documents, echo=st.booleans(),
       values=st.lists(st.sampled_from(["Bartholomew", "gift wrap", "+1 415 555 2671",
                                        "Bartholomew Fitzgerald-Smythe"]), max_size=2))
def test_memo_never_changes_a_result(first: dict[str, Any], second: dict[str, Any],
                                     echo: bool, values: list[str]) -> None:
    """Scrubbing after another scrub of the same request equals scrubbing from scratch."""
    scrubber = Scrubber()
    second = {**first, **second} if echo else second
    shared = KnownValues()
    for v in values:
        shared.add(v, "name")
    scrubber.scrub(first, PLAN, sink="app", known=shared, collect=True)
    fresh = KnownValues()
    for v, category in shared._values.items():
        fresh.add(v, category)
    got = scrubber.scrub(second, PLAN, sink="client", known=shared)
    want = scrubber.scrub(second, PLAN, sink="client", known=fresh)
    assert got.value == want.value
    assert got.findings == want.findings


NAMED = piimw.compile_schema({
    "type": "object",
    "properties": {"name": {"type": "string", "x-pii": "name"}, "note": {"type": "string"}},
})


def test_a_tagged_value_repeated_untagged_is_found_whatever_was_known_before() -> None:
    """The pass looks for the values the walk has just remembered too. It used to look only
    when some value was known before the walk began (a cookie, a client address)."""
    doc = {"name": "Bartholomew Quill", "note": "signed, Bartholomew Quill"}
    empty = KnownValues()
    with_cookie = KnownValues()
    with_cookie.add("s3ss10n-t0ken-abcdef", "user.authorization.credentials")
    found = []
    for known in (empty, with_cookie):
        res = Scrubber().scrub(doc, NAMED, sink="log", known=known, collect=True)
        found.append([(f.location, f.detector) for f in res.findings])
        assert "Bartholomew" not in str(res.value)
    assert found[0] == found[1] == [("/name", "schema"), ("/note", "known")]
