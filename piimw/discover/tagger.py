"""A small trained token classifier for person names and street addresses.

Greedy left-to-right BIO tagging with an averaged perceptron over sparse string features
(token form, shape, affixes, neighbours, capitalisation, the previous tags and two small
gazetteers). Inference is pure Python: a dict lookup per feature, no numpy, no model server.
The weights ship as ``piimw/data/ner_model.json.gz`` and are reproduced by
``python -m piimw.discover.train --out piimw/data/ner_model.json.gz``.

It is far slower than the pattern detectors (see the report in :mod:`piimw.discover.train`)
and is meant for :class:`~piimw.discover.sampler.DiscoverySampler`, off the request path.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Final

import orjson

from piimw.detect.spans import Span
from piimw.discover.protocol import ADDRESS, NAME

__all__ = ["MODEL_RESOURCE", "TAGS", "Tagger", "TaggerDetector", "default_tagger", "tokenize"]

TAGS: Final = ("O", "B-PER", "I-PER", "B-ADDR", "I-ADDR")
MODEL_RESOURCE: Final = "data/ner_model.json.gz"
FORMAT: Final = "piimw-ner/1"
CATEGORIES: Final = {"PER": NAME, "ADDR": ADDRESS}

_TOKEN: Final = re.compile("\\w+(?:['\u2019]\\w+)*|[^\\w\\s]")
_SENT_END: Final = frozenset(".!?:;\n")
_TRIM: Final = frozenset(",.;:-\u2013\u2014/(\"'")
_INFLECTIONS: Final = (("ies", "y"), ("ied", "y"), ("es", ""), ("s", ""), ("ed", ""),
                       ("ed", "e"), ("ing", ""), ("ing", "e"), ("ly", ""), ("ers", ""),
                       ("er", ""), ("er", "e"), ("ment", ""), ("ments", ""))

Token = tuple[int, int, str]  # start, end, text


def tokenize(text: str) -> list[Token]:
    """Word and punctuation tokens with their ``str`` offsets."""
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


@lru_cache(maxsize=65536)
def _shape(word: str) -> str:
    out: list[str] = []
    for ch in word[:12]:
        c = "X" if ch.isupper() else "x" if ch.isalpha() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


class Tagger:
    """An averaged-perceptron BIO tagger. ``weights[feature] = per-tag scores``."""

    def __init__(self, weights: Mapping[str, Sequence[float]], *,
                 first_names: Iterable[str] = (), street_words: Iterable[str] = (),
                 vocabulary: Iterable[str] = (),
                 meta: Mapping[str, Any] | None = None) -> None:
        self.weights: dict[str, Sequence[float]] = dict(weights)
        self.vocabulary = frozenset(vocabulary)
        self.first_names = frozenset(n.lower() for n in first_names)
        self.street_words = frozenset(s.lower() for s in street_words)
        self.meta: dict[str, Any] = dict(meta or {})

    # -- features ----------------------------------------------------------------------------
    def in_vocabulary(self, lo: str) -> bool:
        """Is ``lo`` (lowercase) an English dictionary word, or a plain inflection of one?"""
        vocab = self.vocabulary
        if lo in vocab:
            return True
        for end, repl in _INFLECTIONS:
            if lo.endswith(end) and len(lo) - len(end) >= 3 and lo[:-len(end)] + repl in vocab:
                return True
        return False

    def token_features(self, toks: Sequence[Token], text: str) -> list[list[str]]:
        """Features that do not depend on the previous tags, one list per token."""
        words = [t[2] for t in toks]
        lows = [w.lower() for w in words]
        shapes = [_shape(w) for w in words]
        n = len(toks)
        first, street = self.first_names, self.street_words
        known = [w[0].isalpha() and self.in_vocabulary(lo)
                 for w, lo in zip(words, lows, strict=True)]
        out: list[list[str]] = []
        for i in range(n):
            w, lo, sh = words[i], lows[i], shapes[i]
            prev = lows[i - 1] if i else "<s>"
            nxt = lows[i + 1] if i + 1 < n else "</s>"
            start = i == 0 or words[i - 1] in _SENT_END or "\n" in text[toks[i - 1][1]:toks[i][0]]
            f = ["b", "w=" + lo, "s=" + sh, "p3=" + lo[:3], "x3=" + lo[-3:], "x2=" + lo[-2:],
                 "pw=" + prev, "nw=" + nxt,
                 "ps=" + (shapes[i - 1] if i else "<s>"),
                 "ns=" + (shapes[i + 1] if i + 1 < n else "</s>"),
                 "pw2=" + (lows[i - 2] if i > 1 else "<s>"),
                 "nw2=" + (lows[i + 2] if i + 2 < n else "</s>"),
                 "ns2=" + (shapes[i + 2] if i + 2 < n else "</s>"),
                 "sw=" + sh + "|" + nxt[:3] if i + 1 < n else "sw=" + sh,
                 "pn=" + prev + "|" + sh]
            if start:
                f.append("bos")
                f.append("bos|" + sh)
            if len(w) > 4:
                f.append("x4=" + lo[-4:])
            if w[0].isalpha():
                v = "V" if known[i] else "nV"
                f.append(v)
                f.append(v + "|" + sh)
                if i + 1 < n and words[i + 1][0].isalpha():
                    f.append(v + ("|V+" if known[i + 1] else "|nV+"))
                if i and words[i - 1][0].isalpha():
                    f.append(v + ("|V-" if known[i - 1] else "|nV-"))
            if lo in first:
                f.append("gF")
            if prev in first:
                f.append("gFp")
            if lo in street:
                f.append("gS")
            if nxt in street or (i + 2 < n and lows[i + 2] in street):
                f.append("gSn")
            if lo.endswith(("straße", "strasse", "str", "weg", "allee", "platz", "gasse")):
                f.append("gSde")
            if i and toks[i - 1][1] == toks[i][0]:
                f.append("glued")
            out.append(f)
        return out

    @staticmethod
    def history(p1: str, p2: str, lo: str) -> tuple[str, str, str]:
        return "t1=" + p1, "t2=" + p2 + "|" + p1, "t1w=" + p1 + "|" + lo

    # -- inference ---------------------------------------------------------------------------
    def tag(self, toks: Sequence[Token], text: str) -> list[str]:
        weights = self.weights
        feats = self.token_features(toks, text)
        out: list[str] = []
        p1, p2 = "<s>", "<s>"
        ntags = len(TAGS)
        get = weights.get
        for i, f in enumerate(feats):
            # the columns are summed in C: zip(*rows) transposes, sum adds
            rows = [ws for ws in map(get, (*f, *self.history(p1, p2, toks[i][2].lower())))
                    if ws is not None]
            scores = [sum(col) for col in zip(*rows, strict=True)] if rows else [0.0] * ntags
            best = max(range(ntags), key=scores.__getitem__)
            tag = TAGS[best]
            out.append(tag)
            p2, p1 = p1, tag
        return out

    def entities(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, label)`` for every PER / ADDR entity in ``text``."""
        toks = tokenize(text)
        if not toks:
            return []
        return list(_spans(toks, self.tag(toks, text)))

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> bytes:
        doc = {"format": FORMAT, "tags": list(TAGS), "meta": self.meta,
               "first_names": sorted(self.first_names),
               "street_words": sorted(self.street_words),
               "vocabulary": "\n".join(sorted(self.vocabulary)),
               "weights": {k: [round(float(x), 3) for x in v]
                           for k, v in sorted(self.weights.items())}}
        return orjson.dumps(doc)

    def save(self, path: str | Path) -> None:
        # mtime=0: the same weights give the same bytes
        Path(path).write_bytes(gzip.compress(self.to_json(), compresslevel=9, mtime=0))

    @classmethod
    def from_json(cls, raw: bytes) -> Tagger:
        doc = orjson.loads(raw)
        if doc.get("format") != FORMAT or list(doc.get("tags", ())) != list(TAGS):
            raise ValueError(f"not a {FORMAT} model")
        weights = {k: tuple(v) for k, v in doc["weights"].items()}
        vocab = doc.get("vocabulary") or ""
        return cls(weights, first_names=doc["first_names"], street_words=doc["street_words"],
                   vocabulary=vocab.split("\n") if vocab else (), meta=doc.get("meta") or {})

    @classmethod
    def load(cls, path: str | Path | None = None) -> Tagger:
        """The model at ``path``, or the one shipped with piimw."""
        if path is None:
            raw = resources.files("piimw").joinpath(MODEL_RESOURCE).read_bytes()
        else:
            raw = Path(path).read_bytes()
        return cls.from_json(gzip.decompress(raw))


def _spans(toks: Sequence[Token], tags: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    i, n = 0, len(toks)
    while i < n:
        tag = tags[i]
        if tag == "O":
            i += 1
            continue
        label = tag[2:]
        j = i + 1
        while j < n and tags[j] == "I-" + label:
            j += 1
        # never start or end on punctuation ("," after an address, "(" before a name)
        a, b = i, j
        while a < b and toks[a][2] in _TRIM:
            a += 1
        while b > a and toks[b - 1][2] in _TRIM:
            b -= 1
        if a < b and _plausible(toks[a:b], label):
            yield toks[a][0], toks[b - 1][1], label
        i = j


def _plausible(toks: Sequence[Token], label: str) -> bool:
    """Drop fragments no reader would call a name or an address (a lone number, "Ms")."""
    alpha = [t[2] for t in toks if t[2][0].isalpha()]
    if not alpha:
        return False
    if label == "ADDR":
        return len(toks) >= 2
    # not "I", an initial alone or a title alone
    return not (len(alpha) == 1 and (len(alpha[0]) == 1 or alpha[0].lower() in _TITLES))


_TITLES: Final = frozenset({"mr", "mrs", "ms", "mx", "dr", "prof", "sir", "herr", "frau"})


class TaggerDetector:
    """:class:`~piimw.discover.protocol.NERDetector` over a :class:`Tagger`."""

    def __init__(self, tagger: Tagger | None = None, *, name: str = "ner") -> None:
        self.tagger = tagger if tagger is not None else default_tagger()
        self.name = name

    def find(self, text: str) -> list[Span]:
        return [Span(s, e, CATEGORIES[label], self.name)
                for s, e, label in self.tagger.entities(text)]


@lru_cache(maxsize=1)
def default_tagger() -> Tagger:
    """The shipped model, loaded once."""
    return Tagger.load()
