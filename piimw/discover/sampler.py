"""Discovery off the request path: sample traffic, run a slow detector in the background.

The middleware calls :meth:`DiscoverySampler.offer` with a finished exchange and the texts it
saw (bodies, string fields, log messages). ``offer`` draws one random number and, for the
sampled few, hands references to a bounded queue with ``put_nowait``: it never blocks, never
copies a body and never runs the detector. When the queue is full the sample is dropped and
counted. A daemon worker thread runs the detector and writes one ``discovery`` record per
sample that found something into the audit trail: route, method, direction, sink, a safe
location pattern, category, detector and counts. Never a value.

The worker holds the GIL while it tags; ``duty`` caps its share of one core (it sleeps in
proportion to the time it worked) so a busy CPython process is slowed by at most that share.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from piimw.audit.records import safe_method, safe_pattern, suspicious_keys, utc_now
from piimw.discover.protocol import NERDetector

__all__ = ["DIRECTION_SINKS", "DiscoverySampler", "Sample", "Texts", "json_texts"]

logger = logging.getLogger("piimw.discover")

#: The sink a sampled text belongs to, by direction (what ``piimw map`` groups by).
DIRECTION_SINKS: Final = {"request": "app", "response": "client", "internal": "log"}
_CHUNK: Final = 4096
_WORD_BREAK: Final = re.compile(r"(?<=[a-z])(?=[A-Z])|[_.-]+")
_STOP: Final = object()


#: What ``offer`` accepts: strings, ``{location: string}``, or a function returning either
#: (called in the worker, so walking a parsed body never happens on the request path).
Texts = Iterable[str] | Mapping[str, str] | Callable[[], Iterable[str] | Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Sample:
    """What ``offer`` queues: references only; the texts are read in the worker."""

    time: float
    route: str | None
    method: str
    direction: str
    sink: str
    texts: tuple[tuple[str, str], ...] | Callable[[], Iterable[str] | Mapping[str, str]]


class DiscoverySampler:
    """Runs ``detector`` on a random ``rate`` of offered traffic in a daemon thread.

    ``audit`` is anything with ``record(payload) -> bool`` (an
    :class:`~piimw.audit.AuditTrail`). ``max_chars`` bounds the text inspected per sample;
    ``duty`` (0 < duty <= 1) bounds the worker's CPU share. ``detectors`` (anything with
    ``search(text) -> bool``; default: every regex detector) and ``detector`` decide which
    object keys in a location are PII and never reach the trail.
    """

    def __init__(self, detector: NERDetector, *, rate: float = 0.01, queue_size: int = 1000,
                 audit: Any = None, max_chars: int = 20000, duty: float = 0.25,
                 environment: str | None = None,
                 rng: Callable[[], float] | None = None, detectors: Any = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if queue_size < 1 or max_chars < 1:
            raise ValueError("queue_size and max_chars must be at least 1")
        if not 0.0 < duty <= 1.0:
            raise ValueError("duty must be in (0, 1]")
        self.detector = detector
        self._detectors = detectors
        self._regex: Callable[[str], bool] | None = None  # built in the worker when needed
        self.rate = rate
        self.audit = audit
        self.max_chars = max_chars
        self.duty = duty
        self.environment = environment if environment is not None else getattr(
            audit, "environment", None)
        self._random = rng or random.random
        self._queue: queue.Queue[Sample | object] = queue.Queue(maxsize=queue_size)
        self._idle = threading.Condition()
        self._busy = 0  # samples queued or being processed
        self._closed = False
        self._stop = threading.Event()
        self.offered = 0
        self.sampled = 0
        self.dropped = 0
        self.processed = 0
        self.found = 0
        self.recorded = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="piimw-discovery", daemon=True)
        self._thread.start()

    # -- the request path --------------------------------------------------------------------
    def offer(self, exchange: Any, texts: Texts, *, direction: str = "request",
              sink: str | None = None) -> bool:
        """Maybe queue ``texts`` seen in ``exchange``; True if queued. Never blocks.

        ``texts`` is an iterable of strings or a mapping of location (a JSON pointer such as
        ``/note`` or a channel such as ``log:app``) to string, or a function returning one
        of those, called later in the worker. Unsampled calls cost one random number; sampled
        ones one tuple of references (none for a function) and one ``put_nowait``.
        """
        self.offered += 1
        if self._closed or self._random() >= self.rate:
            return False
        self.sampled += 1
        items = texts if callable(texts) else _pairs(texts)
        sample = Sample(time.time(), getattr(exchange, "route_template", None),
                        str(getattr(exchange, "method", "?")), direction,
                        sink or DIRECTION_SINKS.get(direction, "log"), items)
        with self._idle:
            self._busy += 1
        try:
            self._queue.put_nowait(sample)
        except queue.Full:
            self.dropped += 1
            self._done()
            return False
        return True

    # -- the worker --------------------------------------------------------------------------
    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            if self._busy <= 0:
                self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, Sample)
            try:
                if not self._stop.is_set():
                    self._process(item)
            except Exception as exc:  # a detector bug must not kill discovery
                self.errors += 1
                logger.warning("piimw: discovery detector failed (%s)", type(exc).__name__)
            finally:
                self._done()

    def _process(self, sample: Sample) -> None:
        counts: dict[tuple[str, str], int] = {}
        budget = self.max_chars
        texts = sample.texts
        suspicious = self._suspicious()
        for location, text in _pairs(texts()) if callable(texts) else texts:
            if budget <= 0 or self._stop.is_set():
                break
            if not isinstance(text, str) or not text:
                continue
            text = text[:budget]
            budget -= len(text)
            pattern = None if location else "text"  # keys are only tested where PII is found
            for chunk in _chunks(text):
                if self._stop.is_set():
                    break
                started = time.perf_counter()
                for span in self.detector.find(chunk):
                    if pattern is None:
                        pattern = safe_pattern(location, suspicious)
                    key = (pattern, span.category)
                    counts[key] = counts.get(key, 0) + 1
                self._throttle(time.perf_counter() - started)
        self.processed += 1
        if not counts:
            return
        self.found += 1
        if self.audit is None:
            return
        if self.audit.record(self._payload(sample, counts)):
            self.recorded += 1

    def _suspicious(self) -> Callable[[str], bool]:
        """Keys are client-chosen: an IBAN, a token or a name (``JohnSmith``) must become ``*``.

        The regex detectors look at the key as it is; the name detector at its words
        (``JohnSmith`` -> ``John Smith``), since a model does not see a name in one token.
        """
        if self._regex is None:
            self._regex = suspicious_keys(self._detectors)
        regex = self._regex
        seen: dict[str, bool] = {}  # this sample's keys only: never kept past it

        def suspicious(segment: str) -> bool:
            hit = seen.get(segment)
            if hit is None:
                hit = seen[segment] = regex(segment) or bool(
                    self.detector.find(_WORD_BREAK.sub(" ", segment)))
            return hit

        return suspicious

    def _throttle(self, worked: float) -> None:
        if self.duty < 1.0 and worked > 0:
            self._stop.wait(worked * (1.0 - self.duty) / self.duty)

    def _payload(self, sample: Sample, counts: Mapping[tuple[str, str], int]) -> dict[str, Any]:
        name = str(self.detector.name)
        decisions = [
            {"dir": sample.direction, "sink": sample.sink, "pattern": pattern,
             "category": category, "action": "observed", "reason": "", "declared": False,
             "detector": name, "uses": [], "count": n}
            for (pattern, category), n in sorted(counts.items())]
        payload: dict[str, Any] = {
            "kind": "discovery", "time": utc_now(sample.time), "route": sample.route,
            "method": safe_method(sample.method), "direction": sample.direction, "detector": name,
            "rate": self.rate, "decisions": decisions}
        if self.environment is not None:
            payload["env"] = self.environment
        policy = getattr(self.audit, "policy_hash", None)
        if isinstance(policy, str):
            payload["policy"] = policy
        return payload

    # -- lifecycle ---------------------------------------------------------------------------
    def stats(self) -> dict[str, int]:
        return {"offered": self.offered, "sampled": self.sampled, "dropped": self.dropped,
                "processed": self.processed, "found": self.found, "recorded": self.recorded,
                "errors": self.errors, "queued": self._queue.qsize()}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued sample is processed; True if done in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 10.0, *, drain: bool = False) -> None:
        """Stop the worker (after the queue is processed if ``drain``). Idempotent.

        Without ``drain`` queued samples are discarded (counted as dropped) and a sample in
        progress stops at its next chunk, so closing never waits for a slow detector long.
        """
        if self._closed:
            return
        self._closed = True
        if drain:
            self.flush(timeout)
        self._stop.set()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Sample):
                self.dropped += 1
                self._done()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> DiscoverySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pairs(texts: Iterable[str] | Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    if isinstance(texts, Mapping):
        return tuple(texts.items())
    return tuple(("", t) for t in texts)


def json_texts(doc: Any, *, limit: int = 1000) -> dict[str, str]:
    """``{JSON pointer: string}`` for the string leaves of a parsed JSON document (at most
    ``limit``), for :meth:`DiscoverySampler.offer` (``lambda: json_texts(doc)``)."""
    out: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack and len(out) < limit:
        ptr, node = stack.pop()
        if isinstance(node, str):
            out[ptr or "/"] = node
        elif isinstance(node, dict):
            stack.extend((f"{ptr}/{_escape(str(k))}", v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{ptr}/{i}", v) for i, v in reversed(list(enumerate(node))))
    return out


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _chunks(text: str, size: int = _CHUNK) -> Iterable[str]:
    """Pieces of about ``size`` characters, cut at a line break or space where possible."""
    start, n = 0, len(text)
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = text.rfind("\n", start + size // 2, end)
            if cut < 0:
                cut = text.rfind(" ", start + size // 2, end)
            if cut > start:
                end = cut + 1
        yield text[start:end]
        start = end
