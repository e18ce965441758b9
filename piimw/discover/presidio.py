"""Adapter: Microsoft Presidio's ``AnalyzerEngine`` as a :class:`NERDetector`.

Needs ``pip install 'piimw[presidio]'`` and a spaCy model (``python -m spacy download
en_core_web_lg``); about 0.01 MB/s, so use it only through
:class:`~piimw.discover.sampler.DiscoverySampler`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from piimw.detect.spans import Span, merge_spans
from piimw.discover.protocol import ADDRESS, NAME

__all__ = ["DEFAULT_ENTITIES", "ENTITY_CATEGORIES", "INSTALL_HINT", "PresidioDetector"]

INSTALL_HINT: Final = "pip install 'piimw[presidio]'"

#: Presidio entity types mapped onto piimw categories (the pattern detectors cover the rest).
ENTITY_CATEGORIES: Final[dict[str, str]] = {
    "PERSON": NAME,
    "LOCATION": ADDRESS,
    "NRP": "user.demographic",
    "US_DRIVER_LICENSE": "user.government_id.drivers_license_number",
    "US_PASSPORT": "user.government_id.passport_number",
    "MEDICAL_LICENSE": "user.government_id",
}
DEFAULT_ENTITIES: Final = ("PERSON", "LOCATION")


def _analyzer_engine() -> Any:
    try:
        presidio = importlib.import_module("presidio_analyzer")
    except ImportError as e:
        raise ImportError(f"PresidioDetector needs presidio-analyzer: {INSTALL_HINT}") from e
    return presidio.AnalyzerEngine()


class PresidioDetector:
    """Runs ``analyzer.analyze(text, entities, language)`` and maps results to spans.

    ``analyzer`` defaults to a new ``presidio_analyzer.AnalyzerEngine()`` (imported lazily:
    importing this module never needs Presidio). Results below ``min_score`` are ignored;
    entity types missing from ``categories`` are skipped.
    """

    def __init__(self, analyzer: Any = None, entities: Iterable[str] = DEFAULT_ENTITIES, *,
                 language: str = "en", min_score: float = 0.5,
                 categories: Mapping[str, str] | None = None, name: str = "presidio") -> None:
        self.analyzer = analyzer if analyzer is not None else _analyzer_engine()
        self.entities = list(entities)
        self.language = language
        self.min_score = min_score
        self.categories = dict(ENTITY_CATEGORIES if categories is None else categories)
        self.name = name

    def find(self, text: str) -> list[Span]:
        results = self.analyzer.analyze(text=text, entities=self.entities,
                                        language=self.language)
        spans = []
        for r in results:
            category = self.categories.get(str(r.entity_type))
            if category is None or float(getattr(r, "score", 1.0)) < self.min_score:
                continue
            start, end = int(r.start), int(r.end)
            if 0 <= start < end <= len(text):
                spans.append(Span(start, end, category, self.name))
        return merge_spans(spans)
