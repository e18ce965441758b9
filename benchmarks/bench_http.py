"""HTTP throughput with and without piimw, real servers on 127.0.0.1: ``bench_http.py [--quick]``.

Rows (targets from the performance issue), each the wrapped server's requests/s over the bare
server's, measured in the same run:

* Starlette under uvicorn (one process), 2 KB JSON POSTed and echoed, route without a plan:
  ``PIIMiddleware`` must pass it through (>= 0.98x bare).
* The same app, route with a plan: the request is parsed, validated and its tagged values
  remembered; the response is validated, scrubbed (email and card masked by the schema's
  action) and scanned for undeclared PII (>= 0.85x bare).
* Flask under gunicorn (sync worker, 1 worker), route with a plan, ``PIIMW(app)`` (>= 0.90x).

Method: the bare and the wrapped server run side by side (same app, same handlers; only the
middleware differs) and are loaded in alternation A/B, B/A, A/B ... so that drift on a shared
machine hits both alike; the ratio is the median of the per-round ratios. The servers are
pinned to CPU 0 and the load generator to CPU 1 (``taskset``) when there are two CPUs or more.
Load: ``wrk`` (Debian package) if installed, else this file's own asyncio load generator
(raw sockets, keep-alive, fixed duration). Before timing, every route is checked over HTTP:
the bare and wrapped echo are byte-identical without a plan; with a plan the wrapped response
has the email and card masked (the bare one has them raw) and an invalid body is refused with
422. Access logs are off on both sides (piimw's log filter is measured by ``run.py``).
Servers are started in their own process groups and killed on exit, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from piimw._process import stop_group

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
WRAP_ENV = "PIIMW_BENCH_WRAP"

EMAIL = "jane.doe@example.com"
CARD = "4242 4242 4242 4242"


# -- the application ------------------------------------------------------------------------
def _order_schema(response: bool) -> dict[str, Any]:
    email: Any = {"category": "email", "action": "mask"} if response else "email"
    card: Any = {"category": "card", "action": "mask"} if response else "card"
    props: dict[str, Any] = {
        "customer": {"type": "object", "required": ["email"], "properties": {
            "email": {"type": "string", "format": "email", "x-pii": email},
            "name": {"type": "string", "x-pii": "name"},
            "phone": {"type": "string", "x-pii": "phone"}}},
        "card": {"type": "string", "x-pii": card},
        "shipping": {"type": "object", "x-pii": "address", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"},
            "zip": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"],
                                             "properties": {
            "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1},
            "price": {"type": "number"}, "note": {"type": "string"}}}},
    }
    if response:
        props["id"] = {"type": "integer"}
        props["status"] = {"type": "string"}
    return {"type": "object", "required": ["customer", "items"], "properties": props}


def openapi() -> dict[str, Any]:
    """Plans for ``POST /orders`` only; ``/plain`` is not in the document (no plan)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "piimw http bench", "version": "1"},
        "paths": {"/orders": {"post": {
            "requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Order"}}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/OrderOut"}}}}},
        }}},
        "components": {"schemas": {"Order": _order_schema(False),
                                   "OrderOut": _order_schema(True)}},
    }


def body(size: int = 2048) -> bytes:
    """A ~2 KB order: the tagged customer fields plus line items."""
    doc: dict[str, Any] = {
        "customer": {"email": EMAIL, "name": "Jane Doe", "phone": "+1 415 555 0100"},
        "card": CARD,
        "shipping": {"street": "1 Main St", "city": "Springfield", "zip": "12345"},
        "items": [],
    }
    i = 0
    while len(json.dumps(doc, separators=(",", ":"))) < size - 80:
        i += 1
        doc["items"].append({"sku": f"SKU-{10000 + i * 37}", "qty": 1 + i % 4,
                             "price": round(3.5 + i * 1.25, 2),
                             "note": "gift wrap, leave at the door"})
    return json.dumps(doc, separators=(",", ":")).encode()


def _config() -> Any:
    import piimw

    return piimw.Config.from_dict({}, source="<bench_http>",
                                  openapi_documents={"<bench_http openapi>": openapi()})


def _answer(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": 1, "status": "created", **data}


def _wrapped() -> bool:
    return os.environ.get(WRAP_ENV, "0") == "1"


def starlette_app() -> Any:
    """uvicorn factory (``--factory``): bare, or with ``PIIMiddleware`` if PIIMW_BENCH_WRAP=1."""
    import orjson
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def plain(request: Request) -> Response:
        data = orjson.loads(await request.body())
        return Response(orjson.dumps(data), media_type="application/json")

    async def orders(request: Request) -> Response:
        data = orjson.loads(await request.body())
        return Response(orjson.dumps(_answer(data)), media_type="application/json")

    middleware = []
    if _wrapped():
        from piimw.contrib.starlette import PIIMiddleware

        middleware.append(Middleware(PIIMiddleware, config=_config()))
    return Starlette(routes=[Route("/plain", plain, methods=["POST"]),
                             Route("/orders", orders, methods=["POST"])],
                     middleware=middleware)


def flask_app() -> Any:
    """gunicorn factory (``bench_http:flask_app()``): bare, or with ``PIIMW(app)``."""
    import orjson
    from flask import Flask, Response, request

    app = Flask("bench_http")

    @app.post("/plain")
    def plain() -> Response:
        return Response(orjson.dumps(orjson.loads(request.get_data())),
                        mimetype="application/json")

    @app.post("/orders")
    def orders() -> Response:
        return Response(orjson.dumps(_answer(orjson.loads(request.get_data()))),
                        mimetype="application/json")

    if _wrapped():
        from piimw.contrib.flask import PIIMW

        PIIMW(app, _config())
    return app


# -- servers --------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _pin(cpu: int | None) -> list[str]:
    if cpu is None:
        return []
    return ["taskset", "-c", str(cpu)]


@contextmanager
def server(name: str, kind: str, wrapped: bool, cpu: int | None, tmp: Path) -> Iterator[Server]:
    """Start one server (own process group), wait until it answers, kill it on exit."""
    port = _free_port()
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "bench_http:starlette_app", "--factory",
               "--app-dir", str(HERE), "--host", HOST, "--port", str(port),
               "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-k", "sync", "-w", "1",
               "-b", f"{HOST}:{port}", "--log-level", "warning", "bench_http:flask_app()"]
    env = dict(os.environ)
    env[WRAP_ENV] = "1" if wrapped else "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(REPO),
                                                      env.get("PYTHONPATH")]))
    log = tmp / f"{name.replace(' ', '_')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*_pin(cpu), *cmd], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=HERE,
                                env=env)
    srv = Server(name, port, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{srv.output()}")
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start:\n{srv.output()}") from None
                time.sleep(0.1)
        yield srv
    finally:
        stop_group(proc)


def post(url: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check(bare: Server, wrapped: Server, paths: list[str], payload: bytes) -> None:
    """The work is really done: no plan = untouched; plan = validated, masked."""
    if "/plain" in paths:
        sb, bb = post(bare.url + "/plain", payload)
        sw, bw = post(wrapped.url + "/plain", payload)
        assert sb == sw == 200, (sb, sw, bw[:200])
        assert bb == bw == json.dumps(json.loads(payload), separators=(",", ":")).encode(), \
            "route without a plan changed"
    if "/orders" in paths:
        sb, bb = post(bare.url + "/orders", payload)
        sw, bw = post(wrapped.url + "/orders", payload)
        assert sb == sw == 200, (sb, sw, bw[:300])
        assert EMAIL.encode() in bb, "negative control"
        assert CARD.encode() in bb, "negative control"
        assert EMAIL.encode() not in bw, "email not masked"
        assert CARD.encode() not in bw, "card not masked"
        out = json.loads(bw)
        assert out["customer"]["email"] == "j***@example.com", out
        assert out["card"] == "**** **** **** 4242", out
        assert len(out["items"]) == len(json.loads(payload)["items"])
        bad = json.loads(payload)
        bad["items"][0]["qty"] = "three"
        s_bad, _ = post(wrapped.url + "/orders", json.dumps(bad).encode())
        assert s_bad == 422, f"invalid body not refused: {s_bad}"
        s_bad_bare, _ = post(bare.url + "/orders", json.dumps(bad).encode())
        assert s_bad_bare == 200


# -- load generators ------------------------------------------------------------------------
@dataclass
class Load:
    rps: float
    requests: int
    errors: int
    non2xx: int


def _wrk_script(tmp: Path, payload: bytes) -> Path:
    text = payload.decode()
    assert "]==]" not in text
    script = tmp / "post.lua"
    script.write_text('wrk.method = "POST"\n'
                      'wrk.headers["Content-Type"] = "application/json"\n'
                      f"wrk.body = [==[{text}]==]\n", "utf-8")
    return script


def run_wrk(url: str, seconds: float, connections: int, script: Path,
            cpu: int | None) -> Load:
    cmd = [*_pin(cpu), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
           "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                         check=True).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    if m is None or n is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(float(m.group(1)), int(n.group(1)),
                sum(int(g) for g in errs.groups()) if errs else 0,
                int(non2xx.group(1)) if non2xx else 0)


def run_pyload(url: str, seconds: float, connections: int, payload: bytes,
               cpu: int | None) -> Load:
    """This file's asyncio load generator, in a child process pinned like wrk would be."""
    fd, name = tempfile.mkstemp(suffix=".json")
    os.write(fd, payload)
    os.close(fd)
    try:
        cmd = [*_pin(cpu), sys.executable, __file__, "--loadgen", url, str(seconds),
               str(connections), name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30,
                             check=True).stdout
    finally:
        os.unlink(name)
    data = json.loads(out)
    return Load(data["rps"], data["requests"], data["errors"], data["non2xx"])


async def _client(host: str, port: int, request: bytes, stop: float,
                  counts: dict[str, int]) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    loop = asyncio.get_running_loop()
    while loop.time() < stop:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            lower = head.lower()
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", lower)
            if m is not None:
                await reader.readexactly(int(m.group(1)))
            elif b"transfer-encoding: chunked" in lower:
                while True:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            else:
                await reader.read()
                lower += b"\r\nconnection: close"
            counts["requests"] += 1
            if not 200 <= status < 400:
                counts["non2xx"] += 1
            if b"\r\nconnection: close" in lower:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


def loadgen_main(url: str, seconds: float, connections: int, payload_path: str) -> None:
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    if m is None or m.group(1) != HOST:
        raise SystemExit("the load generator only loads http://127.0.0.1:<port>/...")
    host, port, path = m.group(1), int(m.group(2)), m.group(3)
    payload = Path(payload_path).read_bytes()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
               ).encode() + payload
    counts = {"requests": 0, "errors": 0, "non2xx": 0}

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        stop = start + seconds
        await asyncio.gather(*(_client(host, port, request, stop, counts)
                               for _ in range(connections)))
        return loop.time() - start

    elapsed = asyncio.run(main())
    print(json.dumps({"rps": counts["requests"] / elapsed, **counts}))


# -- the comparison -------------------------------------------------------------------------
@dataclass
class Result:
    label: str
    bare_rps: float
    wrapped_rps: float
    ratio: float
    ratios: list[float]
    target: float
    requests: int


def compare(label: str, bare: Server, wrapped: Server, path: str, *, rounds: int,
            seconds: float, connections: int, target: float, load: Any) -> Result:
    """A/B in alternation (ABBA...), after one warm-up run each; median of per-round ratios."""
    for srv in (bare, wrapped):
        load(srv.url + path, 1.0, connections)
    bare_rps: list[float] = []
    wrapped_rps: list[float] = []
    total = 0
    for r in range(rounds):
        order = (bare, wrapped) if r % 2 == 0 else (wrapped, bare)
        for srv in order:
            res: Load = load(srv.url + path, seconds, connections)
            if res.non2xx or res.requests == 0:
                raise RuntimeError(f"{label}: {srv.name} answered {res.non2xx} non-2xx of "
                                   f"{res.requests}\n{srv.output()[-2000:]}")
            total += res.requests
            (bare_rps if srv is bare else wrapped_rps).append(res.rps)
        print(f"  {label} round {r + 1}/{rounds}: bare {bare_rps[-1]:8.0f} rps, "
              f"piimw {wrapped_rps[-1]:8.0f} rps", file=sys.stderr, flush=True)
    ratios = [w / b for w, b in zip(wrapped_rps, bare_rps, strict=True)]
    return Result(label, statistics.median(bare_rps), statistics.median(wrapped_rps),
                  statistics.median(ratios), ratios, target, total)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 rounds of 2 s per row")
    ap.add_argument("--rounds", type=int, help="A/B rounds per row (default 10, quick 4)")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 3, quick 2)")
    ap.add_argument("--loadgen", nargs=4, metavar=("URL", "SECONDS", "CONNS", "BODY"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin servers and load generator to separate CPUs")
    ap.add_argument("--python-load", action="store_true",
                    help="use the built-in asyncio load generator even if wrk is installed")
    args = ap.parse_args()
    if args.loadgen:
        url, seconds, conns, path = args.loadgen
        loadgen_main(url, float(seconds), int(conns), path)
        return
    rounds = args.rounds or (4 if args.quick else 10)
    seconds = args.seconds or (2.0 if args.quick else 3.0)
    cpus = os.cpu_count() or 1
    pinned = cpus >= 2 and shutil.which("taskset") is not None and not args.no_pin
    server_cpu, load_cpu = (0, 1) if pinned else (None, None)
    wrk = shutil.which("wrk") if not args.python_load else None
    payload = body()
    tmp = Path(tempfile.mkdtemp(prefix="piimw-bench-http-"))

    def load(url: str, secs: float, conns: int) -> Load:
        if wrk is not None:
            return run_wrk(url, secs, conns, script, load_cpu)
        return run_pyload(url, secs, conns, payload, load_cpu)

    script = _wrk_script(tmp, payload)
    generator = "wrk 4 (1 thread)" if wrk else "asyncio load generator (keep-alive)"
    print(f"piimw HTTP benchmark: {len(payload)} B JSON bodies, {generator}, "
          f"{rounds} A/B rounds x {seconds:g} s per row, "
          + (f"servers on CPU {server_cpu}, load on CPU {load_cpu}" if pinned
             else "not pinned"), flush=True)
    results: list[Result] = []
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            bare = stack.enter_context(server("starlette bare", "uvicorn", False, server_cpu,
                                              tmp))
            wrapped = stack.enter_context(server("starlette piimw", "uvicorn", True,
                                                 server_cpu, tmp))
            check(bare, wrapped, ["/plain", "/orders"], payload)
            results.append(compare("Starlette/uvicorn, route without a plan", bare, wrapped,
                                   "/plain", rounds=rounds, seconds=seconds, connections=8,
                                   target=0.98, load=load))
            results.append(compare("Starlette/uvicorn, route with a plan", bare, wrapped,
                                   "/orders", rounds=rounds, seconds=seconds, connections=8,
                                   target=0.85, load=load))
        with ExitStack() as stack:
            bare = stack.enter_context(server("flask bare", "gunicorn", False, server_cpu, tmp))
            wrapped = stack.enter_context(server("flask piimw", "gunicorn", True, server_cpu,
                                                 tmp))
            check(bare, wrapped, ["/plain", "/orders"], payload)
            results.append(compare("Flask/gunicorn sync x1, route with a plan", bare, wrapped,
                                   "/orders", rounds=rounds, seconds=seconds, connections=4,
                                   target=0.90, load=load))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r.label) for r in results)
    head = (f"{'row':<{width}}  {'bare rps':>9}  {'piimw rps':>9}  {'ratio':>7}  "
            f"{'rounds: min-max':>15}  {'target':>9}  result")
    print("-" * len(head))
    print(head)
    print("-" * len(head))
    for r in results:
        spread = f"{min(r.ratios):.2f}-{max(r.ratios):.2f}"
        ok = "PASS" if r.ratio >= r.target else "MISS"
        print(f"{r.label:<{width}}  {r.bare_rps:>9.0f}  {r.wrapped_rps:>9.0f}  "
              f"{r.ratio:>6.3f}x  {spread:>15}  >= {r.target:.2f}x  {ok}")
    print("-" * len(head))
    print(f"{sum(r.ratio >= r.target for r in results)}/{len(results)} targets met; "
          f"{sum(r.requests for r in results)} requests timed; "
          f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
