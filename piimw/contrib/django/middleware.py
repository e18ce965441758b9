"""Django middleware: one class for WSGI and ASGI deployments.

It lives inside Django's handler, so it cannot wrap the WSGI or ASGI app; instead it
translates Django's request and response into an :class:`~piimw.exchange.Exchange` and
back. Django tells it the route template (``resolve()``), the session and the settings;
everything else is the core's inspection path, the same as for the WSGI/ASGI middleware.

    MIDDLEWARE = [
        ...,
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "piimw.contrib.django.PIIMiddleware",
        ...,
    ]
"""

# mypy: disable-error-code="import-untyped"
# Django ships no type hints (django-stubs is not a dependency).

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from io import BytesIO
from itertools import chain
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.urls import Resolver404, get_resolver
from django.utils.cache import patch_vary_headers
from django.utils.translation import get_language

from piimw import consent as consent_mod
from piimw.bodies import declared_length
from piimw.config import Config
from piimw.contrib.django.conf import conf
from piimw.errors import ConfigError
from piimw.exchange import (
    FRAMING_HEADER_NAMES,
    LENGTH_AND_VALIDATORS,
    Activation,
    Exchange,
    Headers,
    LineStream,
    ResponseOutcome,
    end_of_request,
    enter_closable,
    leave_closed,
)
from piimw.optout_api import GPC_JSON_PATH, OptOutAPI, gpc_json_response
from piimw.problem import Problem
from piimw.sanitize import on_app_exception
from piimw.wsgi import deferred_headers, environ_bytes

__all__ = ["PIIMiddleware", "route_template", "session_consent"]

logger = logging.getLogger("piimw")

GetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]

_CONVERTER = re.compile(r"<(?:[^<>:]+:)?(\w+)>")
_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>[^()]*\)")


def route_template(route: str) -> str:
    """Django's route in OpenAPI spelling: ``users/<int:pk>/`` -> ``/users/{pk}/``.

    A ``re_path`` pattern keeps its regex, except that simple named groups become
    parameters and the anchors go: ``^articles/(?P<year>[0-9]{4})/$`` ->
    ``/articles/{year}/``.
    """
    if route.startswith("^") or "(?P<" in route:
        route = _NAMED_GROUP.sub(r"{\1}", route).lstrip("^")
        route = route[:-1] if route.endswith("$") else route
    return "/" + _CONVERTER.sub(r"{\1}", route).lstrip("/")


session_consent = consent_mod.from_session_flag


def _session(request: HttpRequest) -> Any:
    """The session, if SessionMiddleware ran before us and the client sent a session cookie.

    Without a cookie there is nothing to read, and touching the session would add
    ``Vary: Cookie`` to every response.
    """
    session = getattr(request, "session", None)
    return session if session is not None and session.session_key is not None else None


_UNPREFIXED = {"CONTENT_TYPE": b"content-type", "CONTENT_LENGTH": b"content-length"}
#: ``META`` key -> header name (``HTTP_X_FOO`` -> ``b"x-foo"``) or None (not a header).
_META_NAMES: dict[str, bytes | None] = {}


def _meta_header_name(key: str) -> bytes | None:
    if key.startswith("HTTP_"):
        return key[5:].replace("_", "-").lower().encode("latin-1", "replace")
    return _UNPREFIXED.get(key)


def _request_headers(request: HttpRequest) -> Headers:
    return _meta_headers(request.META)


def _meta_headers(meta: dict[str, Any]) -> Headers:
    """The headers, read from ``META`` as ``request.headers`` reads them, without building
    that mapping (most views never ask for it). Names are memoised: a server sees few."""
    names = _META_NAMES
    out: Headers = []
    for key, value in meta.items():
        try:
            name = names[key]
        except KeyError:
            name = _meta_header_name(key)
            if len(names) < 4096:  # clients choose header names: keep the memo bounded
                names[key] = name
        if name is not None:
            out.append((name, environ_bytes(value)))
    return out


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _problem_response(exchange: Exchange, problem: Problem) -> HttpResponse:
    exchange.status = problem.status
    body = problem.body()
    response = HttpResponse(body, status=problem.status)
    for name, value in problem.headers(body):
        response.headers[_canonical(name.decode("latin-1"))] = value.decode("latin-1")
    return response


def _too_large() -> Problem:
    return Problem(413, "too-large", "The request body is larger than this endpoint inspects.")


def _replace_body(request: HttpRequest, body: bytes) -> None:
    """Make ``request.body``, ``request.read()`` and ``request.POST`` see the new body."""
    request._body = body
    request._stream = BytesIO(body)
    request._read_started = False
    for cached in ("_post", "_files"):
        request.__dict__.pop(cached, None)
    request.META["CONTENT_LENGTH"] = str(len(body))


def _response_headers(response: HttpResponseBase) -> Headers:
    # Cookies live apart from the headers in Django and are never rewritten here.
    return [(name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in response.items()]


def _drain(chunks: Iterable[bytes], limit: int) -> tuple[bytes, Iterator[bytes] | None]:
    """A streaming body's bytes; past ``limit``, those read (one chunk past it) and the
    rest, unread."""
    it = iter(chunks)
    out: list[bytes] = []
    size = 0
    for chunk in it:
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            return b"".join(out), it
    return b"".join(out), None


async def _adrain(chunks: AsyncIterable[bytes],
                  limit: int) -> tuple[bytes, AsyncIterator[bytes] | None]:
    it = aiter(chunks)
    out: list[bytes] = []
    size = 0
    async for chunk in it:
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            return b"".join(out), it
    return b"".join(out), None


def _then(head: bytes, rest: Iterator[bytes] | AsyncIterator[bytes]
          ) -> Iterable[bytes] | AsyncIterable[bytes]:
    """A streaming body of which ``head`` was read, streamed on."""
    if isinstance(rest, AsyncIterator):
        return _athen(head, rest)
    return chain((head,), rest)


async def _athen(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


async def _one(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _leave(activation: Activation, exchange: Exchange, done: list[bool]) -> None:
    """Leave the request's context (once) and hand the request on."""
    if done:  # already left (close() called twice)
        return
    done.append(True)
    leave_closed(activation)
    _end(exchange)


def _escaping(exc: Exception, activation: Activation, exchange: Exchange,
              done: list[bool]) -> BaseException:
    """An exception leaving the middleware, sanitized while the request's known values are
    current, then the request left. Django's handler logs it (and a debug page shows it)
    only after we return: a streaming body that raised while piimw read it quoted the
    tagged name raw in the server's error log. Re-raise what comes back."""
    try:
        return on_app_exception(exc)
    finally:
        _leave(activation, exchange, done)


def _stream_lines(response: HttpResponseBase, lines: LineStream) -> None:
    """A response of tagged JSON lines, scrubbed line by line as Django streams it (or at
    once, if it is not streaming); its length and validators go."""
    for name in LENGTH_AND_VALIDATORS:
        if response.has_header(name.decode("latin-1")):
            del response.headers[name.decode("latin-1")]
    if not response.streaming:
        response.content = lines.feed(response.content) + lines.close()
    elif response.is_async:
        response.streaming_content = lines.ascrub(response.streaming_content)
    else:
        response.streaming_content = lines.scrub(response.streaming_content)


def _scrub_headers(exchange: Exchange, response: HttpResponseBase) -> None:
    """:meth:`Exchange.response_headers` on a Django response, in place: its headers, and
    its cookies, which Django keeps apart (a ``Set-Cookie`` holding the email)."""
    status = response.status_code
    # Most responses carry framing and security headers only: their names are all read.
    if any(name.lower() not in FRAMING_HEADER_NAMES for name in response.headers):
        # Django writes a value that is not Latin-1 as RFC 2047 encoded words: read them.
        items = [(name, _mime_decoded(value)) for name, value in response.headers.items()]
        raw = [(name.lower().encode("latin-1"), environ_bytes(value)) for name, value in items]
        for (name, value), (_, old), (_, new) in zip(
                items, raw, exchange.response_headers(status, raw), strict=True):
            if new is not old:
                response.headers[name] = _header_text(new, value)
    for key, morsel in list(response.cookies.items()):
        written = morsel.OutputString()  # name, value and attributes (Path, Comment, ...)
        old = environ_bytes(written)
        new = exchange.response_headers(status, [(b"set-cookie", old)])[0][1]
        if new is old:
            continue
        name, _, rest = _header_text(new, written).partition("=")
        value, _, attributes = rest.partition(";")
        if name != key or attributes != written.partition(";")[2]:
            # The name or an attribute holds personal data: Django cannot write them
            # changed, so the cookie goes (fail closed).
            del response.cookies[key]
        else:
            morsel.set(key, value, value)


def _scrub_headers_or_drop(exchange: Exchange, response: HttpResponseBase) -> None:
    """:func:`_scrub_headers`, failing closed: on an error the headers that say something
    and the cookies go, never the response (logged without values)."""
    try:
        _scrub_headers(exchange, response)
    except Exception as exc:
        logger.error("piimw: response header inspection failed (%s); those headers "
                     "withheld", type(exc).__name__)
        for name in list(response.headers):
            if name.lower() not in FRAMING_HEADER_NAMES:
                del response.headers[name]
        response.cookies.clear()


def _mime_decoded(value: str) -> str:
    """A header value with RFC 2047 encoded words (``=?utf-8?b?...?=``) decoded."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, HeaderParseError):  # bad encoded words, a charset
        return value


def _header_text(new: bytes, old: str) -> str:
    """``new`` as text, read as the old value was written (latin-1, else UTF-8)."""
    try:
        old.encode("latin-1")
    except UnicodeEncodeError:
        return new.decode("utf-8", "replace")
    return new.decode("latin-1")


def _hold_until_closed(response: HttpResponseBase, token: Activation, exchange: Exchange,
                       done: list[bool]) -> None:
    """Keep this request's known values current until Django closes the response.

    The server writes its access line after the middleware has returned: gunicorn's sync
    worker after sending the body, an ASGI server (uvicorn) when Django's handler sends the
    response start, in the task the middleware ran in. Django closes every response it
    sends, in both cases; ``_leave`` then empties the request's slot wherever it was copied.
    """
    closers = getattr(response, "_resource_closers", None)
    if not isinstance(closers, list):
        _leave(token, exchange, done)
        return
    closers.append(lambda: _leave(token, exchange, done))
    # No code of the app runs any more, but for a streaming body's (_running; a file is only
    # read, and stays a file for the server's wsgi.file_wrapper). An async streaming body
    # keeps the request current until it is closed.
    if not getattr(response, "streaming", False) or getattr(
            response, "file_to_stream", None) is not None:
        exchange.awaiting_close = True
    elif not response.is_async:
        response.streaming_content = _running(response.streaming_content, exchange)
        exchange.awaiting_close = True
    else:
        response.streaming_content = _arunning(response.streaming_content)


def _running(content: Iterable[bytes], exchange: Exchange) -> Iterator[bytes]:
    """A streaming body, passed on. The app's code runs while the server asks for the next
    chunk: a request it makes then is nested in this one, which must not count as only
    awaiting its close (:func:`piimw.exchange.enter_closable`). An exception it raises is
    sanitized here, inside the request: the server logs it after closing the response."""
    iterator = iter(content)
    while True:
        exchange.awaiting_close = False
        replacement: BaseException | None = None
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            replacement = on_app_exception(exc)
            if replacement is exc:
                raise
        finally:
            exchange.awaiting_close = True
        if replacement is not None:
            raise replacement  # outside the except block: no __context__ back to the raw one
        yield chunk


async def _arunning(content: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """An async streaming body, passed on; an exception it raises sanitized (see
    :func:`_running`)."""
    iterator = aiter(content)
    while True:
        replacement: BaseException | None = None
        try:
            chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except Exception as exc:
            replacement = on_app_exception(exc)
            if replacement is exc:
                raise
        if replacement is not None:
            raise replacement
        yield chunk


def _end(exchange: Exchange) -> None:
    """The request is answered."""
    end_of_request(exchange)


def _language_sensitive(resolver: Any) -> bool:
    """Does matching depend on the active language (``i18n_patterns``, or a route given as a
    lazily translated string)? Walks the patterns once per resolver."""
    from django.urls import LocalePrefixPattern, URLResolver
    from django.utils.functional import Promise

    stack, seen = [resolver], set()
    while stack:
        entry = stack.pop()
        pattern = entry.pattern
        if isinstance(pattern, LocalePrefixPattern) or isinstance(
                getattr(pattern, "_route", getattr(pattern, "_regex", None)), Promise):
            return True
        if isinstance(entry, URLResolver) and id(entry) not in seen:
            seen.add(id(entry))
            stack.extend(entry.url_patterns)
    return False


def _user_pk(user: Any) -> str | int | None:
    """The authenticated user's primary key (AuthenticationMiddleware must run before us)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    return pk if isinstance(pk, (str, int)) else (str(pk) if pk is not None else None)


class PIIMiddleware:
    """Inspect each request and response per ``settings.PIIMW``. Holds configuration only."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse | AsyncGetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        try:
            self.config: Config = conf.config()
        except ConfigError as exc:  # `manage.py check` reports this as piimw.E001
            raise ImproperlyConfigured(str(exc)) from exc
        explicit = getattr(settings, "PIIMW_SESSION_KEY", None)
        self.session_key = str(explicit or self.config.consent_settings.session_key
                               or conf.PIIMW_SESSION_KEY)
        self.optout_api = OptOutAPI.from_config(self.config)
        #: (resolver, language, method, path) -> (template, known template, table version)
        self._memo: dict[tuple[Any, ...], tuple[str | None, str | None, int]] = {}
        self._by_language: dict[Any, bool] = {}  # resolver -> does matching use the language?

    # -- /.well-known/gpc.json and the opt-out API ----------------------------------------------
    def _privacy_path(self, request: HttpRequest) -> str | None:
        path = request.path_info or "/"
        if path == GPC_JSON_PATH:
            return "gpc"
        if self.optout_api is not None and path == self.optout_api.settings.path:
            return "api"
        return None

    def _privacy_answer(self, request: HttpRequest, kind: str, user: Any) -> HttpResponse | None:
        if kind == "gpc":
            answer = gpc_json_response(self.config.consent_settings, request.method or "GET")
        else:
            assert self.optout_api is not None
            answer = self.optout_api.handle(
                request.method or "GET", _user_pk(user), request.body,
                _request_headers(request), host=request.get_host(), scheme=request.scheme)
        if answer is None:
            return None
        status, headers, payload = answer
        response = HttpResponse(payload, status=status)
        for k, v in headers:
            response[k.decode("latin-1")] = v.decode("latin-1")
        return response

    # -- the request --------------------------------------------------------------------------
    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        kind = self._privacy_path(request)
        if kind is not None:
            answer = self._privacy_answer(request, kind, getattr(request, "user", None))
            if answer is not None:
                return answer
        exchange = self._exchange(request)
        session = _session(request)
        if session is not None:
            try:
                flag, failure = session.get(self.session_key), None
            except Exception as exc:
                flag, failure = None, exc
            self._session_flag(exchange, flag, failure)
        if self.config.registry is not None:
            user = getattr(request, "user", None)
            exchange.resolve_consent(_user_pk(user))
        token = enter_closable(exchange)
        done: list[bool] = []
        replacement: BaseException | None = None
        try:
            problem = self._inspect_request(exchange, request)
            if problem is not None:
                response: HttpResponseBase = _problem_response(exchange, problem)
            else:
                response = self._inspect_response(exchange, self.get_response(request))
                _scrub_headers_or_drop(exchange, response)
        except Exception as exc:
            replacement = _escaping(exc, token, exchange, done)
            if replacement is exc:
                raise
        except BaseException:
            _leave(token, exchange, done)
            raise
        if replacement is not None:
            raise replacement  # outside the except block: no __context__ back to the raw one
        _hold_until_closed(response, token, exchange, done)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        kind = self._privacy_path(request)
        if kind is not None:
            auser = getattr(request, "auser", None)
            user = await auser() if auser is not None else getattr(request, "user", None)
            answer = await sync_to_async(self._privacy_answer)(request, kind, user)
            if answer is not None:
                return answer
        exchange = self._exchange(request)
        session = _session(request)
        if session is not None:
            get = session.aget if hasattr(session, "aget") else sync_to_async(session.get)
            try:
                flag, failure = await get(self.session_key), None
            except Exception as exc:
                flag, failure = None, exc
            self._session_flag(exchange, flag, failure)
        if self.config.registry is not None:
            auser = getattr(request, "auser", None)
            user = await auser() if auser is not None else getattr(request, "user", None)
            await sync_to_async(exchange.resolve_consent)(_user_pk(user))
        token = enter_closable(exchange)
        done: list[bool] = []
        replacement: BaseException | None = None
        try:
            problem = self._inspect_request(exchange, request)
            if problem is not None:
                response: HttpResponseBase = _problem_response(exchange, problem)
            else:
                response = await self._ainspect_response(exchange,
                                                         await self.get_response(request))
                _scrub_headers_or_drop(exchange, response)
        except Exception as exc:
            replacement = _escaping(exc, token, exchange, done)
            if replacement is exc:
                raise
        except BaseException:
            _leave(token, exchange, done)
            raise
        if replacement is not None:
            raise replacement  # outside the except block: no __context__ back to the raw one
        _hold_until_closed(response, token, exchange, done)
        return response

    def _exchange(self, request: HttpRequest) -> Exchange:
        method = request.method or "GET"
        path = request.path_info or "/"
        template, known = self._templates(request, method)
        config = self.config
        route = config.routes.lookup(method.upper(), known, path)
        meta = request.META
        # A planned request reads its headers at once; others may never need them.
        if route is not None:
            headers: Headers | Callable[[], Headers] = _meta_headers(meta)
            signals = None
        else:
            headers, signals = deferred_headers(meta, config.consent_settings, _meta_headers)
        exchange = Exchange(config, method, path, headers,
                            environ_bytes(meta.get("QUERY_STRING", "")), known, signals, None,
                            route)
        if known is None:  # a label for logs and audit, not a plan lookup
            exchange.route_template = template
        exchange.add_client_address(meta.get("REMOTE_ADDR"))
        request.piimw = exchange
        return exchange

    def _templates(self, request: HttpRequest, method: str) -> tuple[str | None, str | None]:
        """(Django's route as a template, the template the route table knows or None).

        Memoised: a match depends only on the resolver (a new one after ``ROOT_URLCONF``
        changes or ``clear_url_caches()``), the active language (``i18n_patterns``) and the
        path; the second part also on the route table (its version says when it changed).
        """
        path = request.path_info
        resolver = get_resolver(getattr(request, "urlconf", None))
        sensitive = self._by_language.get(resolver)
        if sensitive is None:
            if len(self._by_language) >= 64:  # resolvers replaced by clear_url_caches()
                self._by_language.clear()
            sensitive = self._by_language[resolver] = _language_sensitive(resolver)
        # get_language() costs more than the rest of the lookup: asked only when it matters.
        key = (resolver, get_language() if sensitive else None, method, path)
        routes = self.config.routes
        memo = self._memo
        hit = memo.get(key)
        if hit is not None and hit[2] == routes.version:
            return hit[0], hit[1]
        template = self._framework_template(resolver, path) if hit is None else hit[0]
        known = routes.known_template(method.upper(), template)
        if len(memo) >= 8192:  # paths with ids in them are unbounded
            memo.clear()
        memo[key] = (template, known, routes.version)
        return template, known

    @staticmethod
    def _framework_template(resolver: Any, path: str) -> str | None:
        try:
            match = resolver.resolve(path)
        except Resolver404:
            return None
        return route_template(str(match.route or ""))

    def _session_flag(self, exchange: Exchange, flag: object,
                      failure: Exception | None) -> None:
        if failure is not None:  # fail closed: an unreadable session may hold an opt-out
            logger.warning("piimw: session could not be read (%s); treated as opted out",
                           type(failure).__name__)
            flag = True
        consent = session_consent(flag)
        if consent is not None:
            exchange.set_consent(consent)

    def _inspect_request(self, exchange: Exchange, request: HttpRequest) -> Problem | None:
        if exchange.passthrough:
            return None
        try:
            query = exchange.scrub_query()
            if isinstance(query, Problem):
                return query
            if query is not exchange.query_string:
                request.META["QUERY_STRING"] = query.decode("latin-1")
                request.__dict__.pop("GET", None)  # a cached_property
            if not exchange.wants_request_body:
                return exchange.audit_refusal()
            limit = self.config.max_body_bytes
            raw_length = str(request.META.get("CONTENT_LENGTH") or "")
            declared = declared_length(raw_length)
            if declared is None and raw_length:  # Django's request.body would raise
                return Problem(400, "malformed-content-length",
                               "The Content-Length header is not a number.")
            if declared is not None and declared > limit:
                return _too_large()
            try:
                body = request.body
            except RequestDataTooBig:
                return _too_large()
            if len(body) > limit:
                return _too_large()
            outcome = exchange.request_body(exchange.request_headers, body)
        except Exception as exc:  # fail closed on our own errors, and on an unreadable body
            logger.error("piimw: request inspection failed (%s); request refused",
                         type(exc).__name__)
            return Problem(500, "inspection-failed", "The request could not be inspected.")
        if outcome.problem is not None:
            return outcome.problem
        if outcome.changed and outcome.body is not None:
            _replace_body(request, outcome.body)
        return exchange.audit_refusal()

    # -- the response -------------------------------------------------------------------------
    def _wants(self, exchange: Exchange, response: HttpResponseBase) -> Headers | None:
        status = response.status_code
        if not exchange.may_want_response(status):  # most requests: no plan, no error
            exchange.status = status
            return None
        headers = _response_headers(response)
        if exchange.wants_response_body(status, headers):
            return headers
        plan = exchange.line_plan(status, headers)
        if plan is not None:  # tagged JSON lines: read line by line as they stream
            _stream_lines(response, LineStream(exchange, plan))
            vary = exchange.vary_for(plan)
            if vary is not None:
                patch_vary_headers(response, vary.split(", "))
        return None

    def _inspect_response(self, exchange: Exchange,
                          response: HttpResponseBase) -> HttpResponseBase:
        headers = self._wants(exchange, response)
        if headers is None:
            return response
        limit = self.config.max_response_bytes
        rest: Iterator[bytes] | AsyncIterator[bytes] | None = None
        if not response.streaming:
            body = response.content
        elif response.is_async:
            # The rest cannot stream on: its event loop ends with this call.
            body, _ = async_to_sync(_adrain)(response.streaming_content, limit)
        else:
            body, rest = _drain(response.streaming_content, limit)
        return self._finish(exchange, response, headers, body, rest)

    async def _ainspect_response(self, exchange: Exchange,
                                 response: HttpResponseBase) -> HttpResponseBase:
        headers = self._wants(exchange, response)
        if headers is None:
            return response
        limit = self.config.max_response_bytes
        rest: Iterator[bytes] | AsyncIterator[bytes] | None = None
        if not response.streaming:
            body = response.content
        elif response.is_async:
            body, rest = await _adrain(response.streaming_content, limit)
        else:  # a file or a generator: read it off the event loop
            body, rest = await sync_to_async(_drain)(response.streaming_content, limit)
        return self._finish(exchange, response, headers, body, rest)

    def _finish(self, exchange: Exchange, response: HttpResponseBase, headers: Headers,
                body: bytes, rest: Iterator[bytes] | AsyncIterator[bytes] | None
                ) -> HttpResponseBase:
        """``rest``: a streaming body's chunks past ``body``, unread (too large to read)."""
        status = response.status_code
        if len(body) > self.config.max_response_bytes:
            if (rest is not None or not response.streaming) and \
                    exchange.passes_unread(status, headers, body):  # a large download
                if rest is not None:
                    response.streaming_content = _then(body, rest)
                return response
            outcome = exchange.too_large()
        else:
            outcome = exchange.response_body(status, headers, body)
        self._apply(response, outcome, headers, body)
        if exchange.method == "HEAD" and not outcome.withheld:
            # No body is forwarded; the length stays the GET body's (CommonMiddleware would
            # count the empty content; servers drop a HEAD body anyway).
            response.headers["Content-Length"] = str(len(body))
        return response

    def _apply(self, response: HttpResponseBase, outcome: ResponseOutcome, headers: Headers,
               body: bytes) -> None:
        """Rewrite the response in place, so cookies, closers and attributes stay."""
        if outcome.status != response.status_code:
            response.status_code = outcome.status
            response.reason_phrase = None  # back to the phrase of the new status
        if outcome.withheld:
            # Nothing of the app's may follow piimw's 500: Django keeps cookies apart from
            # the headers, and a Set-Cookie would carry what the body was withheld for.
            response.cookies.clear()
        if outcome.headers is not headers:
            spelling = {name.lower(): name for name in response.headers}
            merged: dict[str, str] = {}
            for raw_name, raw_value in outcome.headers:
                name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
                merged[name] = f"{merged[name]}, {value}" if name in merged else value
            for name in list(response.headers):
                del response.headers[name]
            for name, value in merged.items():
                response.headers[spelling.get(name, _canonical(name))] = value
        if response.streaming:
            # The original iterator is consumed (or abandoned); its closer still runs.
            response.streaming_content = _one(outcome.body) if self.async_mode \
                else [outcome.body]
        elif outcome.body is not body:
            response.content = outcome.body

