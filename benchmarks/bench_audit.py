"""What does the audit trail cost a request?

    python benchmarks/bench_audit.py [--requests 20000] [--url jsonl:///tmp/piimw-bench-audit.jsonl]

Times ``record_exchange`` in the request thread (routine requests: counters only; reportable
requests: a snapshot on the queue) and the total including the background writer (until
``flush()`` returns), per request, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from piimw.audit import AuditSettings, AuditTrail
from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import open_sink
from piimw.config import Config
from piimw.exchange import Exchange

SCHEMA = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": "email"},
    "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
    "name": {"type": "string", "x-pii": {"category": "name", "uses": ["marketing"]}},
    "note": {"type": "string"}}}


def exchanges(config: Config, n: int, reportable: bool) -> list[Exchange]:
    hdrs = [(b"content-type", b"application/json")]
    doc = {"email": "jane@example.com", "name": "Jane", "note": "hi"}
    if reportable:
        doc["card"] = "4111 1111 1111 1111"  # masked: a non-allow action gets its own record
    body = json.dumps(doc).encode()
    out = []
    for _ in range(n):
        ex = Exchange(config, "POST", "/signup", hdrs)
        ex.request_body(hdrs, body)
        ex.status = 200
        out.append(ex)
    return out


def run(url: str, config: Config, n: int, reportable: bool) -> tuple[float, float]:
    key = AuditKey("bench-key-0123456789abcdef")
    s = AuditSettings(url=url, queue_size=max(10000, n + 10))
    trail = AuditTrail(open_sink(url, Sealer(key, "bench")), key, environment="bench",
                       policy="p", settings=s)
    exs = exchanges(config, n, reportable)
    trail.record_exchange(exs[0])
    trail.flush()
    t0 = time.perf_counter()
    for ex in exs:
        trail.record_exchange(ex)
    t1 = time.perf_counter()
    trail.flush(timeout=120)
    t2 = time.perf_counter()
    trail.close()
    return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--url", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        Path(d, "signup.json").write_text(json.dumps(SCHEMA))
        config = Config.from_dict({"routes": [{"route": "POST /signup",
                                               "request": "signup.json"}]}, base_dir=d)
        urls = args.url or [f"jsonl://{d}/audit.jsonl", f"sqlite://{d}/audit.db"]
        print(f"{args.requests} requests per run; µs per request")
        print(f"{'sink':<8}{'kind':<12}{'request thread':>16}{'incl. write':>14}")
        for url in urls:
            for reportable in (False, True):
                hot, total = run(url, config, args.requests, reportable)
                kind = "reportable" if reportable else "routine"
                print(f"{url.partition(':')[0]:<8}{kind:<12}{hot:>16.1f}{total:>14.1f}")
        print(f"(python {sys.version.split()[0]}, {os.cpu_count()} CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
