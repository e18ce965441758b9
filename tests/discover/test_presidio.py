"""The Presidio adapter. The real-model test runs only where Presidio and a spaCy model are
installed (never in CI); the rest checks the lazy import and the result mapping."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from piimw.detect.spans import Span
from piimw.discover import NERDetector


def _spacy_model() -> bool:
    if importlib.util.find_spec("presidio_analyzer") is None:
        return False
    return any(importlib.util.find_spec(m) is not None
               for m in ("en_core_web_lg", "en_core_web_md", "en_core_web_sm"))


@pytest.mark.skipif(not _spacy_model(),
                    reason="presidio_analyzer and a spaCy model are not importable")
def test_real_presidio_finds_a_name() -> None:  # pragma: no cover - needs presidio
    from piimw.discover.presidio import PresidioDetector

    detector = PresidioDetector()
    text = "Please forward the parcel to Margarethe Olsen before Friday."
    spans = detector.find(text)
    assert any(text[s.start:s.end] == "Margarethe Olsen" and s.category == "user.name"
               for s in spans), spans


def test_missing_presidio_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from piimw.discover.presidio import PresidioDetector

    monkeypatch.setitem(sys.modules, "presidio_analyzer", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'piimw\[presidio\]'"):
        PresidioDetector()


@dataclass
class _Result:  # the fields of presidio_analyzer.RecognizerResult the adapter reads
    entity_type: str
    start: int
    end: int
    score: float


class _Analyzer:
    """A stand-in with AnalyzerEngine's ``analyze`` signature, for the mapping only."""

    def __init__(self, results: list[_Result]) -> None:
        self.results = results
        self.calls: list[dict[str, Any]] = []

    def analyze(self, text: str, entities: list[str], language: str) -> list[_Result]:
        self.calls.append({"entities": entities, "language": language})
        return self.results


def test_results_map_to_spans() -> None:
    from piimw.discover.presidio import PresidioDetector

    text = "Margarethe Olsen lives in Bristol, phone 555."
    analyzer = _Analyzer([_Result("PERSON", 0, 16, 0.85), _Result("LOCATION", 26, 33, 0.7),
                          _Result("PERSON", 0, 10, 0.3), _Result("PHONE_NUMBER", 41, 44, 0.9),
                          _Result("PERSON", 40, 99, 0.9)])
    detector = PresidioDetector(analyzer)
    assert isinstance(detector, NERDetector)
    assert detector.find(text) == [Span(0, 16, "user.name", "presidio"),
                                   Span(26, 33, "user.contact.address", "presidio")]
    assert analyzer.calls == [{"entities": ["PERSON", "LOCATION"], "language": "en"}]
