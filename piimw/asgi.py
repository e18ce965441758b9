"""Pure ASGI middleware: receive/send glue around an :class:`~piimw.exchange.Exchange`.

Never built on Starlette's ``BaseHTTPMiddleware`` (it breaks contextvars and streaming).
Websocket and lifespan scopes pass straight through; so does every HTTP request whose route
has no plan, apart from a watch on error statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from piimw.bodies import declared_length
from piimw.config import Config
from piimw.exchange import (
    Exchange,
    Headers,
    LineStream,
    ResponseOutcome,
    end_of_request,
    enter,
    header,
    leave,
    scans_response_headers,
)
from piimw.optout_api import GPC_JSON_PATH, MAX_BODY, OptOutAPI, gpc_json_response
from piimw.problem import Problem
from piimw.routes import Route
from piimw.sanitize import on_app_exception

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("piimw")


def _coerce_config(config: Any) -> Config:
    if config is None:
        from piimw.api import default_config

        return default_config()
    if isinstance(config, Config):
        return config
    from piimw.api import _coerce

    return _coerce(config)


async def send_problem(send: Send, problem: Problem) -> None:
    body = problem.body()
    await send({"type": "http.response.start", "status": problem.status,
                "headers": problem.headers(body)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class PIIMiddleware:
    """``app = PIIMiddleware(app, config="piimw.toml")``. Holds configuration only."""

    def __init__(self, app: ASGIApp, config: Config | str | dict[str, Any] | None = None) -> None:
        self.app = app
        self._configure(_coerce_config(config))

    def _configure(self, config: Config) -> None:
        self.config = config
        self.optout_api = api = OptOutAPI.from_config(config)
        #: Paths piimw answers itself.
        self._privacy_paths = (GPC_JSON_PATH,) if api is None else (GPC_JSON_PATH,
                                                                   api.settings.path)

    # Hooks for adapters: translate framework knowledge into the core's terms.
    def route_template(self, scope: Scope) -> str | None:
        return None

    def resolve(self, scope: Scope) -> tuple[Route | None, str | None]:
        """The configured route (or None) and the template to report, for this request.

        Adapters that can memoise the whole answer per path override this; the default asks
        :meth:`route_template` and the route table.
        """
        template = self.route_template(scope)
        route = self.config.routes.lookup(scope["method"].upper(), template, scope["path"])
        return route, template

    def user_id(self, scope: Scope) -> str | int | None:
        """The authenticated user's id (adapters: from the framework's auth), or None."""
        return None

    def cookie_authenticated(self, scope: Scope) -> bool:
        """True unless the user was authenticated by a header a browser never adds itself."""
        return True

    def prepare(self, exchange: Exchange, scope: Scope) -> None:
        """Called once the exchange exists; adapters add session or registry consent here."""

    #: Set by adapters whose configuration is built late (at start-up); see :meth:`_late`.
    _lazy: Any = None

    async def _late(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Build a late configuration; True if the message was handled here."""
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._lazy is not None and await self._late(scope, receive, send):
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "/")
        if path in self._privacy_paths and await self._serve_privacy_endpoints(
                scope, receive, send):
            return
        route, template = self.resolve(scope)
        client = scope.get("client")
        config = self.config
        # Positional: a keyword-argument call to a class costs more than the rest of it.
        exchange = Exchange(config, scope["method"], path, list(scope.get("headers") or ()),
                            scope.get("query_string", b""), template, None,
                            client[0] if client else None, route)
        self.prepare(exchange, scope)
        if config.registry is not None:
            exchange.resolve_consent(self.user_id(scope))
        scope = dict(scope)
        scope["piimw"] = exchange
        replacement: BaseException | None = None
        activation = enter(exchange)
        failed = False
        try:
            try:
                if route is None:  # exchange.passthrough, without a property call
                    await self.app(scope, receive, _error_watch(exchange, send))
                    return
                await self._inspect(exchange, scope, receive, _Responder(exchange, send))
            except Exception as exc:
                failed = True
                # Sanitize while this request's known values are active: the server's
                # error log and outer middleware (Sentry) report it after we return.
                clean = on_app_exception(exc)
                if clean is exc:
                    raise
                replacement = clean
        finally:
            if not failed:
                leave(activation)
            # else: an outer middleware (Starlette's ServerErrorMiddleware) sends the 500 and
            # the server logs its access line after we return, in this same task: the
            # request's known values stay current until the task ends.
            if config.audit is not None or config.discovery is not None:
                end_of_request(exchange)  # only then: a call per request costs
        if replacement is not None:
            raise replacement  # outside the except block: no __context__ back to the raw one

    async def _serve_privacy_endpoints(self, scope: Scope, receive: Receive,
                                       send: Send) -> bool:
        """``/.well-known/gpc.json`` and the opt-out API, if configured. True if answered."""
        path = scope.get("path", "/")
        answer = None
        if path == GPC_JSON_PATH:
            answer = gpc_json_response(self.config.consent_settings, scope["method"])
        elif self.optout_api is not None and path == self.optout_api.settings.path:
            body = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return True
                body += message.get("body", b"")
                if len(body) > MAX_BODY or not message.get("more_body"):
                    break
            answer = self.optout_api.handle(
                scope["method"], self.user_id(scope), body, list(scope.get("headers") or ()),
                cookie_auth=self.cookie_authenticated(scope), scheme=scope.get("scheme"))
        if answer is None:
            return False
        status, headers, payload = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return True

    async def _inspect(self, exchange: Exchange, scope: Scope, receive: Receive,
                       responder: _Responder) -> None:
        try:
            new_qs = exchange.scrub_query()
        except Exception as exc:  # fail closed: never let the unscrubbed query through
            logger.error("piimw: query inspection failed (%s); request refused",
                         type(exc).__name__)
            await send_problem(responder.raw_send, _internal())
            return
        problem: Problem | None = None
        if isinstance(new_qs, Problem):
            problem = new_qs
        elif new_qs is not exchange.query_string:
            scope["query_string"] = new_qs
        if problem is None and exchange.wants_request_body:
            outcome = await self._read_body(exchange, scope, receive)
            if outcome is None:
                return  # client went away
            problem, receive = outcome
        if problem is None:
            problem = exchange.audit_refusal()
        if problem is not None:
            exchange.status = problem.status
            await send_problem(responder.raw_send, problem)
            return
        await self.app(scope, receive, responder.send)

    async def _read_body(self, exchange: Exchange, scope: Scope,
                         receive: Receive) -> tuple[Problem | None, Receive] | None:
        limit = self.config.max_body_bytes
        headers: Headers = scope["headers"]
        declared = declared_length(header(headers, b"content-length"))
        if declared is not None and declared > limit:
            return _too_large(), receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return _too_large(), receive
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            result = exchange.request_body(headers, body)
        except Exception as exc:
            logger.error("piimw: request inspection failed (%s); request refused",
                         type(exc).__name__)
            return _internal(), receive
        if result.problem is not None:
            return result.problem, receive
        new_body = result.body if result.body is not None else body
        if result.changed:
            scope["headers"] = [(k, v) for k, v in headers if k != b"content-length"] + [
                (b"content-length", str(len(new_body)).encode())]
        return None, _replay(new_body, receive)


#: ASGI messages that send a file the server reads itself: never forwarded on a response
#: piimw must read.
_FILE_SENDS = frozenset({"http.response.pathsend", "http.response.zerocopysend"})
#: How much of a file sent by path is read to tell text from bytes.
_SNIFF_BYTES = 8192


def _too_large() -> Problem:
    return Problem(413, "too-large", "The request body is larger than this endpoint inspects.")


def _internal() -> Problem:
    return Problem(500, "inspection-failed", "The request could not be inspected.")


def _replay(body: bytes, receive: Receive) -> Receive:
    """Yield the buffered body once, then delegate so that ``http.disconnect`` still arrives."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error_watch(exchange: Exchange, send: Send) -> Send:
    """``send`` for a request passed through: untouched unless the status is an error.

    Error pages (4xx/5xx) are inspected like any protected response; everything else goes
    straight to the server, message by message, without buffering. A plain function that
    returns the server's awaitable: no coroutine of its own per message.
    """
    responder: _Responder | None = None

    def watch(message: Message) -> Awaitable[None]:
        nonlocal responder
        if responder is not None:
            return responder.send(message)
        if message["type"] == "http.response.start":
            status = message["status"]
            if status >= 400:
                responder = _Responder(exchange, send)
                return responder.send(message)
            exchange.status = status
            headers = message.get("headers") or ()
            if scans_response_headers(headers):  # a redirect, a download, an X- header
                message = {**message, "headers": exchange.response_headers(status,
                                                                           list(headers))}
        return send(message)

    return watch


class _Responder:
    """Per-request response state: hold the start message until the body is decided."""

    __slots__ = ("_announced", "buffer", "exchange", "lines", "raw_send", "size", "start",
                 "state", "withheld")

    def __init__(self, exchange: Exchange, send: Send) -> None:
        self.exchange = exchange
        self.raw_send = send
        self.start: Message | None = None
        self.buffer: list[bytes] = []
        self.size = 0
        self.state = "start"  # start -> stream | lines | buffer -> done | trailers
        self.withheld = False
        self.lines: LineStream | None = None
        self._announced = False  # a line stream's start message announced trailers

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers") or ())
            if self.exchange.wants_response_body(status, headers):
                self.start = message
                self.state = "buffer"
                return
            self.state = "stream"
            plan = self.exchange.line_plan(status, headers)
            if plan is not None:  # tagged JSON lines: read line by line as they stream
                # Sent at once: a long poll's client must see its headers before the first
                # event (holding them stalled it; found by review).
                self.state = "lines"
                self.lines = LineStream(self.exchange, plan)
                self._announced = bool(message.get("trailers"))
                await self.raw_send({**message, "headers": self.exchange.stream_headers(
                    status, headers, plan)})
                return
            if scans_response_headers(headers):
                message = {**message,
                           "headers": self.exchange.response_headers(status, headers)}
            await self.raw_send(message)
            return
        if self.state == "stream":
            await self.raw_send(message)
            return
        if self.state in ("lines", "lines_trailers"):
            if self.state == "lines" or kind == "http.response.trailers":
                await self._lines(message)
            return
        if self.state == "done":
            return  # the rest of a withheld or already-answered response
        if self.state == "trailers" and kind == "http.response.trailers":
            # After an inspected body: scrubbed, or emptied after a withheld one.
            message = {**message, "headers": self.exchange.response_trailers(
                list(message.get("headers") or ()), self.withheld)}
            await self.raw_send(message)
            return
        if kind == "http.response.body":
            await self._buffer(message)
            return
        if kind in _FILE_SENDS:
            # A file we cannot read in flight: on a protected response, withheld, unless
            # its first bytes show it would pass once read (a download: see _pass_file).
            if not await self._pass_file(message):
                await self._finish(self.exchange.too_large())
            return
        await self.raw_send(message)  # e.g. trailers after the final body

    async def _lines(self, message: Message) -> None:
        """A JSON lines stream: every complete line scrubbed and sent on at once. A file
        sent instead (pathsend, zerocopysend) cannot be read in flight: the stream ends
        there, empty. After a line longer than the limit the stream ends; trailers it
        announced are sent empty."""
        kind = message["type"]
        lines = self.lines
        assert lines is not None
        if kind == "http.response.trailers":
            await self.raw_send({**message, "headers": self.exchange.response_trailers(
                list(message.get("headers") or ()), False)})
            self.state = "done"
            return
        if kind in _FILE_SENDS:
            logger.warning("piimw: a streamed file on %s %s could not be read; left out",
                           self.exchange.method, self.exchange.route_template)
            message = {"type": "http.response.body", "body": b"", "more_body": False}
            lines.over = True
        elif kind != "http.response.body":
            return  # nothing else belongs in a response body
        out = lines.feed(message.get("body", b""))
        more = bool(message.get("more_body", False)) and not lines.over
        if not more:
            out += lines.close()
        if out or not more:
            await self.raw_send({"type": "http.response.body", "body": out,
                                 "more_body": more})
        if not more:
            if self._announced and lines.over:  # what was announced, empty
                await self.raw_send({"type": "http.response.trailers", "headers": [],
                                     "more_trailers": False})
                self.state = "done"
            else:  # done, unless trailers follow (scrubbed above)
                self.state = "lines_trailers" if self._announced else "done"

    async def _buffer(self, message: Message) -> None:
        chunk = message.get("body", b"")
        self.size += len(chunk)
        if self.size > self.exchange.config.max_response_bytes:
            if not await self._pass_on(message):
                await self._finish(self.exchange.too_large())
            return
        self.buffer.append(chunk)
        if message.get("more_body", False):
            return
        assert self.start is not None
        start = self.start
        outcome = self.exchange.response_body(
            start["status"], list(start.get("headers") or ()), b"".join(self.buffer))
        self.buffer.clear()
        await self._finish(outcome, trailers=bool(start.get("trailers")))

    async def _pass_on(self, message: Message) -> bool:
        """Too large to read: sent on as it streams if it would pass once read, the bytes
        held so far first (see :meth:`_forward`)."""
        self.buffer.append(message.get("body", b""))
        held = b"".join(self.buffer)
        self.buffer.clear()
        return await self._forward(held, {**message, "body": held})

    async def _pass_file(self, message: Message) -> bool:
        """A file sent by path (Starlette's ``FileResponse`` under a server offering
        ``pathsend``): sent on if its first bytes show it would pass once read. Withheld
        whole, every download of a planned route failed there."""
        if message["type"] != "http.response.pathsend" or self.buffer:
            return False
        try:
            with open(message["path"], "rb") as file:
                head = file.read(_SNIFF_BYTES)
        except (OSError, KeyError, TypeError):
            return False
        return await self._forward(head, message)

    async def _forward(self, head: bytes, message: Message) -> bool:
        """Send the held start and ``message`` on, the rest streaming after them, if the
        response would pass once read, judged by its first bytes ``head`` (see
        :meth:`Exchange.passes_unread`)."""
        assert self.start is not None
        start = self.start
        headers = list(start.get("headers") or ())
        if not self.exchange.passes_unread(start["status"], headers, head):
            return False
        self.state = "stream"
        await self.raw_send({**start, "headers": self.exchange.response_headers(
            start["status"], headers)})
        await self.raw_send(message)
        return True

    async def _finish(self, outcome: ResponseOutcome, trailers: bool = False) -> None:
        self.state = "done" if not trailers else "trailers"
        self.withheld = outcome.withheld
        headers = outcome.headers if outcome.withheld else \
            self.exchange.response_headers(outcome.status, outcome.headers)
        start: Message = {"type": "http.response.start", "status": outcome.status,
                          "headers": headers}
        if trailers:
            start["trailers"] = True
        await self.raw_send(start)
        await self.raw_send({"type": "http.response.body", "body": outcome.body,
                             "more_body": False})
