"""Precision and recall of every detector on the labeled corpus must be at least 0.97."""

from __future__ import annotations

import pytest
from detect_corpus import CORPUS, evaluate, load, table
from make_detect_corpus import build, dumps

from piimw.detect import DEFAULT_DETECTORS, Detectors

THRESHOLD = 0.97


def test_corpus_file_is_what_the_generator_builds() -> None:
    assert CORPUS.read_text(encoding="utf-8") == dumps(build()), (
        "corpus.jsonl is stale: run python tests/detect/make_detect_corpus.py"
    )


def test_corpus_has_enough_examples_per_detector() -> None:
    scores = evaluate()
    for name in DEFAULT_DETECTORS:
        assert scores[name].positives >= 60, name
        assert scores[name].negatives >= 60, name


def test_precision_and_recall_per_detector() -> None:
    scores = evaluate()
    print("\n" + table(scores))
    for name, score in scores.items():
        assert score.precision >= THRESHOLD, (name, score.false_alarms[:10])
        assert score.recall >= THRESHOLD, (name, score.misses[:10])


@pytest.mark.parametrize("name", DEFAULT_DETECTORS)
def test_a_detector_alone_finds_its_own_positives(name: str) -> None:
    """Subsets compile their own alternation; a detector must not depend on the others."""
    det = Detectors([name])
    found = expected = 0
    for example in load():
        spans = example["spans"]
        assert isinstance(spans, list)
        want = {(s[0], s[1]) for s in spans if s[2] == name}
        if not want:
            continue
        expected += len(want)
        got = {(sp.start, sp.end) for sp in det.find(str(example["text"]))}
        found += len(want & got)
    assert found / expected >= THRESHOLD


def test_search_agrees_with_find_on_the_corpus() -> None:
    det = Detectors()
    for example in load():
        text = str(example["text"])
        assert det.search(text) == bool(det.find(text)), example["id"]
