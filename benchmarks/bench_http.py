"""HTTP throughput with and without piimw, real servers on 127.0.0.1: ``bench_http.py [--quick]``.

Rows (targets from the performance issue), each the wrapped server's requests/s over the bare
server's, measured in the same run, and set against the issue's reference for that row, also
measured in the same run:

* Starlette under uvicorn (one process), 2 KB JSON POSTed and echoed, route without a plan:
  ``PIIMiddleware`` must pass it through (>= 0.98x bare).
* The same app, route with a plan: the request is parsed, validated and its tagged values
  remembered; the response is validated, scrubbed (email and card masked by the schema's
  action) and scanned for undeclared PII (>= 0.85x bare).
* Flask under gunicorn (sync worker, 1 worker), route with a plan, ``PIIMW(app)`` (>= 0.90x).
* Django under gunicorn (the same), route with a plan, ``PIIMiddleware`` as the only entry in
  ``MIDDLEWARE`` (the issue sets no target: the row is for sizing workers).

References (the issue measured each on a machine of its own; here they run in the same run as
the bare and piimw servers). They are small middlewares defined in this file, not piimw code:

* ``RefASGI`` on the Starlette app. For ``/plain`` it is a pure-ASGI pass-through (issue:
  0.99x bare); for ``/orders`` it buffers the request body, ``orjson.loads`` + ``dumps`` it,
  replays it, buffers the response, ``loads`` + ``dumps`` it and fixes Content-Length
  ("buffer + re-serialize", issue: 0.88x bare).
* ``RefWSGI`` on the Flask app (``app.wsgi_app``) and around Django's WSGI handler. For
  ``/orders`` it buffers the request and the response and scrubs both naively in pure
  Python (the values of keys named email, card, phone, name become "[redacted]") between
  ``orjson.loads`` and ``dumps`` ("buffer + naive scrub", issue: 0.84x bare, for Flask).

Method: the bare, the piimw and the reference server of a group run side by side (same app,
same handlers; only the middleware differs; ``PIIMW_BENCH_WRAP`` = bare / piimw / ref) and are
loaded one after the other in rounds, the order rotated each round (B P R, P R B, R B P, ...)
so that drift on a shared machine hits all alike; each ratio (piimw/bare, ref/bare, piimw/ref)
is the median of the per-round ratios. PASS/MISS is piimw/bare against the issue's target.
``--floor``: the references of the planned rows also validate and run the detector program
(:class:`Floor`), which bounds what any inspector with these checks can reach.
Default: 9 rounds x 3 s per row (each server in each position three times; about 4.5 minutes in
all); ``--quick``: 6 rounds x 1 s (about 1 to 1.5 minutes). The servers are
pinned to CPU 0 and the load generator to CPU 1 (``taskset``) when there are two CPUs or more.
``--instructions``: the same servers under valgrind's callgrind, counting instructions per
request instead of requests per second (:mod:`callgrind`; the WSGI apps on ``wsgiref``, where
this mode also counts their route without a plan).
``--cookie``: every request, to every server, carries what a signed-in browser sends
(:data:`BROWSER_COOKIE`); the default requests carry no cookie. ``--gpc``: every request
carries ``Sec-GPC: 1`` (Global Privacy Control, sent by Firefox, Brave and DuckDuckGo when it
is switched on); the default requests carry no signal.
Load: ``wrk`` (Debian package) if installed, else this file's own asyncio load generator
(raw sockets, keep-alive, fixed duration). Before timing, every route is checked over HTTP:
the bare and wrapped echo are byte-identical without a plan; with a plan the wrapped response
has the email and card masked (the bare one has them raw) and an invalid body is refused with
422. The reference server answers 200 with JSON on both routes (the Starlette one echoes
``/plain`` byte-identical and ``/orders`` with the same JSON; the Flask one has the email and
card redacted). Access logs are off everywhere (piimw's log filter is measured by ``run.py``).
Servers are started in their own process groups and killed on exit, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import io
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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import callgrind

from piimw._process import free_port, stop_group

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
HOST = "127.0.0.1"
WRAP_ENV = "PIIMW_BENCH_WRAP"
SETTINGS_ENV = "PIIMW_BENCH_SETTINGS"  # piimw settings (JSON) for the piimw servers
FLOOR_ENV = "PIIMW_BENCH_FLOOR"  # "1": the reference servers also validate and detect
COOKIE_ENV = "PIIMW_BENCH_COOKIE"  # set by --cookie: every request sends BROWSER_COOKIE
GPC_ENV = "PIIMW_BENCH_GPC"  # set by --gpc: every request sends Sec-GPC: 1
#: What a signed-in browser sends to most sites: a session, a CSRF token, an analytics id.
#: None of them is a consent signal (no ``usprivacy`` cookie): requests still pass through.
BROWSER_COOKIE = ("sessionid=q8w7e6r5t4y3u2i1o0p9a8s7d6f5g4h3; csrftoken=Zx81Kq0Lw2Pn3Rt4Yv5Bm6"
                  "Nc7Xd8Ef9Gh0; _ga=GA1.1.1234567890.1764300000")


def request_headers() -> dict[str, str]:
    """Headers every request of this run sends (load generators, checks, callgrind)."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get(COOKIE_ENV):
        headers["Cookie"] = BROWSER_COOKIE
    if os.environ.get(GPC_ENV):
        headers["Sec-GPC"] = "1"
    return headers


def _headers_label() -> str:
    """What every request carries besides the body, for the run's heading."""
    extra = [label for env, label in ((COOKIE_ENV, "a browser's Cookie header"),
                                      (GPC_ENV, "Sec-GPC: 1")) if os.environ.get(env)]
    return f", every request with {' and '.join(extra)}" if extra else ""


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

    settings = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    return piimw.Config.from_dict(settings, source="<bench_http>",
                                  openapi_documents={"<bench_http openapi>": openapi()})


def _answer(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": 1, "status": "created", **data}


MODES = ("bare", "piimw", "ref")


def _mode() -> str:
    mode = os.environ.get(WRAP_ENV, "bare")
    if mode not in MODES:
        raise SystemExit(f"{WRAP_ENV}={mode!r}: expected one of {', '.join(MODES)}")
    return mode


class Floor:
    """``--floor``: the native work any inspector with piimw's checks must do, added to the
    references: jsonschema-rs validation of the request and the response, and one pass of
    piimw's compiled detector program (RE2) over the untagged part of each (the line items).
    No Python walk, no known values, no policy: what is left once every line of Python an
    inspector adds costs nothing. A reference whose floor already misses a target shows that
    no pure-Python, or thin-Python, design can meet it with these checks on.
    """

    def __init__(self, *, response_formats: bool = True) -> None:
        import jsonschema_rs

        from piimw.detect import default_detectors

        schemas = openapi()["components"]["schemas"]
        # Formats asserted, as piimw asserts them (jsonschema-rs only annotates by default).
        # ``response_formats=False`` where the reference's naive scrub has already replaced
        # the email the app echoes (WSGI): "[redacted]" is not an email address.
        self.request = jsonschema_rs.validator_for(schemas["Order"], validate_formats=True)
        self.response = jsonschema_rs.validator_for(schemas["OrderOut"],
                                                    validate_formats=response_formats)
        self.search = default_detectors().search_utf8

    def check(self, doc: Any, *, response: bool) -> None:
        import orjson

        validator = self.response if response else self.request
        if not validator.is_valid(doc) or self.search(orjson.dumps(doc["items"])):
            raise RuntimeError("floor: the benchmark document is invalid or holds PII")


def _floor(*, response_formats: bool = True) -> Floor | None:
    if os.environ.get(FLOOR_ENV) != "1":
        return None
    return Floor(response_formats=response_formats)


# -- the issue's references (NOT piimw code) --------------------------------------------------
class RefASGI:
    """Reference for the Starlette rows; deliberately minimal, not piimw code.

    Paths other than ``/orders``: a pure-ASGI pass-through ("pure-ASGI pass-through").
    ``/orders``: buffer the request body, ``orjson.loads`` + ``dumps``, replay it to the app;
    hold the response start, buffer the body, ``loads`` + ``dumps``, fix Content-Length, send
    ("buffer + re-serialize"). A body that is not JSON is an error (500): a reference only.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.floor = _floor()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/orders":
            await self.app(scope, receive, send)
            return
        import orjson

        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client gone
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        doc = orjson.loads(raw)
        if self.floor is not None:
            self.floor.check(doc, response=False)
        data = orjson.dumps(doc)
        if len(data) != len(raw):
            scope = {**scope, "headers": [
                *((k, v) for k, v in scope["headers"] if k != b"content-length"),
                (b"content-length", str(len(data)).encode())]}
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": data, "more_body": False}

        start: dict[str, Any] = {}
        out: list[bytes] = []

        async def buffer(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
                if not message.get("more_body", False):
                    answer = orjson.loads(b"".join(out))
                    if self.floor is not None:
                        self.floor.check(answer, response=True)
                    new = orjson.dumps(answer)
                    headers = [(k, v) for k, v in start.get("headers", [])
                               if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(new)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": new})
            else:
                await send(message)

        await self.app(scope, replay, buffer)


NAIVE_KEYS = frozenset({"email", "card", "phone", "name"})


def naive_scrub(doc: Any) -> Any:
    """The naive scrub of the Flask reference: redact the values of well-known keys, recursively."""
    if isinstance(doc, dict):
        return {k: "[redacted]" if k in NAIVE_KEYS else naive_scrub(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [naive_scrub(v) for v in doc]
    return doc


class RefWSGI:
    """Reference for the Flask row ("buffer + naive scrub"); deliberately minimal, not piimw code.

    ``/orders``: read ``wsgi.input`` fully, ``orjson.loads``, :func:`naive_scrub`, ``dumps``,
    new CONTENT_LENGTH and ``wsgi.input``; buffer the response body, the same naive scrub, fix
    Content-Length. Other paths pass through. A body that is not JSON is an error: a reference.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.floor = _floor(response_formats=False)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/orders":
            return self.app(environ, start_response)
        import orjson

        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        doc = orjson.loads(raw)
        if self.floor is not None:
            self.floor.check(doc, response=False)
        data = orjson.dumps(naive_scrub(doc))
        environ["CONTENT_LENGTH"] = str(len(data))
        environ["wsgi.input"] = io.BytesIO(data)
        held: list[Any] = []
        written: list[bytes] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            held[:] = [status, headers, exc_info]
            return written.append

        result = self.app(environ, hold)
        try:
            written.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers, exc_info = held
        answer = orjson.loads(b"".join(written))
        if self.floor is not None:
            self.floor.check(answer, response=True)
        new = orjson.dumps(naive_scrub(answer))
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(new))))
        start_response(status, headers, exc_info)
        return [new]


def starlette_app() -> Any:
    """uvicorn factory (``--factory``): bare, ``PIIMiddleware`` or ``RefASGI`` (by WRAP_ENV)."""
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
    if _mode() == "piimw":
        from piimw.contrib.starlette import PIIMiddleware

        middleware.append(Middleware(PIIMiddleware, config=_config()))
    elif _mode() == "ref":
        middleware.append(Middleware(RefASGI))
    return Starlette(routes=[Route("/plain", plain, methods=["POST"]),
                             Route("/orders", orders, methods=["POST"])],
                     middleware=middleware)


def flask_app() -> Any:
    """gunicorn factory (``bench_http:flask_app()``): bare, ``PIIMW(app)`` or ``RefWSGI``."""
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

    if _mode() == "piimw":
        from piimw.contrib.flask import PIIMW

        PIIMW(app, _config())
    elif _mode() == "ref":
        app.wsgi_app = RefWSGI(app.wsgi_app)  # type: ignore[method-assign]
    return app


def django_app() -> Any:
    """gunicorn factory (``bench_http:django_app()``): a Django project in one function, with
    no middleware but piimw's (bare: none; ref: ``RefWSGI`` around Django's WSGI handler)."""
    import orjson
    from django.conf import settings  # type: ignore[import-untyped]
    from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]
    from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
    from django.urls import path  # type: ignore[import-untyped]

    def plain(request: HttpRequest) -> HttpResponse:
        return HttpResponse(orjson.dumps(orjson.loads(request.body)),
                            content_type="application/json")

    def orders(request: HttpRequest) -> HttpResponse:
        return HttpResponse(orjson.dumps(_answer(orjson.loads(request.body))),
                            content_type="application/json")

    class URLConf:  # ROOT_URLCONF may be any hashable object with urlpatterns
        urlpatterns = [path("plain", plain), path("orders", orders)]

    mode = _mode()
    settings.configure(
        DEBUG=False, SECRET_KEY="bench-only", ALLOWED_HOSTS=["*"], USE_TZ=True,
        INSTALLED_APPS=[], DATABASES={}, LOGGING_CONFIG=None,
        ROOT_URLCONF=URLConf,
        MIDDLEWARE=["piimw.contrib.django.PIIMiddleware"] if mode == "piimw" else [],
        PIIMW=_config() if mode == "piimw" else None,
    )
    app = get_wsgi_application()
    return RefWSGI(app) if mode == "ref" else app


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


def _pin(cpu: int | None) -> list[str]:
    if cpu is None:
        return []
    return ["taskset", "-c", str(cpu)]


@contextmanager
def server(name: str, kind: str, mode: str, cpu: int | None, tmp: Path, *,
           wrap: list[str] | None = None, start_timeout: float = 30.0) -> Iterator[Server]:
    """Start one server (own process group), wait until it answers, kill it on exit.

    ``wrap`` prefixes the command (``--instructions``: valgrind); the WSGI apps then run on
    :func:`serve_wsgi` instead of gunicorn.
    """
    port = free_port()
    if kind == "uvicorn":
        cmd = [sys.executable, "-m", "uvicorn", "bench_http:starlette_app", "--factory",
               "--app-dir", str(HERE), "--host", HOST, "--port", str(port),
               "--no-access-log", "--log-level", "warning", "--lifespan", "off"]
    elif wrap:  # "flask" or "django" under callgrind: one process (see serve_wsgi)
        cmd = [sys.executable, __file__, "--serve-wsgi", kind, str(port)]
    else:  # gunicorn: "flask" or "django"
        cmd = [sys.executable, "-m", "gunicorn", "--chdir", str(HERE), "-k", "sync", "-w", "1",
               "-b", f"{HOST}:{port}", "--log-level", "warning", f"bench_http:{kind}_app()"]
    env = dict(os.environ)
    env[WRAP_ENV] = mode
    if wrap:
        env.update(callgrind.ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(REPO),
                                                      env.get("PYTHONPATH")]))
    log = tmp / f"{name.replace(' ', '_')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*_pin(cpu), *(wrap or ()), *cmd], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=HERE, env=env)
    srv = Server(name, port, proc, log)
    try:
        deadline = time.monotonic() + start_timeout
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


def serve_wsgi(kind: str, port: int) -> None:
    """``--instructions`` WSGI server: the standard library's, in one process.

    gunicorn's worker is a forked child, which ``callgrind_control`` cannot reach (it sees
    only the process valgrind started). ``wsgiref`` serves like gunicorn's sync worker, one
    request per connection, one at a time, but in the process valgrind started.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    app = flask_app() if kind == "flask" else django_app()
    with make_server(HOST, port, app, handler_class=Quiet) as httpd:
        httpd.serve_forever(poll_interval=0.1)  # wakes to act on callgrind_control's commands


def post(url: str, data: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method="POST", headers=request_headers())
    try:  # generous: under valgrind (--instructions) the first requests take seconds
        with urllib.request.urlopen(req, timeout=120) as r:
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


def check_ref(bare: Server, ref: Server, paths: list[str], payload: bytes, *,
              scrubs: bool) -> None:
    """The reference answers 200 with JSON on both routes, and does its work on ``/orders``."""
    for path in paths:
        sb, bb = post(bare.url + path, payload)
        sr, br = post(ref.url + path, payload)
        assert sb == sr == 200, (path, sb, sr, br[:300])
        doc = json.loads(br)
        if path == "/plain":
            assert br == bb, "reference changed the route it passes through"
        elif scrubs:
            assert EMAIL.encode() not in br, "reference not scrubbing"
            assert CARD.encode() not in br, "reference not scrubbing"
            assert doc["customer"]["email"] == doc["card"] == "[redacted]", doc
        else:
            assert doc == json.loads(bb), "reference re-serialization changed the document"


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
    headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in request_headers().items())
    script.write_text('wrk.method = "POST"\n' + headers + f"wrk.body = [==[{text}]==]\n",
                      "utf-8")
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
    headers = "".join(f"{k}: {v}\r\n" for k, v in request_headers().items())
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{headers}"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
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
class Reference:
    name: str
    issue_ratio: float  # what the issue measured for it, on a machine of its own


PASS_THROUGH = Reference("pure-ASGI pass-through (RefASGI)", 0.99)
RESERIALIZE = Reference("buffer + re-serialize (RefASGI)", 0.88)
NAIVE_SCRUB = Reference("buffer + naive scrub (RefWSGI)", 0.84)
NAIVE_SCRUB_DJANGO = Reference("buffer + naive scrub (RefWSGI around Django's handler)", 0.0)
#: ``--instructions`` only: the WSGI apps' route without a plan (the issue has no such row).
WSGI_PASS_THROUGH = Reference("pure-WSGI pass-through (RefWSGI)", 0.0)


def with_floor(reference: Reference) -> Reference:
    """The same reference run with ``--floor`` (the issue has no figure for it)."""
    return Reference(reference.name + " + jsonschema-rs + RE2 detection (--floor)", 0.0)
ROW_NAMES = ("plain", "orders", "flask", "django")
#: (row, label, path, reference, target) of the Starlette group (one set of servers).
STARLETTE_ROWS = (("plain", "Starlette/uvicorn, route without a plan", "/plain", PASS_THROUGH,
                   0.98),
                  ("orders", "Starlette/uvicorn, route with a plan", "/orders", RESERIALIZE,
                   0.85))
#: WSGI rows under gunicorn: the issue sets a target for Flask; Django's is for sizing (0: none).
WSGI_ROWS = (("flask", "Flask/gunicorn sync x1", NAIVE_SCRUB, 0.90),
             ("django", "Django/gunicorn sync x1", NAIVE_SCRUB_DJANGO, 0.0))


@dataclass
class Result:
    label: str
    reference: Reference
    bare_rps: float
    wrapped_rps: float
    ref_rps: float
    ratio: float  # piimw / bare, median of the rounds
    ratios: list[float]
    ref_ratio: float  # reference / bare
    vs_ref: float  # piimw / reference
    target: float  # 0: the issue sets none (the row is for sizing)
    requests: int

    @property
    def verdict(self) -> tuple[str, str]:
        """(target, result) columns."""
        if not self.target:
            return "-", "-"
        return f">= {self.target:.2f}x", "PASS" if self.ratio >= self.target else "MISS"


def compare(label: str, bare: Server, wrapped: Server, ref: Server, path: str, *,
            reference: Reference, rounds: int, seconds: float, connections: int,
            target: float, load: Any) -> Result:
    """Three servers in rotation (BPR, PRB, RBP, ...) after one warm-up run each; medians of
    the per-round ratios."""
    servers = [bare, wrapped, ref]
    for srv in servers:
        load(srv.url + path, 1.0, connections)
    rps: dict[str, list[float]] = {srv.name: [] for srv in servers}
    total = 0
    for r in range(rounds):
        shift = r % len(servers)
        for srv in servers[shift:] + servers[:shift]:
            res: Load = load(srv.url + path, seconds, connections)
            if res.non2xx or res.requests == 0:
                raise RuntimeError(f"{label}: {srv.name} answered {res.non2xx} non-2xx of "
                                   f"{res.requests}\n{srv.output()[-2000:]}")
            total += res.requests
            rps[srv.name].append(res.rps)
        print(f"  {label} round {r + 1}/{rounds}: bare {rps[bare.name][-1]:6.0f} rps, "
              f"piimw {rps[wrapped.name][-1]:6.0f} rps, ref {rps[ref.name][-1]:6.0f} rps",
              file=sys.stderr, flush=True)
    b, w, f = rps[bare.name], rps[wrapped.name], rps[ref.name]
    ratios = [x / y for x, y in zip(w, b, strict=True)]
    med = statistics.median
    return Result(label, reference, med(b), med(w), med(f), med(ratios), ratios,
                  med([x / y for x, y in zip(f, b, strict=True)]),
                  med([x / y for x, y in zip(w, f, strict=True)]), target, total)


@dataclass
class Count:
    label: str
    reference: Reference
    bare: float  # instructions per request
    wrapped: float
    ref: float
    target: float

    @property
    def ratio(self) -> float:
        """Throughput piimw/bare if time followed instructions: bare / piimw."""
        return self.bare / self.wrapped


def count_instructions(rows: set[str], payload: bytes, tmp: Path, *, requests: int,
                       warmup: int) -> list[Count]:
    """``--instructions``: each group's three servers under callgrind, counted in parallel."""
    groups: list[tuple[str, str, list[tuple[str, str, Reference, float]]]] = []
    starlette = [(label, path, reference, target)
                 for row, label, path, reference, target in STARLETTE_ROWS if row in rows]
    if starlette:
        groups.append(("uvicorn", "starlette", starlette))
    for kind, label, reference, target in WSGI_ROWS:
        if kind in rows:
            framework = label.split("/", 1)[0]  # served by wsgiref here: see serve_wsgi
            groups.append((kind, kind, [
                (f"{framework}/wsgiref, route without a plan", "/plain", WSGI_PASS_THROUGH, 0.0),
                (f"{framework}/wsgiref, route with a plan", "/orders", reference, target)]))
    counts: list[Count] = []
    for kind, name, measures in groups:
        outs = {mode: tmp / f"cg-{name}-{mode}" for mode in MODES}
        with ExitStack() as stack:
            bare, wrapped, ref = (
                stack.enter_context(server(f"{name} {mode}", kind, mode, None, tmp,
                                           wrap=callgrind.wrapper(outs[mode]),
                                           start_timeout=600))
                for mode in MODES)
            print(f"  {name}: servers up under callgrind, checking the work is done",
                  file=sys.stderr, flush=True)
            check(bare, wrapped, ["/plain", "/orders"], payload)
            check_ref(bare, ref, ["/plain", "/orders"], payload, scrubs=kind != "uvicorn")
            for label, path, reference, target in measures:
                servers = {"bare": bare, "piimw": wrapped, "ref": ref}
                with ThreadPoolExecutor(len(MODES)) as pool:
                    futures = {mode: pool.submit(
                        callgrind.per_request, outs[mode], srv.process.pid, HOST, srv.port,
                        path, payload, warmup=warmup, requests=requests,
                        headers=request_headers())
                        for mode, srv in servers.items()}
                    got = {mode: future.result() for mode, future in futures.items()}
                print(f"  {label}: bare {got['bare']:,.0f}, piimw {got['piimw']:,.0f}, "
                      f"ref {got['ref']:,.0f} instructions/request", file=sys.stderr,
                      flush=True)
                counts.append(Count(label, reference, got["bare"], got["piimw"], got["ref"],
                                    target))
    return counts


def print_counts(counts: list[Count], requests: int) -> None:
    width = max(len(c.label) for c in counts)
    head = (f"{'row':<{width}}  {'bare instr':>10}  {'piimw instr':>11}  {'extra':>8}  "
            f"{'ref instr':>10}  {'bare/piimw':>10}  {'bare/ref':>8}  {'target':>9}  result")
    print("-" * len(head))
    print(head)
    print("-" * len(head))
    for c in counts:
        goal, ok = ("-", "-") if not c.target else (
            f">= {c.target:.2f}x", "PASS" if c.ratio >= c.target else "MISS")
        print(f"{c.label:<{width}}  {c.bare:>10,.0f}  {c.wrapped:>11,.0f}  "
              f"{c.wrapped - c.bare:>8,.0f}  {c.ref:>10,.0f}  {c.ratio:>9.3f}x  "
              f"{c.bare / c.ref:>7.3f}x  {goal:>9}  {ok}")
    print("-" * len(head))
    print(f"user-space instructions per request (callgrind), mean of {requests} sequential "
          "requests after a warm-up.\n'extra' is piimw's own cost (within a few thousand "
          "instructions from run to run: the servers'\ntimers tick by the wall clock). "
          "bare/piimw would be the throughput ratio if time followed\ninstructions. It is "
          "not a bound: the kernel's share of each request (sockets, connections;\nthe same "
          "for all three servers) is not counted, nor are cache misses; the first raises "
          "the real\nratio, the second lowers it (benchmarks/README.md).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 rounds of 1 s per row")
    ap.add_argument("--rounds", type=int, help="rounds per row (default 9, quick 6)")
    ap.add_argument("--seconds", type=float, help="seconds per run (default 3, quick 1)")
    ap.add_argument("--loadgen", nargs=4, metavar=("URL", "SECONDS", "CONNS", "BODY"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--no-pin", action="store_true",
                    help="do not pin servers and load generator to separate CPUs")
    ap.add_argument("--row", action="append", choices=ROW_NAMES,
                    help="run only this row (repeatable; default: all four)")
    ap.add_argument("--settings", metavar="JSON",
                    help='piimw settings for the piimw servers, e.g. \'{"detect_undeclared": '
                         'false}\' (default: none, the defaults)')
    ap.add_argument("--floor", action="store_true",
                    help="the references of the planned rows also validate (jsonschema-rs) "
                         "and run the detector program: the native floor of any inspector "
                         "with these checks")
    ap.add_argument("--instructions", action="store_true",
                    help="instead of requests/s, count instructions per request under "
                         "valgrind's callgrind (not moved by a noisy machine; about 4 "
                         "minutes)")
    ap.add_argument("--requests", type=int, default=300,
                    help="--instructions: requests counted per server (default 300)")
    ap.add_argument("--serve-wsgi", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    ap.add_argument("--cookie", action="store_true",
                    help="every request (to every server) sends a browser's Cookie header "
                         "(session, CSRF token, analytics id; no consent cookie)")
    ap.add_argument("--gpc", action="store_true",
                    help="every request (to every server) sends Sec-GPC: 1")
    ap.add_argument("--python-load", action="store_true",
                    help="use the built-in asyncio load generator even if wrk is installed")
    args = ap.parse_args()
    if args.serve_wsgi:
        serve_wsgi(args.serve_wsgi[0], int(args.serve_wsgi[1]))
        return
    if args.loadgen:
        url, seconds, conns, path = args.loadgen
        loadgen_main(url, float(seconds), int(conns), path)
        return
    rows = set(args.row or ROW_NAMES)
    if args.settings:
        json.loads(args.settings)  # fail here, not in three servers
        os.environ[SETTINGS_ENV] = args.settings
    if args.floor:
        os.environ[FLOOR_ENV] = "1"
    if args.cookie:
        os.environ[COOKIE_ENV] = "1"
    if args.gpc:
        os.environ[GPC_ENV] = "1"
    rounds = args.rounds or (6 if args.quick else 9)
    seconds = args.seconds or (1.0 if args.quick else 3.0)
    cpus = os.cpu_count() or 1
    pinned = cpus >= 2 and shutil.which("taskset") is not None and not args.no_pin
    server_cpu, load_cpu = (0, 1) if pinned else (None, None)
    wrk = shutil.which("wrk") if not args.python_load else None
    payload = body()
    tmp = Path(tempfile.mkdtemp(prefix="piimw-bench-http-"))
    if args.instructions:
        missing = callgrind.available()
        if missing:
            raise SystemExit(f"--instructions: {missing}")
        print(f"piimw HTTP benchmark, instructions per request under callgrind: {len(payload)} "
              f"B JSON bodies, {args.requests} requests per server after a warm-up"
              + _headers_label(),
              flush=True)
        started = time.perf_counter()
        try:
            counts = count_instructions(rows, payload, tmp, requests=args.requests,
                                        warmup=max(50, args.requests // 2))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print_counts(counts, args.requests)
        print(f"wall time {time.perf_counter() - started:.0f} s")
        return

    def load(url: str, secs: float, conns: int) -> Load:
        if wrk is not None:
            return run_wrk(url, secs, conns, script, load_cpu)
        return run_pyload(url, secs, conns, payload, load_cpu)

    script = _wrk_script(tmp, payload)
    generator = "wrk 4 (1 thread)" if wrk else "asyncio load generator (keep-alive)"
    print(f"piimw HTTP benchmark: {len(payload)} B JSON bodies, {generator}, "
          f"{rounds} rounds (bare/piimw/reference rotated) x {seconds:g} s per row, "
          + (f"servers on CPU {server_cpu}, load on CPU {load_cpu}" if pinned
             else "not pinned")
          + _headers_label(),
          flush=True)
    if args.settings:
        print(f"piimw settings: {args.settings}", flush=True)
    results: list[Result] = []
    started = time.perf_counter()
    try:
        if rows & {"plain", "orders"}:
            with ExitStack() as stack:
                bare, wrapped, ref = (
                    stack.enter_context(server(f"starlette {mode}", "uvicorn", mode,
                                               server_cpu, tmp))
                    for mode in MODES)
                check(bare, wrapped, ["/plain", "/orders"], payload)
                check_ref(bare, ref, ["/plain", "/orders"], payload, scrubs=False)
                for row, label, path, reference, target in STARLETTE_ROWS:
                    if row in rows:
                        results.append(compare(
                            label, bare, wrapped, ref, path,
                            reference=with_floor(reference) if args.floor and
                            path == "/orders" else reference,
                            rounds=rounds, seconds=seconds, connections=8, target=target,
                            load=load))
        for kind, label, reference, target in WSGI_ROWS:
            if kind not in rows:
                continue
            with ExitStack() as stack:
                bare, wrapped, ref = (
                    stack.enter_context(server(f"{kind} {mode}", kind, mode, server_cpu, tmp))
                    for mode in MODES)
                check(bare, wrapped, ["/plain", "/orders"], payload)
                check_ref(bare, ref, ["/plain", "/orders"], payload, scrubs=True)
                results.append(compare(
                    f"{label}, route with a plan", bare, wrapped, ref, "/orders",
                    reference=with_floor(reference) if args.floor else reference,
                    rounds=rounds, seconds=seconds, connections=4, target=target, load=load))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r.label) for r in results)
    head = (f"{'row':<{width}}  {'bare rps':>8}  {'piimw rps':>9}  {'piimw/bare':>10}  "
            f"{'min-max':>9}  {'ref rps':>7}  {'ref/bare':>8}  {'piimw/ref':>9}  "
            f"{'target':>9}  result")
    print("-" * len(head))
    print(head)
    print("-" * len(head))
    for r in results:
        spread = f"{min(r.ratios):.2f}-{max(r.ratios):.2f}"
        goal, ok = r.verdict
        print(f"{r.label:<{width}}  {r.bare_rps:>8.0f}  {r.wrapped_rps:>9.0f}  "
              f"{r.ratio:>9.3f}x  {spread:>9}  {r.ref_rps:>7.0f}  {r.ref_ratio:>7.3f}x  "
              f"{r.vs_ref:>8.3f}x  {goal:>9}  {ok}")
    print("-" * len(head))
    print("references (measured above; the issue's own figure, on its machine, in brackets):")
    for r in results:
        issue = f" [{r.reference.issue_ratio:.2f}x bare]" if r.reference.issue_ratio else ""
        print(f"  {r.label:<{width}}  {r.reference.name}{issue}")
    print("-" * len(head))
    targeted = [r for r in results if r.target]
    print(f"{sum(r.ratio >= r.target for r in targeted)}/{len(targeted)} targets met; "
          f"{sum(r.requests for r in results)} requests timed; "
          f"wall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
