from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import pytest
from werkzeug.middleware.lint import LintMiddleware
from werkzeug.test import Client

import piimw
from piimw.wsgi import PIIMiddleware

pytestmark = pytest.mark.filterwarnings("error")

SCHEMA_REQ = {"type": "object", "required": ["email"], "properties": {
    "email": {"type": "string", "x-pii": "email"},
    "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}}}}
SCHEMA_RESP = {"type": "object", "properties": {
    "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}}}}


@pytest.fixture
def config(tmp_path: Any) -> piimw.Config:
    (tmp_path / "req.json").write_bytes(orjson.dumps(SCHEMA_REQ))
    (tmp_path / "resp.json").write_bytes(orjson.dumps(SCHEMA_RESP))
    return piimw.Config.from_dict({"routes": [
        {"route": "POST /signup", "request": str(tmp_path / "req.json"),
         "response": str(tmp_path / "resp.json")},
    ]})


class App:
    def __init__(self, body: bytes = b"", status: str = "200 OK",
                 ctype: str = "application/json", use_write: bool = False) -> None:
        self.body, self.status, self.ctype, self.use_write = body, status, ctype, use_write
        self.received = b""
        self.closed = False

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        n = int(environ.get("CONTENT_LENGTH") or 0)
        self.received = environ["wsgi.input"].read(n) if n else b""
        write = start_response(self.status, [("Content-Type", self.ctype),
                                             ("Content-Length", str(len(self.body)))])
        if self.use_write:
            write(self.body)
            return self._closing([])
        return self._closing([self.body])

    def _closing(self, chunks: list[bytes]) -> Iterable[bytes]:
        app = self

        class It:
            def __iter__(self) -> Any:
                return iter(chunks)

            def close(self) -> None:
                app.closed = True

        return It()


class ClosingClient(Client):
    """Buffers and closes every response, as a WSGI server must (PEP 3333)."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture(autouse=True)
def _no_exchange_left_behind() -> Any:
    yield
    assert piimw.current() is None


def client(app: Any, config: piimw.Config) -> Client:
    return ClosingClient(LintMiddleware(PIIMiddleware(LintMiddleware(app), config)))


def test_request_and_response(config: piimw.Config) -> None:
    app = App(orjson.dumps({"email": "jane@example.com"}))
    r = client(app, config).post("/signup", json={"email": "jane@example.com",
                                                  "phone": "+14155550100"},
                                 headers={"Sec-GPC": "1"})
    assert r.status_code == 200
    assert orjson.loads(app.received) == {"email": "jane@example.com"}
    assert r.get_json() == {"email": "j***@example.com"}
    assert r.headers["Content-Length"] == str(len(r.data))
    assert app.closed


def test_write_callable_is_buffered(config: piimw.Config) -> None:
    app = App(orjson.dumps({"email": "jane@example.com"}), use_write=True)
    r = client(app, config).post("/signup", json={"email": "jane@example.com"})
    assert r.get_json() == {"email": "j***@example.com"}


def test_problem_on_invalid(config: piimw.Config) -> None:
    app = App()
    r = client(app, config).post("/signup", json={"phone": "secret-555"})
    assert r.status_code == 422
    assert b"secret-555" not in r.data
    assert r.headers["Content-Type"] == "application/problem+json"


def test_passthrough_streams(config: piimw.Config) -> None:
    app = App(b"hello", ctype="text/plain")
    r = client(app, config).get("/other")
    assert r.data == b"hello"
    assert app.closed


def test_error_page_scrubbed(config: piimw.Config) -> None:
    def boom(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        email = orjson.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))["email"]
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [f"duplicate key {email}".encode()]

    r = client(boom, config).post("/signup", json={"email": "jane.q@example.com"})
    assert r.status_code == 500
    assert b"jane.q" not in r.data


def test_exc_info_start_response(config: piimw.Config) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        try:
            raise ValueError("x")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"failed for jane@example.com"]

    r = ClosingClient(PIIMiddleware(app, config)).post("/signup",
                                                       json={"email": "jane@example.com"})
    assert r.status_code == 500
    assert b"jane@" not in r.data


def test_too_large(config: piimw.Config) -> None:
    config.max_body_bytes = 10
    r = client(App(), config).post("/signup", input_stream=io.BytesIO(b"x" * 50),
                                   content_type="application/json",
                                   headers={"Content-Length": "50"})
    assert r.status_code == 413


def test_pep_3333_error_path_under_wsgiref(config: piimw.Config) -> None:
    """An app that starts a response, fails, and calls ``start_response`` again with
    ``exc_info`` before returning (PEP 3333): piimw held the second call and then called the
    server without ``exc_info``; wsgiref raised "Headers already set!" and sent its own page
    instead of the app's (found by review). The error page is still scrubbed."""
    import sys
    from wsgiref.handlers import SimpleHandler
    from wsgiref.util import setup_testing_defaults

    email = "jane.doe@example.com"

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("db down")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [f"lookup failed for {email}".encode()]

    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": "/elsewhere"}
    setup_testing_defaults(environ)
    out, errors = io.BytesIO(), io.StringIO()
    SimpleHandler(io.BytesIO(), out, errors, environ, multithread=False).run(
        PIIMiddleware(app, config))
    head, _, body = out.getvalue().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 500")
    assert body.startswith(b"lookup failed for ")
    assert email.encode() not in body
    assert "Headers already set" not in errors.getvalue()


@pytest.mark.parametrize(("path", "status", "content_type", "body"), [
    ("/signup", "200 OK", "application/json", b'{"email": "zed@example.com"}'),  # planned
    ("/elsewhere", "404 Not Found", "text/plain", b"no account for zed@example.com"),  # error
    ("/elsewhere", "200 OK", "text/plain", b"hello"),  # passed through
])
def test_an_app_that_starts_its_response_lazily(config: piimw.Config, path: str, status: str,
                                                 content_type: str, body: bytes) -> None:
    """A generator app calls ``start_response`` on its first iteration (PEP 3333 allows it
    until the first body bytes). A response piimw held was never started: the server failed
    (found while reviewing the error path above)."""
    from wsgiref.handlers import SimpleHandler
    from wsgiref.util import setup_testing_defaults

    closed: list[bool] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            start_response(status, [("Content-Type", content_type)])
            yield body[:5]
            yield body[5:]
        finally:
            closed.append(True)

    payload = b'{"email": "zed@example.com"}'
    environ: dict[str, Any] = {"REQUEST_METHOD": "POST" if path == "/signup" else "GET",
                               "PATH_INFO": path, "CONTENT_TYPE": "application/json",
                               "CONTENT_LENGTH": str(len(payload))}
    setup_testing_defaults(environ)
    out, errors = io.BytesIO(), io.StringIO()
    SimpleHandler(io.BytesIO(payload), out, errors, environ, multithread=False).run(
        PIIMiddleware(app, config))
    head, _, sent = out.getvalue().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 " + status.split()[0].encode()), errors.getvalue()
    assert b"zed@example.com" not in sent
    if body == b"hello":
        assert sent == body
    assert closed == [True]


def test_reading_ahead_for_a_lazy_start_stops_at_body_bytes(config: piimw.Config) -> None:
    """An app that yields body bytes and never calls start_response was read whole, in
    memory, before the server could fail; an app failing while read ahead was not closed
    (review of the lazy start above)."""
    produced: list[int] = []
    closed: list[bool] = []

    def endless(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            while True:
                produced.append(1)
                yield b"x" * 1024
        finally:
            closed.append(True)

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/elsewhere", "wsgi.input": io.BytesIO()}
    result = PIIMiddleware(endless, config)(environ, lambda *a: None)
    assert len(produced) == 1
    result.close()  # type: ignore[attr-defined]
    assert closed == [True]

    class Failing:
        """Not a generator (whose own ``finally`` would run anyway): only ``close()`` tells
        whether the iterable was closed."""

        def __iter__(self) -> Iterator[bytes]:
            return self

        def __next__(self) -> bytes:
            raise RuntimeError("db went away")

        def close(self) -> None:
            closed.append(True)

    with pytest.raises(RuntimeError):
        PIIMiddleware(lambda environ, start_response: Failing(), config)(
            environ, lambda *a: None)
    assert closed == [True, True]


@pytest.mark.parametrize("path", ["/privacy/preferences", "/signup"])
def test_a_content_length_of_digits_python_reads_but_int_refuses(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the opt-out API answered with a
    traceback under wsgiref and Werkzeug's server (found by review). Such a length counts
    as none: nothing is read for the API, and a planned route reads what the app would."""
    monkeypatch.setenv("PIIMW_TEST_HASH_KEY", "a-key-of-at-least-16-bytes")
    (tmp_path / "req.json").write_bytes(orjson.dumps(SCHEMA_REQ))
    config = piimw.Config.from_dict({
        "routes": [{"route": "POST /signup", "request": str(tmp_path / "req.json")}],
        "hash": {"key_env": "PIIMW_TEST_HASH_KEY"},
        "registry": {"url": "memory://content-length", "api": {"path": "/privacy/preferences"}},
    })
    app = App(body=b"{}")
    environ = {"REQUEST_METHOD": "PUT" if path.startswith("/privacy") else "POST",
               "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": "\u00b2",
               "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(b'{"a":1}'),
               "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
               "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False}
    statuses: list[str] = []
    out = PIIMiddleware(app, config)(environ, lambda s, h, e=None: statuses.append(s))
    b"".join(out)
    getattr(out, "close", lambda: None)()
    assert statuses
    assert not statuses[0].startswith("500")
    assert app.received == b""
