"""The shipped name/address tagger: a real trained model, loaded from the package."""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import blind
import pytest
from handwritten import EXAMPLES

from piimw.detect import default_detectors
from piimw.discover import NERDetector, TaggerDetector, default_tagger
from piimw.discover.tagger import MODEL_RESOURCE, Tagger, tokenize
from piimw.discover.train import SEED, evaluate, generate, train


def test_shipped_model_is_small_and_loads() -> None:
    raw = resources.files("piimw").joinpath(MODEL_RESOURCE).read_bytes()
    assert len(raw) < 2 * 1024 * 1024
    tagger = default_tagger()
    assert len(tagger.weights) > 1000
    assert tagger.meta["seed"] == SEED
    assert tagger.meta["heldout"]["all"]["f1"] >= 0.85


def test_heldout_quality() -> None:
    # names, surnames and street words in this split never occur in the training corpus
    scores = evaluate(default_tagger(), generate(SEED, 400, "heldout"))
    assert scores["all"]["f1"] >= 0.85, scores
    assert scores["PER"]["f1"] >= 0.8, scores
    assert scores["ADDR"]["f1"] >= 0.85, scores


def test_handwritten_quality() -> None:
    scores = evaluate(default_tagger(), EXAMPLES)
    assert scores["all"]["recall"] >= 0.7, scores
    assert scores["all"]["precision"] >= 0.7, scores


def test_blind_set_quality() -> None:
    # never used for tuning (see blind.py); shipped model: P 0.79, R 0.92, F1 0.85
    scores = evaluate(default_tagger(), blind.EXAMPLES)
    assert scores["all"]["recall"] >= 0.8, scores
    assert scores["all"]["precision"] >= 0.6, scores


def test_finds_what_the_pattern_detectors_miss() -> None:
    text = ("Hello, please forward the parcel to Margarethe Olsen at "
            "27 Ashgrove Road, Bristol BS7 9LJ before Friday.")
    assert default_detectors().find(text) == []
    spans = TaggerDetector().find(text)
    found = {(text[s.start:s.end], s.category, s.detector) for s in spans}
    assert ("Margarethe Olsen", "user.name", "ner") in found
    assert any(c == "user.contact.address" and v.startswith("27 Ashgrove Road")
               for v, c, _ in found), found


def test_negatives_stay_quiet() -> None:
    detector = TaggerDetector()
    for text in ("GET /api/v2/orders/7781 200 43ms",
                 "ERROR PaymentService timeout after 3000 ms (retry 2)",
                 "the package arrived damaged and the invoice total looks wrong"):
        assert detector.find(text) == [], text


def test_protocol_and_edge_cases() -> None:
    detector = TaggerDetector()
    assert isinstance(detector, NERDetector)
    assert detector.find("") == []
    assert detector.find("   \n ") == []
    assert tokenize("O'Brien, 12") == [(0, 7, "O'Brien"), (7, 8, ","), (9, 11, "12")]


def test_training_is_deterministic(tmp_path: Path) -> None:
    data = generate(5, 150)
    a, b = train(data, epochs=2), train(data, epochs=2)
    assert a.to_json() == b.to_json()
    path = tmp_path / "m.json.gz"
    a.save(path)
    first = path.read_bytes()
    a.save(path)
    assert path.read_bytes() == first
    assert Tagger.load(path).weights == a.weights


def test_rejects_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.json.gz"
    path.write_bytes(gzip.compress(b'{"format": "other"}'))
    with pytest.raises(ValueError, match="piimw-ner/1"):
        Tagger.load(path)
