"""Scrub throughput against the JSON floor (orjson.loads + orjson.dumps), side by side.

    python benchmarks/bench_scrub.py [--quick]

Every row is timed in the same run, interleaved, so the ratios hold on a noisy machine.
The scrubbed output is checked for correctness before anything is timed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from collections.abc import Callable
from typing import Any

import orjson

import piimw
from piimw.config import Config
from piimw.routes import Body

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "account": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email", "x-pii": "email"},
            "phone": {"type": "string", "x-pii": "phone"},
            "name": {"type": "string", "x-pii": "name"},
            "dob": {"type": "string", "x-pii": "dob"},
            "ssn": {"type": "string", "x-pii": "ssn"},
            "ip": {"type": "string", "x-pii": "ip"},
        }},
        "billing": {"type": "object", "properties": {
            "card": {"type": "string", "x-pii": "card"},
            "iban": {"type": "string", "x-pii": "iban"},
            "address": {"type": "object", "x-pii": "address", "properties": {
                "street": {"type": "string"}, "city": {"type": "string"},
                "zip": {"type": "string"}}},
        }},
        "contacts": {"type": "array", "items": {"type": "object", "properties": {
            "email": {"type": "string", "x-pii": "email"},
            "label": {"type": "string"}}}},
        "password": {"type": "string", "writeOnly": True},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "sku": {"type": "string"}, "qty": {"type": "integer"},
            "price": {"type": "number"}, "note": {"type": "string"}}}},
    },
}


def make_document(target_bytes: int, seed: int = 7) -> dict[str, Any]:
    rnd = random.Random(seed)

    def word(n: int) -> str:
        return "".join(rnd.choice(string.ascii_lowercase) for _ in range(n))

    doc: dict[str, Any] = {
        "account": {"email": "jane.doe@example.com", "phone": "+1 415 555 0100",
                    "name": "Jane Doe", "dob": "1985-04-12", "ssn": "123-45-6789",
                    "ip": "203.0.113.9"},
        "billing": {"card": "4242 4242 4242 4242", "iban": "DE89370400440532013000",
                    "address": {"street": "1 Main St", "city": "Springfield", "zip": "12345"}},
        "contacts": [{"email": f"friend{i}@example.org", "label": word(6)} for i in range(2)],
        "password": "hunter2-hunter2",
        "items": [],
    }
    while len(orjson.dumps(doc)) < target_bytes:
        doc["items"].append({"sku": f"SKU-{rnd.randint(10000, 99999)}", "qty": rnd.randint(1, 9),
                             "price": round(rnd.random() * 100, 2),
                             "note": " ".join(word(rnd.randint(3, 9)) for _ in range(6))})
    return doc


def timeit(fn: Callable[[], object], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def compare(rows: dict[str, Callable[[], object]], number: int, repeat: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(repeat):
        for name, fn in rows.items():  # interleaved: noise hits every row alike
            samples[name].append(timeit(fn, number))
    return {k: statistics.median(v) for k, v in samples.items()}


def build(detect_undeclared: bool) -> tuple[Config, Body]:
    cfg = Config.from_dict({"detect_undeclared": detect_undeclared})
    plan = piimw.compile_schema(SCHEMA)
    from piimw.schema.loader import SchemaStore
    from piimw.schema.validate import Validator, fast_registry

    store = SchemaStore()
    uri = store.add_document(SCHEMA, "urn:bench:schema")
    return cfg, Body(plan, Validator(store, uri, "", store.registry(), fast_registry(store)))


def rows_for(size: int) -> tuple[int, dict[str, Callable[[], object]]]:
    """The timed rows for one document size, each checked for correct output first."""
    doc = make_document(size)
    raw = orjson.dumps(doc)
    cfg, body = build(detect_undeclared=True)
    cfg_nd, _ = build(detect_undeclared=False)
    validator = body.validator
    assert validator is not None
    assert validator.is_valid(orjson.loads(raw))
    for c in (cfg, cfg_nd):
        text = orjson.dumps(c.scrubber.scrub(orjson.loads(raw), body.plan, sink="log").value)
        for secret in (b"jane.doe", b"4242 4242", b"DE8937", b"123-45-6789", b"hunter2",
                       b"friend1@", b"Springfield"):
            assert secret not in text, secret

    def floor() -> None:
        orjson.dumps(orjson.loads(raw))

    def scrub_plan_only() -> None:
        orjson.dumps(cfg_nd.scrubber.scrub(orjson.loads(raw), body.plan, sink="log").value)

    def scrub_detect() -> None:
        orjson.dumps(cfg.scrubber.scrub(orjson.loads(raw), body.plan, sink="log").value)

    def validate_scrub() -> None:
        d = orjson.loads(raw)
        validator.is_valid(d)
        orjson.dumps(cfg.scrubber.scrub(d, body.plan, sink="log").value)

    def validate_reference() -> None:
        d = orjson.loads(raw)
        validator.is_valid_reference(d)
        orjson.dumps(cfg.scrubber.scrub(d, body.plan, sink="log").value)

    return len(raw), {
        "orjson loads+dumps (floor)": floor,
        "parse+scrub (plan only)+dumps": scrub_plan_only,
        "parse+scrub (plan+undeclared detect)+dumps": scrub_detect,
        "parse+validate+scrub+dumps": validate_scrub,
        "parse+validate(jsonschema only)+scrub+dumps": validate_reference,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeat = 3 if args.quick else 7
    print(f"{'size':>7} {'row':<44} {'median':>10} {'x floor':>8}")
    for size, number in ((10_000, 300 if args.quick else 1000),
                         (1_000_000, 3 if args.quick else 10)):
        nbytes, rows = rows_for(size)
        res = compare(rows, number, repeat)
        base = res["orjson loads+dumps (floor)"]
        for name, t in res.items():
            print(f"{nbytes:>7} {name:<44} {t * 1e6:>8.1f}us {t / base:>7.2f}x")
        mbps = nbytes / res["parse+scrub (plan+undeclared detect)+dumps"] / 1e6
        print(f"{'':>7} scrub throughput (plan+detect): {mbps:.1f} MB/s")


if __name__ == "__main__":
    main()
