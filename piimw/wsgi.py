"""WSGI middleware (PEP 3333): environ/start_response glue around an Exchange.

Handles ``write()``, ``exc_info`` and ``close()`` of the app's iterable. Responses that need
inspection are buffered (bounded) and the start is held back until the body is decided.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from http import HTTPStatus
from types import TracebackType
from typing import Any

from piimw.bodies import declared_length
from piimw.config import Config
from piimw.consent import Consent
from piimw.exchange import (
    FRAMING_HEADER_NAMES,
    Activation,
    Exchange,
    Headers,
    LineStream,
    end_of_request,
    enter_closable,
    leave,
    leave_closed,
    scans_response_headers,
)
from piimw.optout_api import GPC_JSON_PATH, MAX_BODY, OptOutAPI, gpc_json_response
from piimw.problem import Problem
from piimw.sanitize import on_app_exception
from piimw.signals import ConsentSettings, header_consent, may_hold_source

logger = logging.getLogger("piimw")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def environ_headers(environ: dict[str, Any]) -> Headers:
    """Request headers as ASGI-style lower-case byte pairs."""
    # A comprehension over the environ (servers put two dozen other keys in it) is the
    # cheapest walk; Content-Type and Content-Length have no HTTP_ prefix.
    out: Headers = [(_header_name(k), environ_bytes(v)) for k, v in environ.items()
                    if k[:5] == "HTTP_"]
    for key, name in _UNPREFIXED:
        value = environ.get(key)
        if value:
            out.append((name, environ_bytes(value)))
    return out


_UNPREFIXED = (("CONTENT_TYPE", b"content-type"), ("CONTENT_LENGTH", b"content-length"))


def deferred_headers(environ: dict[str, Any], settings: ConsentSettings,
                     convert: Callable[[dict[str, Any]], Headers] = environ_headers
                     ) -> tuple[Callable[[], Headers], Callable[[], Consent] | None]:
    """The request's headers to convert on first use, and a function that reads the opt-out
    signals among them, for :class:`~piimw.exchange.Exchange` (``headers`` and ``consent``)
    on a request without a plan (a planned one reads its headers at once: call ``convert``
    instead).

    Converting every header costs more than a request passed through costs otherwise (and
    ``wsgiref`` puts the whole process environment into the environ); most requests never
    need them, nor their consent. The consent is read from the consent settings' signal
    headers alone, converted the same way: no function when there is none (a ``Cookie``
    header counts only if it may hold a source cookie:
    :func:`~piimw.signals.may_hold_source`). Both are read from copies, which keeps what the
    app may later change out of them.
    """
    present: dict[str, Any] | None = None
    for key in _environ_keys(settings.signal_headers):
        value = environ.get(key)
        if value is None or (key == "HTTP_COOKIE" and not may_hold_source(
                b"cookie", str(value).encode("latin-1", "replace"), settings.cookie_names)):
            continue
        if present is None:
            present = {}
        present[key] = value
    deferred = partial(convert, environ.copy())
    if present is None:
        return deferred, None
    return deferred, partial(_signal_consent, present, settings, convert)


def _signal_consent(present: dict[str, Any], settings: ConsentSettings,
                    convert: Callable[[dict[str, Any]], Headers]) -> Consent:
    return header_consent(convert(present), settings)


@lru_cache(maxsize=32)
def _environ_keys(names: frozenset[bytes]) -> tuple[str, ...]:
    """The environ keys of these header names (CGI: upper case, ``-`` as ``_``)."""
    unprefixed = {name: key for key, name in _UNPREFIXED}
    return tuple(unprefixed.get(name) or "HTTP_" + name.decode("latin-1").upper().replace(
        "-", "_") for name in sorted(names))


def environ_bytes(value: Any) -> bytes:
    """A header value or query string of a WSGI environ (or Django's ``META``) as bytes.

    PEP 3333 says latin-1; a value outside it (set by a layer that breaks that rule, lone
    surrogates included) is taken as UTF-8, never raised on: its tokens are still known values.
    """
    text = value if value.__class__ is str else str(value)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


@lru_cache(maxsize=512)
def _header_name(key: str) -> bytes:
    """``HTTP_X_FORWARDED_FOR`` -> ``b"x-forwarded-for"`` (a few dozen distinct names)."""
    name = key[5:] if key.startswith("HTTP_") else key
    return name.replace("_", "-").lower().encode("latin-1")


def _scrubbed_headers(exchange: Exchange, status: int,
                      headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A response's headers passed through, with :meth:`Exchange.response_headers` applied
    where one of them says something (most responses: a look at the names only)."""
    for name, _ in headers:
        if name.lower() not in FRAMING_HEADER_NAMES:
            return _to_str(exchange.response_headers(status, _to_bytes(headers)))
    return headers


def _to_bytes(headers: list[tuple[str, str]]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _to_str(headers: Headers) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


@lru_cache(maxsize=256)
def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _problem_response(start_response: StartResponse, problem: Problem) -> list[bytes]:
    body = problem.body()
    start_response(_status_line(problem.status), _to_str(problem.headers(body)))
    return [body]


class PIIMiddleware:
    """``app.wsgi_app = PIIMiddleware(app.wsgi_app, config=...)``. Holds configuration only."""

    def __init__(self, app: WSGIApp, config: Config | str | dict[str, Any] | None = None) -> None:
        from piimw.asgi import _coerce_config

        self.app = app
        self.config = _coerce_config(config)
        self.optout_api = OptOutAPI.from_config(self.config)

    def route_template(self, environ: dict[str, Any]) -> str | None:
        return None

    def user_id(self, environ: dict[str, Any]) -> str | int | None:
        """The authenticated user's id (adapters: from the framework's auth), or None."""
        return None

    def cookie_authenticated(self, environ: dict[str, Any]) -> bool:
        """True unless the user was authenticated by a header a browser never adds itself."""
        return True

    def prepare(self, exchange: Exchange, environ: dict[str, Any]) -> None:
        """Called once the exchange exists; adapters add session or registry consent here."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answer = self._privacy_endpoint(environ)
        if answer is not None:
            status, out, payload = answer
            start_response(_status_line(status), _to_str(out))
            return [payload]
        config = self.config
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        template = self.route_template(environ)
        route = config.routes.lookup(method.upper(), template, path)
        # A planned request reads its headers at once; others may never need them.
        if route is not None:
            headers: Headers | Callable[[], Headers] = environ_headers(environ)
            signals = None
        else:
            headers, signals = deferred_headers(environ, config.consent_settings)
        # A QUERY_STRING outside latin-1 (a layer that breaks PEP 3333) is read as UTF-8.
        raw_query = environ_bytes(environ.get("QUERY_STRING", ""))
        # Positional: a keyword-argument call to a class costs more than the rest of it.
        exchange = Exchange(config, method, path, headers, raw_query, template, signals,
                            environ.get("REMOTE_ADDR"), route)
        self.prepare(exchange, environ)
        if config.registry is not None:
            exchange.resolve_consent(self.user_id(environ))
        environ["piimw"] = exchange
        token = enter_closable(exchange)
        try:
            return self._call(exchange, environ, start_response, token)
        except Exception as exc:
            clean = on_app_exception(exc)  # while the exchange is still current
            leave(token)
            _end(exchange)
            if clean is exc:
                raise
            replacement = clean
        except BaseException:
            leave(token)
            _end(exchange)
            raise
        raise replacement  # outside the except block: no __context__ back to the raw one

    def _privacy_endpoint(self, environ: dict[str, Any]) -> tuple[int, Headers, bytes] | None:
        """``/.well-known/gpc.json`` and the opt-out API, if configured."""
        path = environ.get("PATH_INFO", "/") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == GPC_JSON_PATH:
            return gpc_json_response(self.config.consent_settings, method)
        api = self.optout_api
        if api is None or path != api.settings.path:
            return None
        size = declared_length(environ.get("CONTENT_LENGTH")) or 0
        body = environ["wsgi.input"].read(min(size, MAX_BODY + 1)) if size else b""
        return api.handle(method, self.user_id(environ), body, environ_headers(environ),
                          cookie_auth=self.cookie_authenticated(environ),
                          scheme=environ.get("wsgi.url_scheme"))

    def _call(self, exchange: Exchange, environ: dict[str, Any], start_response: StartResponse,
              token: Activation) -> Iterable[bytes]:
        if not exchange.passthrough:
            problem = self._inspect_request(exchange, environ) or exchange.audit_refusal()
            if problem is not None:
                exchange.status = problem.status
                leave(token)
                _end(exchange)
                return _problem_response(start_response, problem)
        responder = _Responder(exchange, start_response)
        result = self.app(environ, responder.start_response)
        return responder.finish(result, token)

    def _inspect_request(self, exchange: Exchange, environ: dict[str, Any]) -> Problem | None:
        try:
            qs = exchange.scrub_query()
            if isinstance(qs, Problem):
                return qs
            if qs is not exchange.query_string:
                environ["QUERY_STRING"] = qs.decode("latin-1")
            if not exchange.wants_request_body:
                return None
            limit = self.config.max_body_bytes
            declared = declared_length(environ.get("CONTENT_LENGTH"))
            stream = environ["wsgi.input"]
            if declared is not None:
                if declared > limit:
                    return Problem(413, "too-large",
                                   "The request body is larger than this endpoint inspects.")
                body = stream.read(declared) if declared else b""
            elif environ.get("wsgi.input_terminated"):
                body = stream.read(limit + 1)
                if len(body) > limit:
                    return Problem(413, "too-large",
                                   "The request body is larger than this endpoint inspects.")
            else:
                body = b""
            outcome = exchange.request_body(exchange.request_headers, body)
        except Exception as exc:  # fail closed on our own errors
            logger.error("piimw: request inspection failed (%s); request refused",
                         type(exc).__name__)
            return Problem(500, "inspection-failed", "The request could not be inspected.")
        if outcome.problem is not None:
            return outcome.problem
        new = outcome.body if outcome.body is not None else body
        environ["wsgi.input"] = io.BytesIO(new)
        environ["CONTENT_LENGTH"] = str(len(new))
        return None


class _Responder:
    """Per-request response state for WSGI."""

    __slots__ = ("_start_response", "buffer", "exchange", "forwarded", "held", "lines",
                 "raw_headers", "size", "too_large")

    def __init__(self, exchange: Exchange, start_response: StartResponse) -> None:
        self.exchange = exchange
        self._start_response = start_response
        self.held: tuple[int, list[tuple[str, str]], ExcInfo | None] | None = None
        self.raw_headers: Headers | None = None  # the held headers as bytes pairs
        self.buffer: list[bytes] = []
        self.size = 0
        self.too_large = False
        #: The server's ``start_response`` was called (a response not held): a later call
        #: must pass ``exc_info`` on, as PEP 3333 requires of every call after the first.
        self.forwarded = False
        #: A response streaming tagged JSON lines, read line by line.
        self.lines: LineStream | None = None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: ExcInfo | None = None) -> Callable[[bytes], object]:
        code = int(status.split(" ", 1)[0])
        if self.held is not None:
            # A second call (the app failed after starting): the new response replaces the
            # held one, and nothing of the first body may survive.
            self.held = (code, headers, exc_info)
            self.raw_headers = None
            self.buffer.clear()
            self.size = 0
            self.too_large = False
            return self._write
        exchange = self.exchange
        if not exchange.may_want_response(code):  # most requests: no plan, no error
            exchange.status = code
            self.forwarded = True
            headers = _scrubbed_headers(exchange, code, headers)
            return self._start_response(status, headers, exc_info) if exc_info else \
                self._start_response(status, headers)
        raw = _to_bytes(headers)
        if not exchange.wants_response_body(code, raw):
            self.held = None
            self.forwarded = True
            plan = exchange.line_plan(code, raw)
            if plan is not None:  # tagged JSON lines: read line by line as they stream
                self.lines = LineStream(exchange, plan)
                headers = _to_str(exchange.stream_headers(code, raw, plan))
            elif scans_response_headers(raw):
                headers = _to_str(exchange.response_headers(code, raw))
            write = self._start_response(status, headers, exc_info) if exc_info else \
                self._start_response(status, headers)
            lines = self.lines
            if lines is None:
                return write
            return lambda data: write(lines.feed(data))
        self.held = (code, headers, exc_info)
        self.raw_headers = raw
        return self._write

    def _started(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """Run an app that calls ``start_response`` lazily (a generator: PEP 3333 allows the
        call until the first body bytes) up to that call, so that its response is held or
        passed on like any other; the chunks read meanwhile are handed on first. Without this
        a held response was never started and the server failed."""
        it = iter(result)
        first: list[bytes] = []
        try:
            while self.held is None and not self.forwarded:
                chunk = next(it)
                first.append(chunk)
                if chunk and self.held is None and not self.forwarded:
                    break  # body bytes before start_response: the server fails, as without us
        except StopIteration:
            pass  # it never called start_response: the server reports that, as without piimw
        except BaseException:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # PEP 3333: the server would have closed it
            raise
        return _Prefetched(first, it, result)

    def _write(self, data: bytes) -> None:
        self._collect(data)

    def _collect(self, data: bytes) -> None:
        """Hold ``data``; past the limit, what is held (and ``data``) stays until
        :meth:`finish` decides whether it passes on unread, and nothing more is held."""
        if self.too_large:
            return
        self.size += len(data)
        self.too_large = self.size > self.exchange.config.max_response_bytes
        self.buffer.append(data)

    def finish(self, result: Iterable[bytes], token: Activation) -> Iterable[bytes]:
        if self.held is None and not self.forwarded:
            result = self._started(result)
        if self.held is None:
            return _ClosingIterator(result, token, self.exchange, self.lines)
        it = iter(result)
        passes = self._passes_unread()  # grown too large through write()
        try:
            for chunk in () if passes else it:
                self._collect(chunk)
                if self._passes_unread():
                    passes = True
                    break
        finally:
            if not passes:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        code, _, exc_info = self.held
        if passes:
            head = [b"".join(self.buffer)]
            self.buffer.clear()
            return self._start(code, self._raw(), False, exc_info,
                               _Prefetched(head, it, result), token)
        if self.too_large:
            outcome = self.exchange.too_large()
        else:
            outcome = self.exchange.response_body(code, self._raw(), b"".join(self.buffer))
        self.buffer.clear()
        return self._start(outcome.status, outcome.headers, outcome.withheld, exc_info,
                           [outcome.body], token)

    def _raw(self) -> Headers:
        assert self.held is not None
        return self.raw_headers if self.raw_headers is not None else _to_bytes(self.held[1])

    def _passes_unread(self) -> bool:
        """Just grown too large to read: may it stream on as the app sends it, what is
        held first (see :meth:`Exchange.passes_unread`)? If not, what is held goes."""
        if not self.too_large or not self.buffer:
            return False
        assert self.held is not None
        if self.exchange.passes_unread(self.held[0], self._raw(), b"".join(self.buffer)):
            return True
        self.buffer.clear()
        return False

    def _start(self, code: int, raw: Headers, withheld: bool, exc_info: ExcInfo | None,
               body: Iterable[bytes], token: Activation) -> Iterable[bytes]:
        # A held response is the server's first start_response unless the app called it
        # before (a response not held, then a failure: PEP 3333's error path); only then is
        # exc_info passed on, which lets the server replace headers it has not sent yet.
        status = _status_line(code)
        headers = _to_str(raw if withheld else self.exchange.response_headers(code, raw))
        if self.forwarded and exc_info is not None:
            self._start_response(status, headers, exc_info)
        else:
            self._start_response(status, headers)
        return _ClosingIterator(body, token, self.exchange)


class _Prefetched:
    """An app's iterable of which the first chunks were already read; ``close`` is its own."""

    __slots__ = ("_first", "_it", "_result")

    def __init__(self, first: list[bytes], it: Iterator[bytes], result: Iterable[bytes]) -> None:
        self._first, self._it, self._result = first, it, result

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        self._first = []
        yield from self._it

    def close(self) -> None:
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class _ClosingIterator:
    """Pass the body through; on ``close()`` close the app's iterable and leave the context."""

    __slots__ = ("_closed", "_exchange", "_iter", "_result", "_token")

    def __init__(self, result: Iterable[bytes], token: Activation, exchange: Exchange,
                 lines: LineStream | None = None) -> None:
        self._exchange = exchange
        self._result = result
        self._iter: Iterator[bytes] = iter(result) if lines is None else \
            lines.scrub(result)
        self._token = token
        self._closed = False
        # Handed back to the server: the app runs again only inside __next__ and close().
        exchange.awaiting_close = True

    def __iter__(self) -> Iterator[bytes]:
        # A list (what piimw itself answers with) runs no code of the app and cannot fail:
        # the server iterates it directly, without a call of ``__next__`` per chunk.
        return self._iter if self._result.__class__ is list else self

    def __next__(self) -> bytes:
        exchange = self._exchange
        exchange.awaiting_close = False  # a request the body makes now is nested in this one
        try:
            return next(self._iter)
        except StopIteration:
            raise
        except Exception as exc:  # a streaming body failed: still inside the request's context
            clean = on_app_exception(exc)
            if clean is exc:
                raise
            replacement = clean
        finally:
            exchange.awaiting_close = True
        raise replacement

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._exchange.awaiting_close = False
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            leave_closed(self._token)
            _end(self._exchange)


def _end(exchange: Exchange) -> None:
    """The request is over (for WSGI: its iterable is closed)."""
    config = exchange.config
    if config.audit is not None or config.discovery is not None:
        end_of_request(exchange)  # only then: a call per request costs
