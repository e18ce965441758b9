"""Properties of Detectors.find/search and redact on arbitrary and generated text."""

from __future__ import annotations

from detect_corpus import load
from hypothesis import given, settings
from hypothesis import strategies as st

from piimw.detect import CATEGORIES, Span, default_detectors, redact

# Near-misses are likelier with the characters the patterns are made of.
PII_ALPHABET = list("0123456789 .-:@+()/_=#xXabcdefABCDEFeyJSKk%\\\n")
near_miss_text = st.text(alphabet=st.sampled_from(PII_ALPHABET), max_size=300)
any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)
surrogate_text = st.lists(
    st.one_of(st.characters(categories=["Cs"]), st.sampled_from(PII_ALPHABET)), max_size=200
).map("".join)


def check_spans(text: str, spans: list[Span]) -> None:
    last = 0
    for span in spans:
        assert last <= span.start < span.end <= len(text)
        assert span.category == CATEGORIES[span.detector]
        last = span.end


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(near_miss_text, any_text, surrogate_text))
def test_find_never_crashes_and_spans_are_sorted_disjoint_in_bounds(text: str) -> None:
    det = default_detectors()
    spans = det.find(text)
    check_spans(text, spans)
    assert det.search(text) == bool(spans)

    # The engine's pass over serialised JSON hands over UTF-8 bytes: same answer.
    assert det.search_utf8(text.encode("utf-8", "surrogatepass")) == bool(spans)


POSITIVES = [e for e in load() if e["kind"] == "pos"]
# Filler that cannot change a value's context: no ASCII letters or digits, no token characters.
filler = st.text(alphabet=st.sampled_from(list(" \t\n,;!?*~^|[]{}<>é中🙂—\ud800")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(example=st.sampled_from(POSITIVES), before=filler, after=filler)
def test_positives_are_found_anywhere(example: dict[str, object], before: str, after: str) -> None:
    text = f"{before} {example['text']} {after}"
    shift = len(before) + 1
    spans = example["spans"]
    assert isinstance(spans, list)
    expected = {(s[0] + shift, s[1] + shift, s[2]) for s in spans}
    found = {(s.start, s.end, s.detector) for s in default_detectors().find(text)}
    assert expected <= found


@settings(max_examples=200, deadline=None)
@given(examples=st.lists(st.sampled_from(POSITIVES), min_size=1, max_size=5), sep=filler)
def test_redact_removes_every_finding(examples: list[dict[str, object]], sep: str) -> None:
    text = f" {sep} ".join(str(e["text"]) for e in examples)
    spans = default_detectors().find(text)
    check_spans(text, spans)
    out = redact(text, spans, lambda span, matched: f"[{span.detector}]")
    for span in spans:
        assert text[span.start : span.end] not in out
    # Text outside the findings is kept as it was.
    expected, pos = [], 0
    for span in spans:
        expected.append(text[pos : span.start] + f"[{span.detector}]")
        pos = span.end
    assert out == "".join(expected) + text[pos:]
