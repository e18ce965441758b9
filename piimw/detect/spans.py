"""Spans (where a finding is), merging overlapping ones, and rebuilding a text around them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Span", "merge_spans", "redact"]


@dataclass(frozen=True, slots=True)
class Span:
    """One finding in a text: ``text[start:end]`` is personal data of ``category``.

    Indices are ``str`` indices. The span never carries the matched value, so it can be logged,
    counted and put into findings without leaking what it points at.
    """

    start: int
    end: int
    category: str  # fideslang key, e.g. "user.contact.email"
    detector: str  # detector name, e.g. "email", "card", "known"


def _rank(span: Span) -> tuple[int, int]:
    # Longest first; on a tie the app's own knowledge ("known") beats a pattern.
    return (span.end - span.start, 1 if span.detector == "known" else 0)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans covering every character any input span covered.

    Overlapping spans are fused into one: it keeps the category and detector of the longest
    member (known values win ties), and covers the union, so redacting the result never leaves a
    piece of any finding behind.
    """
    ordered = sorted(spans, key=lambda sp: (sp.start, -sp.end))
    out: list[Span] = []
    if not ordered:
        return out
    best = ordered[0]
    start, end = best.start, best.end
    for span in ordered[1:]:
        if span.start < end:
            if _rank(span) > _rank(best):
                best = span
            end = max(end, span.end)
            continue
        out.append(_cover(best, start, end))
        best, start, end = span, span.start, span.end
    out.append(_cover(best, start, end))
    return out


def _cover(best: Span, start: int, end: int) -> Span:
    if best.start == start and best.end == end:
        return best
    return Span(start, end, best.category, best.detector)


def redact(text: str, spans: Sequence[Span], replace: Callable[[Span, str], str]) -> str:
    """A new string with each span replaced by ``replace(span, text[span.start:span.end])``.

    ``spans`` must be sorted, non-overlapping and within ``text`` (as ``find``/``find_all``
    return them); anything else raises ``ValueError`` rather than silently leaving data behind.
    """
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    size = len(text)
    for span in spans:
        if span.start < pos or span.end < span.start or span.end > size:
            raise ValueError("spans must be sorted, non-overlapping and inside the text")
        parts.append(text[pos : span.start])
        parts.append(replace(span, text[span.start : span.end]))
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts)
