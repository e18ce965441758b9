"""All in-process performance targets in one run: ``python benchmarks/run.py [--quick]``.

Prints one table: each row's absolute figure, the reference it is compared with (measured in
the same run, timed in alternation with it), the ratio, the target and PASS/MISS. Every row first
checks that the work it times is really done (scrubbed output free of the planted values,
validation rejecting an invalid document, detectors finding what was planted, log lines clean);
a failed check stops the run. The HTTP rows are ``benchmarks/bench_http.py``.

Rows (targets from the performance issue):

* JSON: ``orjson.loads`` + ``orjson.dumps`` of the document is the unit (the floor). The target
  row parses, validates (jsonschema-rs, jsonschema as fallback), applies the plan (11 tagged
  paths, sink ``log``: every tagged value is rewritten) and serializes; the detection of
  untagged PII and the jsonschema-only path are shown without a target.
* Detection: ``Detectors.find`` (every detector, validators included) over 200-byte log lines
  (1 in 20 with four PII values) and over 100 KB JSON-ish blobs, in MB/s; the reference is the
  same combined pattern run by Python's ``re`` (``findall``, no validators) on the same text.
* Worst case: adversarial strings (``bench_detect._adversarial``) at 10 KB and 100 KB.
* Log filter: records through a ``StreamHandler`` with and without ``PIIFilter``, inside a
  request (six known values) and outside. The CPU budget row converts the filter's own cost per
  record on a mixed stream (1 record in 20 with PII) into a share of one core at 1M records/min.

All in-process times are CPU time of this process (``time.process_time``), medians of rounds.
"""

from __future__ import annotations

import argparse
import functools
import io
import logging
import platform
import re
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import bench_detect  # noqa: E402
import bench_logging  # noqa: E402
import bench_scrub  # noqa: E402
import orjson  # noqa: E402
from common import Row, Table, fmt_bytes, fmt_time, interleave  # noqa: E402

from piimw.detect import Detectors, KnownValues, find_all  # noqa: E402
from piimw.detect.patterns import DEFAULT_DETECTORS, combined  # noqa: E402
from piimw.exchange import activate  # noqa: E402

#: Values planted in the benchmark document (bench_scrub.make_document) that must not survive.
DOC_SECRETS = (b"jane.doe", b"4242 4242", b"DE8937", b"123-45-6789", b"hunter2", b"friend1@",
               b"Springfield", b"+1 415 555 0100", b"203.0.113.9", b"1985-04-12")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- JSON documents -------------------------------------------------------------------------
def bench_json(table: Table, quick: bool) -> None:
    _json_size(table, 10_000, number=40 if quick else 100, repeat=9 if quick else 21,
               slow_repeat=5 if quick else 9)
    _json_size(table, 1_000_000, number=1, repeat=5 if quick else 11, slow_repeat=3)


def _json_size(table: Table, size: int, *, number: int, repeat: int, slow_repeat: int) -> None:
    doc = bench_scrub.make_document(size)
    raw = orjson.dumps(doc)
    cfg_plan, body = bench_scrub.build(detect_undeclared=False)
    cfg_detect, _ = bench_scrub.build(detect_undeclared=True)
    plan = body.plan
    validator = body.validator
    assert validator is not None
    scrub_plan = cfg_plan.scrubber.scrub
    scrub_detect = cfg_detect.scrubber.scrub

    # Checks: validation really runs, scrubbing really rewrites every planted value.
    assert validator.is_valid(orjson.loads(raw))
    broken = orjson.loads(raw)
    broken["items"][0]["qty"] = "three"
    assert not validator.is_valid(broken), "validator accepts an invalid document"
    assert not validator.is_valid_reference(broken)
    for scrub in (scrub_plan, scrub_detect):
        out = orjson.dumps(scrub(orjson.loads(raw), plan, sink="log").value)
        for secret in DOC_SECRETS:
            assert secret not in out, secret
        assert b"REDACTED" in out
        assert len(out) > len(raw) // 2

    def floor() -> None:
        orjson.dumps(orjson.loads(raw))

    def target() -> None:
        d = orjson.loads(raw)
        if not validator.is_valid(d):
            raise AssertionError("invalid")
        orjson.dumps(scrub_plan(d, plan, sink="log").value)

    def with_detect() -> None:
        d = orjson.loads(raw)
        if not validator.is_valid(d):
            raise AssertionError("invalid")
        orjson.dumps(scrub_detect(d, plan, sink="log").value)

    def jsonschema_only() -> None:
        d = orjson.loads(raw)
        if not validator.is_valid_reference(d):
            raise AssertionError("invalid")
        orjson.dumps(d)

    label = fmt_bytes(len(raw))
    _say(f"json {label}: timing ...")
    res = interleave({"floor": floor, "target": target, "detect": with_detect},
                     number=number, repeat=repeat)
    # jsonschema alone is 50-100x slower: fewer, separate samples, each next to a floor.
    slow = interleave({"floor": floor, "jsonschema": jsonschema_only},
                      number={"floor": number * 20, "jsonschema": 1}, repeat=slow_repeat)
    group = f"JSON {label}"
    base = res["floor"]
    table.add(Row(group, "orjson loads+dumps (the unit)", fmt_time(base),
                  "41 us for 10 KB (issue)" if size < 100_000 else "", "1.00x"))
    limit = 2.0 if size < 100_000 else 1.5
    r = res.ratio("target", "floor")
    table.add(Row(group, "parse+validate+scrub(11 paths)+dumps", fmt_time(res["target"]),
                  f"floor {fmt_time(base)}", f"{r:.2f}x", f"<= {limit}x floor", r <= limit))
    r = res.ratio("detect", "floor")
    table.add(Row(group, "  same + detect untagged PII (default)", fmt_time(res["detect"]),
                  f"floor {fmt_time(base)}", f"{r:.2f}x", "(no target)"))
    r = slow.ratio("jsonschema", "floor")
    table.add(Row(group, "  parse+jsonschema validate+dumps", fmt_time(slow["jsonschema"]),
                  f"floor {fmt_time(slow['floor'])}", f"{r:.1f}x", "(ref: 47-115x)"))


# -- free-text detection --------------------------------------------------------------------
def _python_re() -> re.Pattern[str]:
    """The detectors' combined pattern run by Python's ``re``: the reference engine."""
    return re.compile(combined(DEFAULT_DETECTORS, nanp=True), re.ASCII)


def bench_detection(table: Table, quick: bool) -> None:
    det = Detectors()
    det.find("warm up 4111 1111 1111 1111 a@b.co")
    ref = _python_re()
    lines = bench_detect._lines(4_000 if quick else 20_000)
    blobs = [bench_detect._blob(100_000, seed) for seed in range(2 if quick else 6)]

    # Checks: clean lines stay clean, every planted value is found.
    for i, line in enumerate(lines):
        found = det.find(line)
        if i % 20:
            assert not found, f"false positive on a clean line: {[s.detector for s in found]}"
        else:
            assert len(found) >= 2, f"PII line {i}: {[s.detector for s in found]}"
    pii = [ln for i, ln in enumerate(lines) if i % 20 == 0]
    assert sum(len(det.find(x)) for x in pii) >= 3 * len(pii)
    for b in blobs:
        contacts = b.count('"contact"')
        kinds = [s.detector for s in det.find(b)]
        assert kinds.count("email") == contacts, kinds
        assert kinds.count("phone") == contacts, kinds

    known = KnownValues()
    for value, cat in [("jane.doe@example.com", "email"), ("+1 415 555 2671", "phone"),
                       ("4111 1111 1111 1111", "card"), ("Jane Q. Doe", "name"),
                       ("123-45-6789", "ssn")]:
        known.add(value, cat)
    assert known.find("x jane.doe@example.com y")
    assert known.find("call 415-555-2671")
    known.find("warm")

    line_bytes = sum(len(x) for x in lines)
    ref_lines = lines[: max(40, len(lines) // 40)]  # Python re is ~100x slower: a subset
    ref_bytes = sum(len(x) for x in ref_lines)
    blob_bytes = sum(len(b) for b in blobs)
    ref_blob = blobs[0][:20_000]

    rows: dict[str, Callable[[], object]] = {
        "lines": lambda: [det.find(x) for x in lines],
        "lines_ref": lambda: [ref.findall(x) for x in ref_lines],
        "lines_known": lambda: [find_all(x, det, known) for x in lines],
        "blobs": lambda: [det.find(b) for b in blobs],
        "blobs_ref": lambda: ref.findall(ref_blob),
    }
    _say("detection: timing ...")
    res = interleave(rows, number=1, repeat=5 if quick else 9)
    mbps = {
        "lines": line_bytes / res["lines"] / 1e6,
        "lines_ref": ref_bytes / res["lines_ref"] / 1e6,
        "lines_known": line_bytes / res["lines_known"] / 1e6,
        "blobs": blob_bytes / res["blobs"] / 1e6,
        "blobs_ref": len(ref_blob) / res["blobs_ref"] / 1e6,
    }
    group = "detect"
    avg = line_bytes / len(lines)
    table.add(Row(group, f"log lines (~{avg:.0f} B, 1 in 20 PII), find",
                  f"{mbps['lines']:.1f} MB/s",
                  f"Python re {mbps['lines_ref']:.2f} MB/s",
                  f"{mbps['lines'] / mbps['lines_ref']:.0f}x", ">= 50 MB/s", mbps["lines"] >= 50))
    table.add(Row(group, "  same + 5 known values (find_all)", f"{mbps['lines_known']:.1f} MB/s",
                  f"Python re {mbps['lines_ref']:.2f} MB/s",
                  f"{mbps['lines_known'] / mbps['lines_ref']:.0f}x", "(no target)"))
    table.add(Row(group, "100 KB JSON blobs, find", f"{mbps['blobs']:.1f} MB/s",
                  f"Python re {mbps['blobs_ref']:.2f} MB/s",
                  f"{mbps['blobs'] / mbps['blobs_ref']:.0f}x", ">= 100 MB/s",
                  mbps["blobs"] >= 100))


# -- worst case -----------------------------------------------------------------------------
#: Adversarial inputs that are made of PII: each repetition of the unit is one finding.
_DENSE = {"valid cards": "4111 1111 1111 1111 ", "a@a.aa spaced": "a@a.aa ",
          "ipv4s": "10.1.2.3 ", "ssn-like": "123-45-6789 ", "phones": "(415) 555-2671 ",
          "intl phones": "+44 20 7946 0958 ", "url creds": "https://a:b@"}


def bench_worst(table: Table, quick: bool) -> list[str]:
    det = Detectors()
    small = bench_detect._adversarial(10_000)
    large = bench_detect._adversarial(100_000)
    for name, unit in _DENSE.items():
        n = len(det.find(large[name]))
        assert n >= 100_000 // len(unit) - 1, (name, n)
    assert det.find(large["eyJ"]), "eyJ"
    rows: dict[str, Callable[[], object]] = {}
    for name in large:
        rows[f"10K {name}"] = functools.partial(det.find, small[name])
        rows[f"100K {name}"] = functools.partial(det.find, large[name])
    _say("worst case: timing ...")
    res = interleave(rows, number={k: (5 if k.startswith("10K") else 1) for k in rows},
                     repeat=3 if quick else 5)
    detail = ["adversarial inputs, Detectors.find, median CPU time:",
              f"  {'input':<22}{'10 KB':>10}{'100 KB':>10}{'growth':>8}"]
    worst_t, worst_name = 0.0, ""
    worst_g, worst_g_name = 0.0, ""
    for name in large:
        t10, t100 = res[f"10K {name}"], res[f"100K {name}"]
        g = res.ratio(f"100K {name}", f"10K {name}")
        detail.append(f"  {name:<22}{t10 * 1e3:>8.2f}ms{t100 * 1e3:>8.2f}ms{g:>7.1f}x")
        if t100 > worst_t:
            worst_t, worst_name = t100, name
        if g > worst_g:
            worst_g, worst_g_name = g, name
    t10 = res[f"10K {worst_name}"]
    group = "worst case"
    table.add(Row(group, f"slowest 100 KB input ({worst_name})", fmt_time(worst_t),
                  f"10 KB {fmt_time(t10)}",
                  f"{res.ratio(f'100K {worst_name}', f'10K {worst_name}'):.1f}x", "<= 50 ms",
                  worst_t <= 0.050))
    table.add(Row(group, f"largest growth 10->100 KB ({worst_g_name})", f"{worst_g:.1f}x",
                  f"10 KB {fmt_time(res[f'10K {worst_g_name}'])}", f"{worst_g:.1f}x", "<= 15x",
                  worst_g <= 15))
    return detail


# -- log filter -----------------------------------------------------------------------------
def _logger(filtered: bool, fmt: str, stream: io.StringIO) -> logging.Logger:
    from piimw.logging import PIIFilter

    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    if filtered:
        handler.addFilter(PIIFilter())
    log = logging.Logger(f"bench.run.{'filtered' if filtered else 'bare'}")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def _check_logging() -> None:
    """The filter leaves clean records as they were and removes every planted value."""
    fmt = "%(levelname)s %(message)s"
    bare_s, filt_s = io.StringIO(), io.StringIO()
    bare, filt = _logger(False, fmt, bare_s), _logger(True, fmt, filt_s)
    for ctx in (activate(bench_logging.exchange()), nullcontext()):
        with ctx:
            for emit in (bench_logging.clean_line, bench_logging.clean_dict):
                emit(bare)
                emit(filt)
            assert filt_s.getvalue() == bare_s.getvalue(), "clean record changed"
            for emit in (bench_logging.pii_args, bench_logging.pii_fstring):
                filt_s.seek(0)
                filt_s.truncate()
                emit(filt)
                out = filt_s.getvalue()
                for value in (bench_logging.EMAIL, bench_logging.CARD, bench_logging.IP):
                    assert value not in out, (emit.__name__, out)
        bare_s.seek(0)
        bare_s.truncate()
        filt_s.seek(0)
        filt_s.truncate()
    with activate(bench_logging.exchange()):
        bench_logging.pii_args(filt)
    assert bench_logging.NAME not in filt_s.getvalue(), "known value (name) survived"


def bench_log_filter(table: Table, quick: bool) -> None:
    _check_logging()
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    batch = 200

    def runner(emits: list[Callable[[logging.Logger], None]], filtered: bool
               ) -> Callable[[], object]:
        stream = io.StringIO()
        log = _logger(filtered, fmt, stream)

        def run() -> None:
            stream.seek(0)
            stream.truncate()
            for emit in emits:
                emit(log)

        return run

    clean = [bench_logging.clean_line] * batch
    mixed = [bench_logging.pii_args if i % 20 == 0 else bench_logging.clean_line
             for i in range(batch)]
    scenarios: list[tuple[str, str, Callable[[], AbstractContextManager[Any]], list[Any]]] = [
        ("clean record, in a request", "clean_req", lambda: activate(bench_logging.exchange()),
         clean),
        ("clean record, outside requests", "clean_out", nullcontext, clean),
        ("1 in 20 with PII, in a request", "mixed_req",
         lambda: activate(bench_logging.exchange()), mixed),
    ]
    group = "log filter"
    results: dict[str, tuple[float, float, float, float]] = {}
    for _label, key, ctx, emits in scenarios:
        _say(f"log filter {key}: timing ...")
        with ctx():
            res = interleave({"bare": runner(emits, False), "filtered": runner(emits, True)},
                             number=3 if quick else 5, repeat=15 if quick else 41)
        results[key] = (res["bare"] / batch, res["filtered"] / batch,
                        res.ratio("filtered", "bare"), res.extra("filtered", "bare") / batch)
    for label, key, _ctx, _emits in scenarios:
        bare_t, filt_t, ratio, _extra = results[key]
        target, ok = ("<= 1.5x bare", ratio <= 1.5) if key.startswith("clean") else (
            "(no target)", None)
        table.add(Row(group, label, f"{filt_t * 1e6:.1f} us/rec",
                      f"no filter {bare_t * 1e6:.1f} us/rec", f"{ratio:.2f}x", target, ok))
    extra = results["mixed_req"][3]
    share = extra * 1_000_000 / 60
    table.add(Row(group, "filter CPU at 1M records/min (mixed)", f"{share * 100:.1f}% core",
                  f"filter {extra * 1e6:.1f} us/rec", "", "< 20% of a core", share < 0.20))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    ap.add_argument("--only", choices=("json", "detect", "worst", "logging"), action="append",
                    help="run only these groups (repeatable)")
    args = ap.parse_args()
    only = set(args.only or ("json", "detect", "worst", "logging"))
    table = Table(f"piimw benchmarks ({'quick' if args.quick else 'full'}): "
                  f"Python {platform.python_version()}, {platform.machine()}, "
                  "CPU time, medians of interleaved rounds")
    started = time.perf_counter()
    detail: list[str] = []
    if "json" in only:
        bench_json(table, args.quick)
    if "detect" in only:
        bench_detection(table, args.quick)
    if "worst" in only:
        detail = bench_worst(table, args.quick)
    if "logging" in only:
        bench_log_filter(table, args.quick)
    if detail:
        print("\n".join(detail))
        print()
    print(table.render())
    print(f"(wall time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
