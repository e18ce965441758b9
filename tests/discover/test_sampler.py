"""DiscoverySampler: off the request path, bounded, and value-free records in the trail."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from piimw.audit import AuditSettings, AuditTrail
from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import open_sink
from piimw.audit.verify import verify
from piimw.config import Config
from piimw.datamap import observed
from piimw.detect.spans import Span
from piimw.discover import DiscoverySampler, TaggerDetector
from piimw.discover.sampler import json_texts
from piimw.exchange import Exchange

KEY = AuditKey("discover-test-key-0123456789abcdef")
PLANTED_NAMES = ("Margarethe Olsen", "Tobias Kranz")
PLANTED_ADDRESS = "27 Ashgrove Road, Bristol BS7 9LJ"
NOTE = (f"Please forward the parcel to {PLANTED_NAMES[0]} at {PLANTED_ADDRESS}. "
        f"Refund approved by {PLANTED_NAMES[1]}.")


def _trail(path: Path) -> AuditTrail:
    url = f"jsonl://{path}"
    s = AuditSettings(url=url)
    return AuditTrail(open_sink(url, Sealer(KEY, "test", s.checkpoint_every)), KEY,
                      environment="test", policy="p" * 32, settings=s)


def _exchange(tmp_path: Path) -> Exchange:
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps({"type": "object", "properties": {
        "note": {"type": "string"}, "sku": {"type": "string"}}}))
    config = Config.from_dict({"routes": [{"route": "POST /orders", "request": "order.json"}]},
                              base_dir=tmp_path)
    return Exchange(config, "POST", "/orders", [(b"content-type", b"application/json")], b"")


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Exchange:
    route_template = "/orders"
    method = "POST"


class _Counting:
    """The real tagger, counting calls (so a test can wait for the worker to be busy)."""

    name = "ner"

    def __init__(self) -> None:
        self.inner = TaggerDetector()
        self.started = threading.Event()

    def find(self, text: str) -> list[Span]:
        self.started.set()
        return self.inner.find(text)


def test_offer_never_blocks_on_a_slow_detector() -> None:
    detector = _Counting()
    huge = (NOTE + "\n") * 20000  # ~2.4 MB: the real model needs many seconds for it
    sampler = DiscoverySampler(detector, rate=1.0, queue_size=1, max_chars=len(huge), duty=1.0)
    try:
        assert sampler.offer(_Exchange(), [huge])
        assert detector.started.wait(5)
        assert sampler.offer(_Exchange(), [huge])  # fills the queue (size 1)
        worst = 0.0
        t0 = time.perf_counter()
        for _ in range(2000):
            t = time.perf_counter()
            assert not sampler.offer(_Exchange(), [huge, NOTE])
            worst = max(worst, time.perf_counter() - t)
        total = time.perf_counter() - t0
        assert sampler.dropped == 2000
        assert sampler.processed == 0  # still busy with the first huge text
        assert total < 1.0, total
        assert worst < 0.1, worst
    finally:
        t = time.perf_counter()
        sampler.close(timeout=5)
        assert time.perf_counter() - t < 5  # stops at the next chunk, not after 2.4 MB
    assert not sampler._thread.is_alive()
    assert sampler.dropped == 2001  # the queued one was discarded by close()
    assert not sampler.offer(_Exchange(), [NOTE])  # closed: nothing is queued


def test_rate_samples_and_unsampled_offers_do_nothing() -> None:
    values = iter([0.5, 0.001, 0.9])
    with DiscoverySampler(TaggerDetector(), rate=0.01, rng=lambda: next(values)) as sampler:
        assert not sampler.offer(_Exchange(), [NOTE])
        assert sampler.offer(_Exchange(), [NOTE])
        assert not sampler.offer(_Exchange(), [NOTE])
        assert sampler.flush(10)
        assert (sampler.offered, sampler.sampled, sampler.processed, sampler.found) == (3, 1, 1, 1)
    with pytest.raises(ValueError, match="rate"):
        DiscoverySampler(TaggerDetector(), rate=2.0)


def test_end_to_end_findings_reach_the_trail_without_values(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ex = _exchange(tmp_path)
    trail = _trail(path)
    sampler = DiscoverySampler(TaggerDetector(), rate=1.0, audit=trail, duty=1.0)
    try:
        body = {"note": NOTE, "sku": "Pixel 8 Pro"}
        assert sampler.offer(ex, {"/note": body["note"], "/sku": body["sku"],
                                  f"/{PLANTED_NAMES[1]}": "x"})
        assert sampler.offer(ex, [f"shipping label printed for {PLANTED_NAMES[0]}"],
                             direction="internal", sink="log")
        assert sampler.flush(20)
    finally:
        sampler.close()
        trail.close()
    raw = path.read_text()
    for value in (*PLANTED_NAMES, PLANTED_ADDRESS, "Ashgrove", "Olsen", "Kranz"):
        assert value not in raw
    recs = [r for r in _read(path) if r["kind"] == "discovery"]
    assert len(recs) == 2
    first = recs[0]
    assert (first["route"], first["method"]) == ("/orders", "POST")
    assert (first["env"], first["policy"]) == ("test", "p" * 32)
    found = {(d["dir"], d["sink"], d["pattern"], d["category"]): d["count"]
             for d in first["decisions"]}
    assert found == {("request", "app", "/note", "user.name"): 2,
                     ("request", "app", "/note", "user.contact.address"): 1}
    assert all(d["detector"] == "ner" and d["declared"] is False for d in first["decisions"])
    assert recs[1]["decisions"][0]["pattern"] == "text"
    assert recs[1]["decisions"][0]["sink"] == "log"
    assert verify([str(path)], KEY).ok  # discovery records are chained and signed

    # The decisions have the shape datamap.observed reads from request records; with the
    # one-line change proposed in the report it reads discovery records as they are.
    as_request = tmp_path / "as-request.jsonl"
    as_request.write_text("".join(json.dumps(dict(r, kind="request")) + "\n" for r in recs))
    seen = {(o.route, o.direction, o.sink, o.pattern, o.category, o.count)
            for o in observed([str(as_request)])}
    assert ("POST /orders", "request", "app", "/note", "user.name", 2) in seen
    assert ("POST /orders", "request", "app", "/note", "user.contact.address", 1) in seen


def test_detector_errors_are_counted_not_raised() -> None:
    class Broken:
        name = "broken"

        def find(self, text: str) -> list[Span]:
            raise RuntimeError(text)

    with DiscoverySampler(Broken(), rate=1.0) as sampler:
        assert sampler.offer(_Exchange(), [NOTE])
        assert sampler.flush(5)
        assert sampler.errors == 1
        assert sampler.stats()["errors"] == 1


def test_lazy_texts_are_walked_in_the_worker() -> None:
    doc = {"order": {"note": NOTE, "lines": [{"sku": "Pixel 8 Pro"}]}, "n": 3,
           f"{PLANTED_NAMES[1]}/x": "hello"}
    assert json_texts(doc) == {"/order/note": NOTE, "/order/lines/0/sku": "Pixel 8 Pro",
                               f"/{PLANTED_NAMES[1]}~1x": "hello"}
    calls: list[str] = []

    def texts() -> dict[str, str]:
        calls.append(threading.current_thread().name)
        return json_texts(doc)

    class Trail:
        def __init__(self) -> None:
            self.payloads: list[dict[str, Any]] = []

        def record(self, payload: dict[str, Any]) -> bool:
            self.payloads.append(payload)
            return True

    trail = Trail()
    with DiscoverySampler(TaggerDetector(), rate=1.0, audit=trail, duty=1.0) as sampler:
        assert sampler.offer(_Exchange(), texts)
        assert sampler.flush(10)
    assert calls == ["piimw-discovery"]
    (payload,) = trail.payloads
    patterns = {d["pattern"] for d in payload["decisions"]}
    assert patterns == {"/order/note"}
    assert PLANTED_NAMES[1] not in json.dumps(payload)
