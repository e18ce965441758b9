"""Added latency of one registry lookup per request, per backend, cached and uncached.

    python benchmarks/bench_registry.py [--redis redis://127.0.0.1:6379/11] [-n 20000]

Prints microseconds per call (best of 5 runs). ``get`` is ``Registry.get(subject)``;
``consent_for`` is what a request pays: header signals + registry, merged.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial

import redis

from piimw.consent import from_headers
from piimw.registry import Registry
from piimw.transform import Hasher


def _best(fn: Callable[[], object], n: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def _bench(name: str, url: str, n: int, prefix: str) -> None:
    hasher = Hasher("bench-key-0123456789abcdef", "b1")
    headers = from_headers([("sec-gpc", "1")])
    for cached in (False, True):
        with Registry(url, hasher, cache=cached, key_prefix=prefix) as registry:
            subject = registry.subject_for("bench-user")
            registry.opt_out(subject, ["analytics"])
            deadline = time.monotonic() + 5
            while cached and registry.cache is not None and registry.hits < 10:
                registry.get(subject)  # wait for the listener (Redis) and warm up
                if time.monotonic() > deadline:
                    break
            count = n if cached or name == "memory" else max(n // 10, 500)
            get = _best(partial(registry.get, subject), count)
            both = _best(partial(registry.consent_for, subject, headers), count)
            mode = "cached" if registry.cache is not None else "uncached"
            if name == "memory" and cached:
                mode = "no cache (n/a)"
            print(f"{name:7} {mode:15} get {get:8.1f} us   consent_for {both:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default=os.environ.get("PIIMW_TEST_REDIS_URL",
                                                          "redis://127.0.0.1:6379/11"))
    parser.add_argument("-n", type=int, default=20000)
    args = parser.parse_args()
    start = time.perf_counter()
    for _ in range(args.n):
        from_headers([("sec-gpc", "1")])
    print(f"baseline: from_headers alone {(time.perf_counter() - start) / args.n * 1e6:.1f} us")
    _bench("memory", f"memory://bench-{uuid.uuid4().hex}", args.n, "x")
    with tempfile.TemporaryDirectory() as tmp:
        _bench("sqlite", f"sqlite:///{os.path.join(tmp, 'registry.db')}", args.n, "x")
    prefix = f"piimwbench-{uuid.uuid4().hex[:8]}"
    try:
        _bench("redis", args.redis, args.n, prefix)
    finally:
        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
