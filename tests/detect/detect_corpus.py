"""Score the detectors on the labeled corpus (``corpus.jsonl``, built by ``make_detect_corpus.py``).

A found span is a true positive only if an expected span has exactly the same start, end and
detector; anything else found is a false positive of the detector that reported it, and every
expected span not found exactly is a false negative of its detector.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from piimw.detect import DEFAULT_DETECTORS, Detectors

CORPUS = Path(__file__).resolve().parent / "corpus.jsonl"


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    positives: int = 0  # examples written for this detector
    negatives: int = 0
    misses: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def load() -> list[dict[str, object]]:
    with CORPUS.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(detectors: Detectors | None = None) -> dict[str, Score]:
    """Per-detector precision/recall over the whole corpus."""
    det = detectors if detectors is not None else Detectors()
    scores = {name: Score() for name in DEFAULT_DETECTORS}
    for example in load():
        group = str(example["group"])
        if group in scores:
            if example["kind"] == "pos":
                scores[group].positives += 1
            else:
                scores[group].negatives += 1
        text = str(example["text"])
        raw_spans = example["spans"]
        assert isinstance(raw_spans, list)
        expected = {(int(s[0]), int(s[1]), str(s[2])) for s in raw_spans}
        found = {(sp.start, sp.end, sp.detector) for sp in det.find(text)}
        for span in found & expected:
            scores[span[2]].tp += 1
        for span in found - expected:
            scores[span[2]].fp += 1
            scores[span[2]].false_alarms.append(f"{example['id']}: {text[span[0]:span[1]]!r}")
        for span in expected - found:
            scores[span[2]].fn += 1
            scores[span[2]].misses.append(f"{example['id']}: {text!r}")
    return scores


def table(scores: dict[str, Score]) -> str:
    rows = [f"{'detector':16s} {'pos':>4s} {'neg':>4s} {'tp':>4s} {'fp':>4s} {'fn':>4s} "
            f"{'precision':>9s} {'recall':>7s}"]
    for name, s in scores.items():
        rows.append(f"{name:16s} {s.positives:4d} {s.negatives:4d} {s.tp:4d} {s.fp:4d} {s.fn:4d} "
                    f"{s.precision:9.3f} {s.recall:7.3f}")
    return "\n".join(rows)
