"""Where piimw's instructions go on the HTTP benchmark's planned order: ``breakdown.py``.

``bench_http.py --instructions`` says how many instructions piimw adds to a request; this says
where they go, part by part, in one process under valgrind's callgrind (about a minute; no
server, no load generator). The same 2 KB order, schema and settings as ``bench_http.py``:

* the whole request through the Starlette app (in-memory receive/send, driven without an
  event loop), bare and with ``PIIMiddleware``: the difference is piimw's cost; the same for
  the route without a plan (``/plain``), whose count in a server moves by a few thousand
  from run to run, more than a change to it may save (this one does not);
* the exchange alone (the sans-IO core the middleware drives): the request side (parse,
  validate, walk, remember, detect) and the response side;
* the native and Python parts of each side, one call at a time.

Each part is called a fixed number of times between ``callgrind_control -z`` and ``-d`` in
the same process, after a warm-up; an empty call's count is subtracted. Counts are the same
from run to run within about 1%, whatever else the machine does. The parts overlap (the
exchange's request side contains its parse), so they do not add up to the whole; what is left
of a whole once its parts are taken out is the Python glue between them. Before counting, the
work is checked: the exchange passes the order through, masks the email and card in the
response, the route without a plan answers as the bare app does, and the detector and
known-value passes find nothing in the clean line items.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import callgrind


def _parts() -> list[tuple[str, Callable[[], object]]]:
    """The measured calls, each checked once; built inside the process being counted."""
    import bench_http
    import orjson

    from piimw.detect import KnownValues
    from piimw.exchange import Exchange

    os.environ[bench_http.WRAP_ENV] = "bare"
    bare_app = bench_http.starlette_app()
    os.environ[bench_http.WRAP_ENV] = "piimw"
    piimw_app = bench_http.starlette_app()
    config = bench_http._config()
    body = bench_http.body()
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    answer = orjson.dumps(bench_http._answer(orjson.loads(body)))
    answer_headers = [(b"content-type", b"application/json"),
                      (b"content-length", str(len(answer)).encode())]
    route = config.routes.lookup("POST", "/orders", "/orders")
    spec_in, spec_out = route.request, route.response_for(200)
    scrubber = config.scrubber
    doc_in, doc_out = orjson.loads(body), orjson.loads(answer)
    items = orjson.dumps(doc_in["items"])
    items_text = items.decode()

    def app_call(app: Any, path: str = "/orders") -> Callable[[], bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 40000),
                 "server": ("127.0.0.1", 8000)}
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        def call() -> bytes:
            sent.clear()
            coro = app(dict(scope), receive, send)
            try:
                coro.send(None)  # nothing awaits anything that is not ready: one step
            except StopIteration:
                pass
            else:
                coro.close()
                raise RuntimeError("the app waited for something")
            if sent[0]["status"] != 200:
                raise RuntimeError(f"{path} answered {sent[0]['status']}")
            return bytes(sent[1]["body"])

        return call

    def exchange() -> Exchange:
        return Exchange(config, "POST", "/orders", list(headers), route_template="/orders",
                        client="127.0.0.1", route=route)

    def request_side() -> Exchange:
        ex = exchange()
        outcome = ex.request_body(headers, body)
        if outcome.problem is not None or outcome.body != body:
            raise RuntimeError("the exchange changed or refused the order")
        return ex

    def both_sides() -> bytes:
        ex = request_side()
        ex.wants_response_body(200, answer_headers)
        return ex.response_body(200, answer_headers, answer).body

    def remembered() -> KnownValues:
        known = KnownValues()
        scrubber.scrub(doc_in, spec_in.plan, sink="app", known=known, collect=True,
                       detect=False)
        return known

    known = remembered()

    def search_items() -> bool:
        fresh = known.copy()
        fresh._probe = None  # as a request builds it: once, for its first search
        return fresh.search(items_text)

    def scrub_out(detect: bool) -> Callable[[], object]:
        def call() -> object:
            # A copy: without the request's memo of clean texts (the exchange has it).
            return scrubber.scrub(doc_out, spec_out.plan, sink="client", known=known.copy(),
                                  detect=detect).value
        return call

    scrubbed = scrub_out(False)()

    for check in (app_call(piimw_app)(), both_sides()):
        out = orjson.loads(check)
        if out["customer"]["email"] == bench_http.EMAIL or out["card"] == bench_http.CARD:
            raise RuntimeError("the response left the email or card unmasked")
    if app_call(piimw_app, "/plain")() != app_call(bare_app, "/plain")():
        raise RuntimeError("the route without a plan changed")
    if scrubber.detectors.search_utf8(items) or search_items():
        raise RuntimeError("the line items are not clean: the detection parts would differ")

    return [
        ("(empty call, subtracted)", lambda: None),
        ("whole request, bare Starlette app", app_call(bare_app)),
        ("whole request, with PIIMiddleware", app_call(piimw_app)),
        ("route without a plan, bare Starlette app", app_call(bare_app, "/plain")),
        ("route without a plan, with PIIMiddleware", app_call(piimw_app, "/plain")),
        ("exchange: construction", exchange),
        ("exchange: construction + request side", request_side),
        ("exchange: construction + both sides", both_sides),
        ("orjson.loads, the order", lambda: orjson.loads(body)),
        ("jsonschema-rs is_valid, the order", lambda: spec_in.validator.is_valid(doc_in)),
        ("jsonschema-rs is_valid, the answer", lambda: spec_out.validator.is_valid(doc_out)),
        ("walk the order, remember 7 values", remembered),
        ("walk the order + detection (default)", lambda: scrubber.scrub(
            doc_in, spec_in.plan, sink="app", known=KnownValues(), collect=True)),
        ("  orjson.dumps, the line items", lambda: orjson.dumps(doc_in["items"])),
        ("  detector program, the line items", lambda: scrubber.detectors.search_utf8(items)),
        ("  known values, the line items (probe built)", search_items),
        ("walk the answer, mask email and card", scrub_out(False)),
        ("walk the answer + detection, no echo memo", scrub_out(True)),
        ("orjson.dumps, the scrubbed answer", lambda: orjson.dumps(scrubbed)),
    ]


def child(calls: int) -> None:
    """Under callgrind: count every part, one dump each, in the order of :func:`_parts`."""
    parts = _parts()
    pid = os.getpid()
    for name, call in parts:
        print(name, flush=True)
        for _ in range(50):
            call()
        callgrind.control("-z", pid)
        for _ in range(calls):
            call()
        callgrind.control("-d", pid)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300, help="calls counted per part (300)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.calls)
        return
    missing = callgrind.available()
    if missing:
        raise SystemExit(f"breakdown.py: {missing}")
    with tempfile.TemporaryDirectory(prefix="piimw-breakdown-") as tmp:
        out = Path(tmp) / "callgrind.out"
        done = subprocess.run(
            [*callgrind.wrapper(out), sys.executable, str(Path(__file__).resolve()), "--child",
             "--calls", str(args.calls)],
            env={**os.environ, **callgrind.ENV}, capture_output=True, text=True, timeout=1800)
        if done.returncode:
            tail = "\n".join(line for line in done.stderr.splitlines()
                             if not line.startswith("=="))[-2000:]
            raise SystemExit(f"breakdown.py: the counted process failed:\n{tail}")
        totals = callgrind.dump_totals(out)
    names = done.stdout.splitlines()
    if len(totals) != len(names):
        raise SystemExit(f"breakdown.py: {len(totals)} dumps for {len(names)} parts")
    empty = totals[0] / args.calls
    print(f"instructions per call (callgrind, {args.calls} calls each, the empty call's "
          f"{empty:,.0f} subtracted); the 2 KB order of bench_http.py")
    per = {n: t / args.calls - empty for n, t in zip(names, totals, strict=True)}
    derived = {
        "piimw per request (with - bare)":
            per["whole request, with PIIMiddleware"] - per["whole request, bare Starlette app"],
        "piimw per request passed through (route without a plan)":
            per["route without a plan, with PIIMiddleware"]
            - per["route without a plan, bare Starlette app"],
        "exchange: response side (both - request side)":
            per["exchange: construction + both sides"]
            - per["exchange: construction + request side"],
    }
    width = max(len(n) for n in [*names, *derived]) + 2
    for name in names[1:]:
        print(f"  {name:<{width}}  {per[name]:>11,.0f}")
    for name, value in derived.items():
        print(f"  {name:<{width}}  {value:>11,.0f}")


if __name__ == "__main__":
    main()
