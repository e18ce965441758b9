"""Throughput of piimw.detect: ``python benchmarks/bench_detect.py [--quick]``.

Reports MB/s for ~200-byte log lines (mostly clean, as real logs are; in the mixed set 1 line in
20 carries four PII values), for 100 KB blobs (JSON-ish API bodies with a handful of PII values),
then the time for adversarial 100 KB strings built to make a scanner work hard. Times are the best
of several runs in CPU time of this process (``time.process_time``), so a busy machine inflates
them less than wall-clock time would.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from piimw.detect import Detectors, KnownValues, find_all

_CLEAN_LINES = [
    '2024-05-01T12:{m:02d}:{s:02d}.{ms:03d}Z INFO  api.request method=GET '
    'path=/api/v1/orders/{n} '
    'status=200 duration_ms={d} request_id=7f3c9a12-{n:04d}-4b1e-9c8f-2a1d3e4f5a6b '
    'user_agent="Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.6367.91"',
    '2024-05-01 12:{m:02d}:{s:02d},{ms:03d} WARNING [worker-{d}] celery.task retry '
    'task=send_digest '
    'attempt={n} eta=2024-05-01T12:30:00+00:00 queue=default version=3.1.4 sha=9f86d081884c7d65',
    '{{"ts":{n}170000,"level":"info","msg":"cache miss","key":"product:{n}:v2","ttl":3600,'
    '"node":"cache-{d}","took_us":{ms},"hit_ratio":0.{d}3,"build":"2024.05.01-rc{m}"}}',
]
_PII_LINES = [
    '2024-05-01T12:{m:02d}:{s:02d}Z INFO signup email=jane.doe{n}@example.com phone=+1 415 555 '
    '2671 ip=203.0.113.{d} card=4111 1111 1111 1111',
    '{{"ts":{n},"level":"error","msg":"payment failed","iban":"DE89 3704 0044 0532 0130 00",'
    '"auth":"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlX3ZhbHVl"}}',
]


def _lines(count: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        pool = _PII_LINES if i % 20 == 0 else _CLEAN_LINES
        tpl = pool[i % len(pool)]
        out.append(tpl.format(m=rng.randrange(60), s=rng.randrange(60), ms=rng.randrange(1000),
                              n=rng.randrange(10**6), d=rng.randrange(100)))
    return out


def _blob(size: int, seed: int) -> str:
    rng = random.Random(seed)
    items = []
    total = 0
    i = 0
    while total < size:
        i += 1
        item = (
            f'{{"id":{rng.randrange(10**9)},"sku":"SKU-{rng.randrange(10**6):06d}",'
            f'"name":"Widget {rng.choice("ABCDEFGH")}{i}","price":{rng.randrange(10**4)}.99,'
            f'"tags":["blue","large","sale"],"updated":"2024-05-0{rng.randrange(1, 9)}T10:00:00Z",'
            f'"hash":"{rng.getrandbits(128):032x}","ver":"1.{rng.randrange(30)}.{rng.randrange(9)}"'
        )
        if i % 40 == 0:
            item += f',"contact":"user{i}@example.org","tel":"(212) 555-01{i % 100:02d}"'
        item += "}"
        items.append(item)
        total += len(item) + 1
    return "[" + ",".join(items) + "]"


def _adversarial(size: int) -> dict[str, str]:
    def rep(unit: str) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    return {
        "digits": rep("1234567890"),
        "digits 4111": rep("4111"),
        "spaced 1": rep("1 "),
        "spaced groups": rep("4111 "),
        "luhn-failing cards": rep("4111 1111 1111 1112 "),
        "valid cards": rep("4111 1111 1111 1111 "),
        "a@a.a": rep("a@a.a"),
        "a@a.aa spaced": rep("a@a.aa "),
        "dotted host": "a" + rep(".a"),
        "dotted digits": rep("1."),
        "x.1.1.1.1": rep("x.1.1.1.1 "),
        "ipv4s": rep("10.1.2.3 "),
        "colons": rep("1:"),
        "ipv6 ::": rep("1::1 "),
        "dashes": rep("123-"),
        "ssn-like": rep("123-45-6789 "),
        "phones": rep("(415) 555-2671 "),
        "intl phones": rep("+44 20 7946 0958 "),
        "plus digits": rep("+1 "),
        "bearer": rep("Bearer "),
        "basic words": rep("basic auth "),
        "eyJ": rep("eyJhbGciOiJIUzI1NiJ9."),
        "AKIA": rep("AKIA"),
        "pem begin": rep("-----BEGIN PRIVATE KEY-----"),
        "url creds": rep("https://a:b@"),
        "percent": rep("%40"),
        "iban-ish": rep("DE89 "),
        "letters": rep("abcdefghij"),
        "unicode": rep("h\u00e9llo w\u00f6rld \u4e2d\u6587 "),
        "surrogates": rep("\ud800a1"),
    }


def _time(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` runs, in CPU seconds of this process (stable on a busy machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    quick = "--quick" in sys.argv
    det = Detectors()
    det.find("warm up 4111 1111 1111 1111 a@b.co")

    lines = _lines(5_000 if quick else 50_000)
    size = sum(len(x) for x in lines)
    t = _time(lambda: [det.find(x) for x in lines], 3)
    print(f"log lines  find   : {size / t / 1e6:7.1f} MB/s  ({len(lines)} lines, avg "
          f"{size / len(lines):.0f} B, 1 in 20 with PII)")
    t = _time(lambda: [det.search(x) for x in lines], 3)
    print(f"log lines  search : {size / t / 1e6:7.1f} MB/s")
    clean = [x for i, x in enumerate(lines) if i % 20]
    csize = sum(len(x) for x in clean)
    t = _time(lambda: [det.find(x) for x in clean], 3)
    print(f"clean lines find  : {csize / t / 1e6:7.1f} MB/s")

    blobs = [_blob(100_000, seed) for seed in range(3 if quick else 10)]
    bsize = sum(len(b) for b in blobs)
    t = _time(lambda: [det.find(b) for b in blobs], 3)
    print(f"100 KB blobs find : {bsize / t / 1e6:7.1f} MB/s")

    known = KnownValues()
    for value, cat in [("jane.doe@example.com", "email"), ("+1 415 555 2671", "phone"),
                       ("4111 1111 1111 1111", "card"), ("Jane Q. Doe", "name"),
                       ("123-45-6789", "ssn")]:
        known.add(value, cat)
    known.find("warm")
    t = _time(lambda: [find_all(x, det, known) for x in lines], 3)
    print(f"log lines find_all (5 known values): {size / t / 1e6:7.1f} MB/s")
    t = _time(lambda: [known.find(b) for b in blobs], 3)
    print(f"100 KB blobs known.find          : {bsize / t / 1e6:7.1f} MB/s")

    print("adversarial 100 KB strings (best of 3, find):")
    worst = 0.0
    for label, text in _adversarial(100_000).items():
        t = _time(lambda text=text: det.find(text), 3)  # type: ignore[misc]
        worst = max(worst, t)
        n = len(det.find(text))
        print(f"  {label:22s} {t * 1000:7.2f} ms  ({n} findings)")
    print(f"  worst: {worst * 1000:.2f} ms")


if __name__ == "__main__":
    main()
