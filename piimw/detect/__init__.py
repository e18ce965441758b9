"""Finding personal data in free text: pattern detectors and the values a request brought in.

* :class:`Detectors` finds email addresses, phone numbers, card numbers, SSNs, IBANs, IP
  addresses and credentials by one linear-time RE2 scan plus validators (Luhn, mod 97,
  phonenumbers metadata, JWT header, ...).
* :class:`KnownValues` finds the exact values this request carried (and their escaped forms),
  whatever they look like.
* :func:`find_all` merges both; :func:`redact` rebuilds a text around the findings.

Nothing here does I/O or keeps state between calls; spans and exceptions never carry the values.
"""

from __future__ import annotations

from functools import lru_cache

from piimw.detect.engine import Detectors
from piimw.detect.known import KnownValues
from piimw.detect.patterns import CATEGORIES, DEFAULT_DETECTORS
from piimw.detect.spans import Span, merge_spans, redact

__all__ = [
    "CATEGORIES",
    "DEFAULT_DETECTORS",
    "Detectors",
    "KnownValues",
    "Span",
    "default_detectors",
    "find_all",
    "merge_spans",
    "redact",
]


def find_all(text: str, detectors: Detectors, known: KnownValues | None = None) -> list[Span]:
    """Detector and known-value findings in ``text``: merged, sorted, non-overlapping.

    Where findings overlap they are fused (see :func:`merge_spans`): the union is covered and the
    longest finding names the category, a known value winning a tie.
    """
    spans = detectors.find(text)
    if known:
        extra = known.find(text)
        if extra:
            return merge_spans(spans + extra) if spans else extra
    return spans


@lru_cache(maxsize=1)
def default_detectors() -> Detectors:
    """The shared :class:`Detectors` with every built-in detector (compiled on first use)."""
    return Detectors()
