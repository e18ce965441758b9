"""The exchange: one request's inspection, without I/O (sans-IO).

ASGI and WSGI middleware differ only in how bytes arrive and leave; both hand headers and
bodies to an :class:`Exchange` and send on what it returns. The current exchange sits in a
``contextvar`` so that log filters, error reporters and :func:`piimw.scrub_event` see the
request's consent and the values it brought in.
"""

from __future__ import annotations

import base64
import codecs
import ipaddress
import json
import logging
import re
import secrets
import threading
from bisect import bisect_right
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Iterator,
)
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson

from piimw import signals as signals_mod
from piimw.bodies import (
    content_coding,
    decode_content,
    dumps_exact,
    encode_content,
    forwards_what_was_read,
    has_exponent,
    loads_exact,
    may_lose_numbers,
)
from piimw.charsets import encode_page, page_text
from piimw.consent import DEFAULT, Consent
from piimw.detect import KnownValues, Span, find_all, merge_spans
from piimw.engine import Result
from piimw.findings import Finding, Sink
from piimw.plan import Plan
from piimw.problem import Problem, internal_error
from piimw.routes import Route, base_media_type, is_json_media_type
from piimw.schema.validate import safe_pointer
from piimw.taxonomy import is_within, use_within

if TYPE_CHECKING:
    from piimw.config import Config

logger = logging.getLogger("piimw")

Headers = list[tuple[bytes, bytes]]


#: What the context variable holds: a one-element list with the exchange, until its request
#: is over. Event loops copy the current context into callbacks scheduled during a request
#: (uvicorn's keep-alive timer is one), and those copies outlive the request by seconds.
#: Emptying the slot when the request is over frees the exchange (and the values it
#: remembers) at once, and keeps such callbacks from seeing a finished request. A list and a
#: tuple, not classes: every request, planned or not, makes one of each.
_Slot = list["Exchange | None"]
_current: ContextVar[_Slot | None] = ContextVar("piimw_exchange", default=None)

#: A request's exchange made current by :func:`enter`: (context token, slot); end it with
#: :func:`leave`. The slot never holds its token on purpose: the token refers to the
#: context, which refers to the slot, so that would be a reference cycle (kept alive until
#: the garbage collector runs, with the exchange in it, when a request is never left).
Activation = tuple[Token[_Slot | None], _Slot]


def enter(exchange: Exchange) -> Activation:
    """Make ``exchange`` current in this context."""
    slot: _Slot = [exchange]
    return _current.set(slot), slot


def enter_closable(exchange: Exchange) -> Activation:
    """:func:`enter` for a request that ends when the server closes its response (WSGI,
    Django); leave it with :func:`leave_closed`.

    A request still current here whose response only waits to be closed
    (:attr:`Exchange.awaiting_close`) is over for the app: a test client that never closes
    its responses starts the next request in the same context. Its slot is emptied, so
    that leaving the new request does not make the old one current again.
    """
    prior = _current.get()
    if prior is not None:
        stale = prior[0]
        if stale is not None and stale.awaiting_close:
            prior[0] = None
    slot: _Slot = [exchange]
    return _current.set(slot), slot


def left(activation: Activation) -> bool:
    """Has :func:`leave` been called for this activation?"""
    return activation[1][0] is None


def leave(activation: Activation) -> None:
    """The request is over: restore the context and empty its slot (wherever it was copied)."""
    token, slot = activation
    slot[0] = None
    try:
        _current.reset(token)
    except ValueError:  # left from another context (some servers close from elsewhere)
        _current.set(None)
    except RuntimeError:  # left before (the token is spent)
        pass


def leave_closed(activation: Activation) -> None:
    """:func:`leave` when the response is closed, which may be out of order: a test client
    closes responses when the test does, after later requests began.

    A request that a later one has ended (:func:`enter_closable` emptied its slot) only
    lets go: resetting the context would undo the later request. Otherwise the context is
    reset as by :func:`leave`, which also ends a request made inside this one and never
    closed (an app that calls another app and drops its body).
    """
    slot = activation[1]
    if slot[0] is None and _current.get() is not slot:
        return
    leave(activation)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM = "application/x-www-form-urlencoded"
#: Media types scanned as text where piimw reads a body it has no JSON plan for (JSON types,
#: ``+json`` ones and a missing type are read as text too).
TEXTUAL_TYPES = ("text/", "application/xml", "application/xhtml+xml", "application/x-ndjson",
                 "application/javascript", "application/x-www-form-urlencoded",
                 "application/ecmascript", "application/x-javascript", "application/yaml",
                 "application/x-yaml", "multipart/mixed", "multipart/form-data")
CREDENTIAL_HEADERS = (b"authorization", b"proxy-authorization", b"x-api-key", b"cookie")
CLIENT_ADDRESS_HEADERS = (b"x-forwarded-for", b"x-real-ip", b"forwarded")
#: Words naming an ``X-`` header that holds a credential (``X-XSRF-Token``, ``X-Auth-Key``).
_CREDENTIAL_WORDS = (b"token", b"csrf", b"xsrf", b"secret", b"auth", b"key", b"password")
#: Words naming an ``X-`` header that carries infrastructure (tracing, proxies, timing).
_INFRASTRUCTURE_WORDS = (b"trace", b"span", b"-id", b"envoy", b"datadog", b"amz",
                         b"request-start", b"b3-", b"timeout", b"version", b"cloud", b"vercel",
                         b"-cf-", b"cdn", b"edge")
#: Words naming a header about a person, whatever else the name says (``X-Forwarded-User``,
#: ``X-Forwarded-Email`` from an authenticating proxy, ``X-User-Id``).
_PERSON_WORDS = (b"user", b"email", b"mail", b"name", b"login", b"account", b"customer")


def _infrastructure(name: bytes) -> bool:
    if any(w in name for w in _PERSON_WORDS):
        return False
    return name in _NOT_HARVESTED or any(w in name for w in _INFRASTRUCTURE_WORDS)


#: ``X-`` headers that carry infrastructure or signals, not what a person sent: not known
#: values (a request id redacted from every log line would help no one). Credentials and
#: client addresses are read as such (:data:`CREDENTIAL_HEADERS`,
#: :data:`CLIENT_ADDRESS_HEADERS`).
_NOT_HARVESTED = frozenset({
    b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-prefix",
    b"x-forwarded-scheme", b"x-forwarded-server", b"x-forwarded-ssl", b"x-scheme",
    b"x-request-id", b"x-correlation-id", b"x-amzn-trace-id", b"x-cloud-trace-context",
    b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled", b"x-b3-flags",
    b"x-requested-with", b"x-http-method-override", b"x-do-not-track", b"x-pii-opt-out",
    b"x-api-version", b"x-client-version"})
_LOCAL_CLIENTS = frozenset(("", "127.0.0.1", "::1", "testclient", "localhost"))
#: ``Exchange(route=...)`` not given: look the route up in the configuration.
_LOOKUP: Any = object()


def current() -> Exchange | None:
    """The exchange of the request being handled in this context, if any."""
    slot = _current.get()
    return None if slot is None else slot[0]


@contextmanager
def activate(exchange: Exchange) -> Iterator[Exchange]:
    activation = enter(exchange)
    try:
        yield exchange
    finally:
        leave(activation)


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def media_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    raw = header(headers, b"content-type")
    return _media_type(raw) if raw else ""


@lru_cache(maxsize=256)
def _media_type(raw: bytes) -> str:
    return base_media_type(raw.decode("latin-1"))


@dataclass
class RequestOutcome:
    """What to hand the app (``body``), or the problem to answer with instead."""

    body: bytes | None = None
    problem: Problem | None = None
    changed: bool = False


@dataclass
class ResponseOutcome:
    status: int
    headers: Headers
    body: bytes
    #: piimw's own 500 replaced the app's response: nothing of the app's may follow.
    withheld: bool = False


class Exchange:
    """Per-request state: route, consent, known values, findings. Never shared."""

    __slots__ = (
        "__weakref__",
        "_client",
        "_consent",
        "_consent_source",
        "_findings",
        "_header_source",
        "_known",
        "_reasons",
        "_request_headers",
        "_request_id",
        "_results",
        "_signals_used",
        "awaiting_close",
        "config",
        "method",
        "path",
        "query_string",
        "request_doc",
        "route",
        "route_template",
        "status",
        "subject_id",
    )

    def __init__(
        self,
        config: Config,
        method: str,
        path: str,
        headers: Headers | Callable[[], Headers],
        query_string: bytes = b"",
        route_template: str | None = None,
        consent: Consent | Callable[[], Consent] | None = None,
        client: str | None = None,
        route: Route | None = _LOOKUP,
    ) -> None:
        # Every request builds one, most of them on routes without a plan: this stays lean
        # (containers for findings and reasons are made when first needed).
        self.config = config
        self.method = method = method.upper()
        self.path = path
        self.query_string = query_string
        if route is _LOOKUP:  # adapters that resolved the route already pass it
            route = config.routes.lookup(method, route_template, path)
        self.route = route
        # The configuration's spelling when a route matched (audit and data map join on it),
        # else the framework's template (still better than a raw path in logs).
        self.route_template = route.template if route is not None else route_template
        # The consent is read on first use (:attr:`consent`): a request on a route without a
        # plan that logs nothing and answers 2xx never needs it.
        self._consent_source: Callable[[], Consent] | None = None
        if callable(headers):
            # Converted on first use (WSGI, Django: from a copy of the environ or META); the
            # middleware has found the consent signals among them and passes them as
            # ``consent``, or a function that reads them (:func:`piimw.wsgi.deferred_headers`).
            self._header_source: Callable[[], Headers] | None = headers
            self._request_headers: Headers | None = None
            if consent is None:
                self._consent: Consent | None = DEFAULT
            elif isinstance(consent, Consent):
                self._consent = consent
            else:
                self._consent = None
                self._consent_source = consent
        else:
            self._header_source = None
            self._request_headers = headers
            self._consent = None
            if consent is not None:
                signals = _header_signals(headers, config)
                given = consent if isinstance(consent, Consent) else consent()
                self._consent = given if signals is DEFAULT else signals.merge(given)
        # Known values are harvested from the headers and query string on first use (a log
        # line, an error page, a planned body): most requests on routes without a plan
        # never need them.
        self._known: KnownValues | None = None
        #: The peer's address (``scope["client"]``, ``REMOTE_ADDR``): a known value.
        self._client = client if client not in _LOCAL_CLIENTS else None
        self._findings: list[Finding] | None = None
        self._results: list[Result] | None = None
        self._signals_used: set[str] | None = None
        self._reasons: set[str] | None = None
        self._request_id: str | None = None
        self.status: int | None = None
        #: The framework's raw user id; never stored or logged as is (the registry
        #: pseudonymises it into ``consent.subject``).
        self.subject_id: str | None = None
        #: The parsed request body, kept in memory for the discovery sampler only.
        self.request_doc: Any = None
        #: The app has answered and runs no code for this request; only the server's closing
        #: of the response is pending (WSGI, Django). See :func:`enter_closable`.
        self.awaiting_close = False

    @property
    def consent(self) -> Consent:
        """What the subject refused or asked for: the request's signals (headers, then
        what adapters add: session flag, registry record)."""
        consent = self._consent
        if consent is None:
            # Threads of one request (sync_to_async, copied contexts) may ask at once: one
            # reads, under a lock, and none stores over what another stored or merged.
            with _CONSENT_LOCK:
                consent = self._consent
                if consent is None:
                    source = self._consent_source
                    consent = self._consent = source() if source is not None else \
                        _header_signals(self._request_headers or [], self.config)
                    self._consent_source = None
        return consent

    @consent.setter
    def consent(self, consent: Consent) -> None:
        with _CONSENT_LOCK:
            self._consent = consent

    @property
    def request_headers(self) -> Headers:
        """The request's headers, as ASGI spells them (lower-case names, latin-1 bytes)."""
        headers = self._request_headers
        if headers is None:
            source = self._header_source
            headers = self._request_headers = source() if source is not None else []
            self._header_source = None
        return headers

    @property
    def reasons(self) -> set[str]:
        """Reason codes of events that are not findings (unparseable, invalid, too large)."""
        reasons = self._reasons
        if reasons is None:
            reasons = self._reasons = set()
        return reasons

    @property
    def signals_used(self) -> set[str]:
        """Opt-out signals that changed something in this request (for ``Vary``, audit)."""
        used = self._signals_used
        if used is None:
            used = self._signals_used = set()
        return used

    @property
    def known(self) -> KnownValues:
        """The values this request brought in (headers, query, client address, bodies)."""
        known = self._known
        if known is None:
            known = self._known = KnownValues()
            try:
                self._harvest_headers(self.request_headers)
                if self.query_string:
                    self._harvest_query(self.query_string)
                if self.route is not None and self.route.path_tags:
                    for value, category in self.route.path_values(self.path):
                        known.add(value, category)
                if self._client is not None:
                    known.add(self._client, "user.device.ip_address")
            except BaseException:
                # Never leave them half-harvested: every use fails (closed) as this one did,
                # rather than later uses scrubbing without the request's values.
                self._known = None
                raise
        return known

    @property
    def request_id(self) -> str:
        """Random id of this request, drawn when first asked for (most requests never are)."""
        rid = self._request_id
        if rid is None:
            rid = self._request_id = secrets.token_hex(8)
        return rid

    # -- what needs doing -----------------------------------------------------------------
    @property
    def passthrough(self) -> bool:
        """No plan: the app sees the request untouched, and only an error status is watched.

        Opt-out signals do not change that: without a plan nothing in the request or a
        successful response is inspected, whatever the consent; the consent still reaches
        the logs, error pages and events through this exchange.
        """
        return self.route is None

    @property
    def wants_request_body(self) -> bool:
        route = self.route
        return route is not None and route.request is not None and self.method in BODY_METHODS

    def set_subject(self, raw_id: str) -> None:
        """Adapters hand over the authenticated user's id (``str(user.pk)``)."""
        self.subject_id = raw_id

    def set_consent(self, consent: Consent) -> None:
        """Adapters add what they learn later (session flag, registry) to the header signals."""
        with _CONSENT_LOCK:  # a read, a merge and a store that no first read may undo
            self._consent = self.consent.merge(consent)

    def resolve_consent(self, user_id: str | int | None) -> None:
        """Add the registry's record for the signed-in user (headers and session already in).

        Replaces rather than merges: a user's explicit opt-in recorded after a sticky signal
        may lift it (see :meth:`piimw.registry.Registry.consent_for`). Writes a GPC signal
        through to the registry; fails closed if the registry is down. Anonymous: no-op.
        """
        registry = self.config.registry
        if registry is None or user_id is None or user_id == "":
            return
        self.consent = registry.consent_for(registry.adopt(user_id), self.consent)

    def audit_refusal(self) -> Problem | None:
        """503 while an audit trail in ``fail_closed`` mode cannot record this request, whose
        route or findings touch sensitive-tier data (:meth:`piimw.audit.AuditTrail.refuses`);
        None otherwise. Middlewares ask once the request side is inspected."""
        audit = self.config.audit
        if audit is None or not audit.refuses(self):
            return None
        return Problem(503, "audit-unavailable", "This request cannot be recorded now; try again.")

    # -- harvesting known values ----------------------------------------------------------
    def _harvest_headers(self, headers: Headers) -> None:
        for name, value in headers:
            if not value:
                continue
            if name == b"referer" and b"?" in value:
                self._harvest_query(value.partition(b"?")[2].partition(b"#")[0])
            elif name[:2] == b"x-" and name not in CREDENTIAL_HEADERS and \
                    name not in CLIENT_ADDRESS_HEADERS and not _infrastructure(name):
                # An app's own headers (X-User-Email, X-Customer-Name): what they carry
                # came with the request as a query value does; a token is a credential.
                self.known.add(value.decode("latin-1"), "user.authorization.credentials"
                               if any(t in name for t in _CREDENTIAL_WORDS) else "user")
            if name in CREDENTIAL_HEADERS:
                text = value.decode("latin-1")
                if name == b"cookie":
                    for part in text.split(";"):
                        _, _, v = part.partition("=")
                        if len(v.strip()) >= 8:
                            self.known.add(v.strip(), "user.authorization.credentials")
                    continue
                scheme, _, token = text.partition(" ")
                token = token.strip()
                self.known.add(token or scheme, "user.authorization.credentials")
                if token and scheme.lower() == "basic":
                    self._harvest_basic(token)
            elif name in CLIENT_ADDRESS_HEADERS:
                # Proxies put the real client address here; access logs print it.
                for part in value.decode("latin-1").replace(";", ",").split(","):
                    addr = part.strip().removeprefix("for=").strip('"[]')
                    if addr.count(":") == 1 and "." in addr:  # host:port
                        addr = addr.rsplit(":", 1)[0]
                    try:
                        ipaddress.ip_address(addr)
                    except ValueError:
                        continue  # "proto=https", "unknown", obfuscated identifiers
                    self.add_client_address(addr)

    def _harvest_basic(self, token: str) -> None:
        """The user name and password of Basic credentials: access logs print the decoded
        name (gunicorn's ``%(u)s``), and an app's own messages the name or password."""
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return
        user, _, password = decoded.partition(":")
        self.known.add(user, "user.authorization.credentials")
        if password:
            self.known.add(password, "user.authorization.credentials")

    def _harvest_query(self, query_string: bytes) -> None:
        for _, v in parse_qsl(query_string.decode("latin-1"), keep_blank_values=False):
            self.known.add(v, "user")

    def add_client_address(self, host: str | None) -> None:
        if host and host not in _LOCAL_CLIENTS:
            if self._known is None:
                self._client = host  # harvested with the rest on first use
            else:
                self._known.add(host, "user.device.ip_address")

    # -- query string ---------------------------------------------------------------------
    def scrub_query(self) -> bytes | Problem:
        """The query string the app should see (plan + consent for sink ``app``), or the
        422 problem to answer with when the policy refuses a parameter (``reject``), as it
        refuses the same value in a body."""
        route = self.route
        if route is None or route.query is None or not self.query_string:
            return self.query_string
        pairs = parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True)
        doc = {k: v for k, v in pairs}
        res = self._scrub(doc, route.query, "app", detect=False)
        if res.rejected is not None:
            # The plan's keys are the declared parameter names: the name never echoes a
            # key the client chose.
            name = next(iter(res.rejected_path or ()), "")
            return Problem(422, "rejected", "The request carries data this endpoint must not "
                           "receive.", [{"parameter": str(name), "keyword": "x-pii"}])
        if not res.findings or res.value == doc:
            return self.query_string
        out = [(k, res.value[k]) for k, _ in pairs if k in res.value]
        return urlencode(out, doseq=False).encode("latin-1")

    # -- request body ---------------------------------------------------------------------
    def request_body(self, headers: Headers, body: bytes) -> RequestOutcome:
        """Parse, validate and scrub a request body for sink ``app``. Fails closed."""
        try:
            return self._request_body(headers, body)
        except RecursionError:
            # orjson reads 1,024 levels; the validator and the walk recurse in Python. A
            # client's mistake (or probe), not piimw's: 400, not the 500 of a failure.
            logger.info("piimw: request body on %s %s is nested too deeply to check",
                        self.method, self.route_template)
            self.reasons.add("failclosed.unparseable")
            return RequestOutcome(problem=Problem(
                400, "too-deep", "The request body is nested too deeply to be checked."))

    def _request_body(self, headers: Headers, body: bytes) -> RequestOutcome:
        route = self.route
        if route is None or route.request is None:
            return RequestOutcome(body)
        mt = media_type(headers)
        if not body:
            if route.request.required and route.request.validator is not None and \
                    self.config.validate_requests:
                return RequestOutcome(problem=Problem(
                    422, "validation", "The request body is empty.",
                    [{"pointer": "/", "keyword": "required"}]))
            return RequestOutcome(body)
        if content_coding(headers) is not None:
            return RequestOutcome(problem=Problem(
                415, "unsupported-encoding", "Compressed request bodies are not accepted here."))
        if is_json_media_type(mt):
            return self._json_request(body)
        if mt == FORM:
            return self._form_request(body)
        if mt == "multipart/form-data":
            from piimw.multipart import scrub_multipart

            return scrub_multipart(self, headers, body)
        if mt in route.request.media_types:
            # Declared without x-pii (a file upload): unread, unless it is JSON after all,
            # which apps parse whatever the type says (Starlette's request.json()).
            return self._sniffed_json(body)
        return RequestOutcome(problem=Problem(
            415, "unsupported-media-type",
            "Personal data is checked here in JSON, form and multipart bodies only; this "
            "media type is not declared, or its schema marks personal data piimw cannot "
            "read in it."))

    def _json_request(self, body: bytes) -> RequestOutcome:
        assert self.route is not None
        assert self.route.request is not None
        spec = self.route.request
        try:
            doc = orjson.loads(body)
            if self.config.discovery is not None:
                self.request_doc = doc
        except orjson.JSONDecodeError as e:
            logger.info("piimw: request body on %s %s is not valid JSON (position %d)",
                        self.method, self.route_template, e.pos)
            self.reasons.add("failclosed.unparseable")
            return RequestOutcome(problem=Problem(400, "malformed-json",
                                                  "The request body is not valid JSON."))
        if self.config.validate_requests and spec.validator is not None and \
                not spec.validator.is_valid(doc):
            self.reasons.add("schema.invalid")
            problems = spec.validator.problems(doc)
            self._remember_tagged(doc)
            return RequestOutcome(problem=Problem(
                422, "validation", f"The request body failed validation ({len(problems)} "
                "problem(s)).", [p.as_dict() for p in problems]))
        return self._scrubbed_request(doc, body)

    def _sniffed_json(self, body: bytes) -> RequestOutcome:
        """A body in a declared type piimw does not read: passed on, unless it parses as a
        JSON object or array, which the plan then scrubs (not validated: it is not declared
        as JSON)."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._leniently_read(body)
        if not isinstance(doc, (dict, list)):
            return RequestOutcome(body)
        return self._scrubbed_request(doc, body)

    def _leniently_read(self, body: bytes) -> RequestOutcome:
        """What orjson refuses, the standard library's ``json.loads`` (which the frameworks
        use) may still read: a BOM, UTF-16 or -32, ``NaN``, lone surrogate escapes. Such a
        body is scrubbed as that parser reads it, and written back the way it accepts."""
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return RequestOutcome(body)  # JSON to no one: the declared type's own business
        if not isinstance(doc, (dict, list)):
            return RequestOutcome(body)
        return self._scrubbed_request(doc, body, lenient=True)

    def _scrubbed_request(self, doc: Any, body: bytes, lenient: bool = False) -> RequestOutcome:
        """The request body scrubbed by the plan; ``lenient``: read by the standard library,
        and written back in ASCII JSON it reads (NaN, lone surrogates escaped)."""
        assert self.route is not None
        assert self.route.request is not None
        spec = self.route.request
        res = self._scrub(doc, spec.plan, "app", collect=True)
        value, res.value = res.value, None  # keep the findings, not the document (see _scrub)
        if res.rejected is not None:
            return RequestOutcome(problem=rejected_problem(res.rejected_path,
                                                           declared_names(self.route)))
        if value is doc and forwards_what_was_read(body, doc):
            # A key given twice goes as read, leniently read bodies too: the standard
            # library keeps the last copy as orjson does, and the first went on unread.
            return RequestOutcome(body)
        if lenient:
            return RequestOutcome(json.dumps(value, separators=(",", ":")).encode("ascii"),
                                  changed=True)
        return RequestOutcome(self._rewritten(body, value, spec.plan, "app"), changed=True)

    def _rewritten(self, raw: bytes, value: Any, plan: Any, sink: Sink) -> bytes:
        """The scrubbed document as JSON. Where orjson may have read a number inexactly (an
        integer beyond 64 bits, which it reads as a float), the body is read again with the
        standard library and scrubbed again, replacing the first pass's findings. Such a
        float is written with an exponent (``e+18`` or more): output without one needs no
        look at the input."""
        new = orjson.dumps(value)
        if not has_exponent(new) or not may_lose_numbers(raw):
            return new
        try:
            doc = loads_exact(raw)
        except ValueError:
            return new  # nested too deep for the standard library: orjson's reading stands
        if self._results:
            self._results.pop()
        res = self._scrub(doc, plan, sink, collect=sink == "app")
        exact, res.value = res.value, None
        return dumps_exact(exact)

    def _remember_tagged(self, doc: Any) -> None:
        """An invalid body is refused, but its values may still reach logs: remember them."""
        assert self.route is not None
        assert self.route.request is not None
        self.config.scrubber.scrub(doc, self.route.request.plan, sink="app",
                                   consent=self.consent, known=self.known, collect=True)

    def _form_request(self, body: bytes) -> RequestOutcome:
        assert self.route is not None
        assert self.route.request is not None
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                              max_num_fields=10000)
        except (UnicodeDecodeError, ValueError):
            return RequestOutcome(problem=Problem(400, "malformed-form",
                                                  "The form body cannot be decoded."))
        doc: dict[str, Any] = {}
        for k, v in pairs:
            doc.setdefault(k, []).append(v)
        flat = {k: v[0] if len(v) == 1 else v for k, v in doc.items()}
        res = self._scrub(flat, self.route.request.plan, "app", collect=True)
        if res.rejected is not None:
            return RequestOutcome(problem=rejected_problem(res.rejected_path,
                                                           declared_names(self.route)))
        if res.value is flat:
            return RequestOutcome(body)
        out: list[tuple[str, str]] = []
        for k, v in res.value.items():
            for item in v if isinstance(v, list) else [v]:
                out.append((k, "" if item is None else str(item)))
        return RequestOutcome(urlencode(out).encode("utf-8"), changed=True)

    def _scrub(self, doc: Any, plan: Any, sink: Sink, *, collect: bool = False,
               detect: bool | None = None) -> Result:
        """Scrub for this request and keep the result for :attr:`findings`.

        Callers that are done with ``result.value`` set it to None: an exchange lives as long
        as its request, across the server's awaits, and parsed documents kept alive that long
        drive the garbage collector (a 2 KB body is dozens of containers).
        """
        res = self.config.scrubber.scrub(
            doc, plan, sink=sink, consent=self.consent, route=self.route_template,
            known=self.known, collect=collect, detect=detect)
        if self._results is None:
            self._results = [res]
        else:
            self._results.append(res)
        if not self.consent.is_default:  # else no signal can have changed anything
            self.signals_used.update(res.changed_by_consent)
        return res

    def record(self, findings: list[Finding]) -> None:
        """Findings made outside the exchange's own inspection (log filter, error reports)."""
        self._record(findings)

    def _record(self, findings: list[Finding]) -> None:
        if not findings:
            return
        if self._findings is None:
            self._findings = []
        self._findings.extend(findings)
        for f in findings:
            if f.reason.startswith("optout."):
                self.signals_used.add(f.reason[7:])

    @property
    def findings(self) -> list[Finding]:
        """Everything decided in this request (built lazily: the hot path keeps tuples)."""
        out = list(self._findings or ())
        for r in self._results or ():
            out.extend(r.findings)
        return out

    # -- response -------------------------------------------------------------------------
    def may_want_response(self, status: int) -> bool:
        """Could :meth:`wants_response_body` say yes to this status, whatever the headers?
        Not without a plan unless it is an error: WSGI and Django then leave the response's
        headers unconverted."""
        return self.route is not None or status >= 400

    def wants_response_body(self, status: int, headers: Headers) -> bool:
        """Should the middleware buffer this response? Decided on the start message alone.

        Fails closed: if deciding fails, buffer (the body is then inspected or withheld).
        """
        try:
            return self._wants_response_body(status, headers)
        except Exception as exc:
            logger.error("piimw: response inspection failed (%s)", type(exc).__name__)
            return True

    def _wants_response_body(self, status: int, headers: Headers) -> bool:
        self.status = status
        if status in (204, 304) or 100 <= status < 200 or not self.may_want_response(status):
            return False
        mt = media_type(headers)
        route = self.route
        spec = route.response_for(status) if route is not None else None
        if spec is not None and mt in spec.streams:
            # Read line by line as it streams (line_plan); a compressed one, whole; a HEAD
            # (no body) through _response_body, for the headers its GET would get.
            return self.method == "HEAD" or content_coding(headers) is not None
        if spec is not None and (is_json_media_type(mt) or not mt or (
                _textual(mt) and mt not in spec.media_types)):
            # JSON is walked by its plan; text the operation does not declare for this status
            # is scanned (see _response_body); declared text (a CSV export) is its own.
            return True
        # An error page; or, on a planned route, a status its operation does not describe
        # (a 201 where 200 is declared, a 202 declared without content): scanned as text, not
        # passed on unread with the request's tagged values in it.
        if status >= 400:
            return bool(self.config.scrub_error_pages
                        and (not mt or is_json_media_type(mt) or _textual(mt)))
        if spec is not None:
            # A type the operation does not declare at this status (an octet-stream where
            # JSON is): read, then scanned as text or withheld (see _response_body). An
            # event stream never ends: it passes, as an undeclared one always has.
            return mt not in spec.media_types and mt != "text/event-stream"
        return bool(route is not None and (not mt or is_json_media_type(mt) or _textual(mt)))

    def line_plan(self, status: int, headers: Headers) -> Plan | None:
        """The plan of each line of a response streaming tagged JSON lines (NDJSON), or None.
        Asked once :meth:`wants_response_body` said no; a compressed stream is buffered."""
        route = self.route
        spec = route.response_for(status) if route is not None else None
        if spec is None or not spec.streams or content_coding(headers) is not None \
                or self.method == "HEAD":  # no body: its headers pass as a GET's would
            return None
        return spec.streams.get(media_type(headers))

    def stream_headers(self, status: int, headers: Headers, plan: Plan) -> Headers:
        """The headers of a JSON lines stream read line by line: no length or validators
        (lines change), ``Vary`` as for any planned response, the rest scrubbed."""
        kept = [(k, v) for k, v in headers if k not in LENGTH_AND_VALIDATORS]
        return self.response_headers(status, self._vary(kept, plan))

    def response_line(self, plan: Plan, line: bytes, keep: bool = True) -> bytes:
        """One line of a JSON lines stream, scrubbed by the items' plan (``\n`` kept).

        A line that is not JSON is scanned as text by the detectors and known values.
        ``keep``: its findings are kept for the audit record (:class:`LineStream` stops
        keeping them past :data:`_STREAM_RESULTS_MAX` lines). Never raises: a line that
        cannot be inspected is left out (fail closed), logged without its value."""
        try:
            return self._response_line(plan, line, keep)
        except Exception as exc:
            logger.error("piimw: a streamed line on %s %s could not be inspected (%s); "
                         "left out", self.method, self.route_template, type(exc).__name__)
            return b""

    def _response_line(self, plan: Plan, line: bytes, keep: bool) -> bytes:
        end = b"\n" if line.endswith(b"\n") else b""
        raw = line[:-1] if end else line
        if not raw.strip():
            return line
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:  # what the standard library reads (NaN, a BOM, lone surrogates), clients do
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                text = raw.decode("utf-8", "replace")
                new, findings = self.config.scrubber.scrub_text(
                    text, sink="client", consent=self.consent, known=self.known,
                    route=self.route_template, location="response")
                self._record(findings)
                return line if not findings else new.encode("utf-8") + end
            value = self._scrubbed_line(doc, plan, keep)
            return json.dumps(value, separators=(",", ":")).encode("ascii") + end
        value = self._scrubbed_line(doc, plan, keep)
        if value is doc and forwards_what_was_read(raw, doc):
            return line
        return self._rewritten(raw, value, plan, "client") + end

    def _scrubbed_line(self, doc: Any, plan: Plan, keep: bool) -> Any:
        res = self._scrub(doc, plan, "client")
        value, res.value = res.value, None
        if not keep and self._results:
            self._results.pop()  # its findings are not kept (what the line did is)
        return value

    def response_body(self, status: int, headers: Headers, body: bytes) -> ResponseOutcome:
        """Inspect a buffered response; on any doubt, withhold it (fail closed).

        Never raises: an internal error withholds the response too, logged without values.
        """
        try:
            return self._response_body(status, headers, body)
        except Exception as exc:
            logger.error("piimw: response inspection failed (%s); withheld",
                         type(exc).__name__)
            return self._withheld()

    def _response_body(self, status: int, headers: Headers, body: bytes) -> ResponseOutcome:
        if self.method == "HEAD":
            # No body goes out (some servers would send what the app wrote: none is
            # forwarded), and the validators of the GET body it stands for describe bytes
            # the plan may change. Its length is no one's personal data. It varies as the
            # GET would.
            kept = [(k, v) for k, v in headers if k not in (b"etag", b"content-md5")]
            spec = self.route.response_for(status) if self.route is not None else None
            if spec is None:
                return ResponseOutcome(status, kept, b"")
            varies_as = spec.streams.get(media_type(headers)) or spec.plan
            return ResponseOutcome(status, self._vary(kept, varies_as), b"")
        encoding = content_coding(headers)
        try:
            raw = decode_content(body, encoding, self.config.max_response_bytes)
        except ValueError:
            logger.warning("piimw: response on %s %s could not be decompressed; withheld",
                           self.method, self.route_template)
            return self._withheld()
        if not raw:
            # Nothing to read and nothing to leak (Starlette's Response(status_code=200)
            # has no type either): not a JSON parse error to withhold.
            return ResponseOutcome(status, headers, body)
        route = self.route
        spec = route.response_for(status) if route is not None else None
        mt = media_type(headers)
        plan = spec.streams.get(mt) if spec is not None else None
        if plan is not None:  # a compressed stream of tagged JSON lines, read whole
            lines = LineStream(self, plan)
            out = lines.feed(raw) + lines.close()
            if lines.over:
                return self._withheld()
            if out == raw:
                return ResponseOutcome(status, self._vary(headers, plan), body)
            new = encode_content(out, encoding)
            return ResponseOutcome(status, self._vary(_rewrite(headers, new), plan), new)
        if spec is not None and (is_json_media_type(mt) or not mt):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                logger.warning("piimw: response on %s %s is not valid JSON; withheld",
                               self.method, self.route_template)
                return self._withheld()
            if self.config.validate_responses and spec.validator is not None and \
                    not spec.validator.is_valid(doc):
                for p in spec.validator.problems(doc, limit=5):
                    logger.warning("piimw: response on %s %s violates its schema at %s (%s)",
                                   self.method, self.route_template, p.pointer or "/",
                                   p.keyword)
            res = self._scrub(doc, spec.plan, "client")
            value, res.value = res.value, None  # keep the findings, not the document
            if value is doc and forwards_what_was_read(raw, doc):
                return ResponseOutcome(status, self._vary(headers, spec.plan), body)
            new = encode_content(self._rewritten(raw, value, spec.plan, "client"), encoding)
            return ResponseOutcome(status, self._vary(_rewrite(headers, new), spec.plan), new)
        declared_charset = _charset(headers)
        if spec is not None and not _textual(mt) and declared_charset is None and \
                not _is_utf8(raw):
            # Bytes of a type the operation does not declare at this status (an image, an
            # octet-stream where JSON is declared), not text: the plan cannot read them. If
            # it protects something, they may carry it: withheld.
            if spec.plan.empty:
                return ResponseOutcome(status, headers, body)
            logger.warning("piimw: response on %s %s is %s, which its operation does not "
                           "declare for status %d, and not text; withheld", self.method,
                           self.route_template, mt, status)
            return self._withheld()
        # An error page, or text where the plan expects JSON: scrub the text by detectors
        # and known values, read as a browser reads it (see piimw.charsets.page_text).
        text, charset, two_ways = page_text(raw, declared_charset)
        value, findings = self.config.scrubber.scrub_text(
            text, sink=_text_sink(status), consent=self.consent,
            known=self.known, route=self.route_template, location="response")
        self._record(findings)
        out = raw if not findings else encode_page(value, charset)
        if two_ways and self._shows_more(raw, text, status):
            # Not UTF-8, and no charset browsers know: scrubbed as windows-1252, but a
            # browser taking it for UTF-8 with a stray byte would show a value the policy
            # removes. It cannot be rewritten in a charset nobody named.
            logger.warning("piimw: response on %s %s has no usable charset and is not "
                           "UTF-8; withheld", self.method, self.route_template)
            return self._withheld()
        if not findings:
            return ResponseOutcome(status, headers, body)
        new = encode_content(out, encoding)
        return ResponseOutcome(status, _rewrite(headers, new), new)

    def _shows_more(self, raw: bytes, read: str, status: int) -> bool:
        """Would a browser taking ``raw`` for UTF-8 see a value that ``read`` (its
        windows-1252 reading, just scrubbed) did not show? Each value the UTF-8 reading
        finds is located in bytes (invalid ones read as one character each); one whose
        bytes the windows-1252 reading found a value around was decided by that scrub.
        Any other counts unless the policy allows it. (The text around a value reads
        differently: a multi-byte character before an SSN can hide its keyword.)"""
        scrubber = self.config.scrubber
        utf8 = raw.decode("utf-8", errors="surrogateescape")
        spans = find_all(utf8, scrubber.detectors, self.known)
        if not spans:
            return False
        # Sorted and non-overlapping, as find_all returns them: one pass, one bisect each.
        found = find_all(read, scrubber.detectors, self.known)
        starts = [s.start for s in found]
        sink = _text_sink(status)
        char = byte = 0
        for span in spans:
            byte += len(utf8[char:span.start].encode("utf-8", "surrogateescape"))
            char = span.start
            end = byte + len(utf8[span.start:span.end].encode("utf-8", "surrogateescape"))
            i = bisect_right(starts, byte) - 1
            if i >= 0 and end <= found[i].end:
                continue
            d = scrubber.policy.decide(span.category, ("essential",), sink, self.consent,
                                       route=self.route_template, declared=False)
            if d.action != "allow":
                return True
        return False

    def passes_unread(self, status: int, headers: Headers, head: bytes) -> bool:
        """May a response piimw cannot read whole (grown past ``max_response_bytes``, or a
        file the server sends itself) go on unread? Only one :meth:`response_body` would
        pass as it is: a type the operation does not declare at a status whose schema tags
        nothing, neither text by its type nor by its first bytes ``head``, not compressed
        (a download, where the operation declares JSON). Withheld, it broke every large
        file a planned route sends; read, it passes. Never raises: on doubt, no."""
        try:
            return self._passes_unread(status, headers, head)
        except Exception as exc:
            logger.error("piimw: response inspection failed (%s)", type(exc).__name__)
            return False

    def _passes_unread(self, status: int, headers: Headers, head: bytes) -> bool:
        route = self.route
        spec = route.response_for(status) if route is not None else None
        mt = media_type(headers)
        if spec is None or not spec.plan.empty or not mt or is_json_media_type(mt) or \
                _textual(mt) or mt in spec.streams or _charset(headers) is not None or \
                content_coding(headers) is not None:
            return False
        try:  # a character cut at the end of ``head`` is still text
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        except UnicodeDecodeError:
            return True
        return False

    def too_large(self) -> ResponseOutcome:
        self.reasons.add("failclosed.too_large")
        logger.warning("piimw: response on %s %s is larger than max_response_bytes; withheld",
                       self.method, self.route_template)
        return self._withheld()

    def _withheld(self) -> ResponseOutcome:
        p = internal_error()
        body = p.body()
        self.status = 500
        return ResponseOutcome(500, p.headers(body), body, withheld=True)

    def response_trailers(self, headers: Headers, withheld: bool) -> Headers:
        """Trailers after an inspected body (ASGI ``http.response.trailers``): none after a
        withheld response, else their values scrubbed as text (a gRPC-style status message
        may repeat what the body held). Never raises: on an internal error, none."""
        if withheld:
            return []
        try:
            return self._scrubbed_trailers(headers)
        except Exception as exc:
            logger.error("piimw: trailer inspection failed (%s); trailers withheld",
                         type(exc).__name__)
            return []

    def _scrubbed_trailers(self, headers: Headers) -> Headers:
        sink = _text_sink(self.status or 0)
        return [(name, self._scrubbed_value(name, value, sink, "trailers"))
                for name, value in headers]

    def response_headers(self, status: int, headers: Headers) -> Headers:
        """The response's headers with the values of those that say something (``Location``,
        ``Content-Disposition``, ``Set-Cookie``, ``Link``, an app's own headers: all but
        :data:`FRAMING_RESPONSE_HEADERS`) scrubbed as a page is, for any status and route:
        a redirect built from the request's email, a filename that is a name. Never raises:
        on an internal error those headers are left out (fail closed)."""
        if not scans_response_headers(headers):
            return headers
        try:
            sink = _text_sink(status)
            return [(name, self._scrubbed_value(name, value, sink, "headers"))
                    if _scanned_header(name) else (name, value) for name, value in headers]
        except Exception as exc:
            logger.error("piimw: response header inspection failed (%s); those headers "
                         "withheld", type(exc).__name__)
            return [(name, value) for name, value in headers if not _scanned_header(name)]

    def _header_spans(self, name: bytes, text: str, location: str) -> list[Span]:
        """What a header value holds that must not go out. In a response header (not a
        trailer), the request's untagged values (query, ``Referer``, ``X-`` headers: category
        ``user``) are the app's to echo (``?next=/orders``, ``?page=2`` in a redirect or a
        ``Link``); the detectors, tagged values and credentials still count. In a
        ``Set-Cookie``, credentials and tokens are the app's (a renewed session cookie); in
        a URL header, the request's own host (a private address in a redirect).

        On a route without a plan the request brought no tagged value: a response header
        there gets the detectors (and the known values only if something already gathered
        them), so that a renewed session cookie costs no harvest of the request's values."""
        detectors = self.config.scrubber.detectors
        spans = detectors.find(text)
        known = self.known if (location != "headers" or self.route is not None
                               or self._known is not None) else None
        if known:
            found = known.find(text)
            if location == "headers":
                found = [s for s in found if s.category != "user"]
            if found:
                spans = merge_spans(spans + found) if spans else found
        if spans and name in (b"set-cookie", b"set-cookie-value"):
            spans = [s for s in spans if not is_within(s.category, "user.authorization")]
        if spans and name in _URL_HEADERS:
            hosts = self._own_hosts()
            spans = [s for s in spans if text[s.start:s.end].lower() not in hosts]
        return spans

    def _own_hosts(self) -> frozenset[str]:
        """The host names the request was addressed to (``Host``, ``X-Forwarded-Host``)."""
        hosts: set[str] = set()
        for name, value in self.request_headers:
            if name in (b"host", b"x-forwarded-host"):
                for part in value.decode("latin-1").split(","):
                    host = part.strip().lower()
                    if host.startswith("["):
                        host = host[1:].partition("]")[0]
                    elif host.count(":") == 1:
                        host = host.partition(":")[0]
                    if host:
                        hosts.add(host)
        return frozenset(hosts)

    def _scrubbed_value(self, name: bytes, value: bytes, sink: Sink, location: str) -> bytes:
        """One header value scrubbed by detectors and known values: read as UTF-8 where it
        is (a raw filename), else latin-1. A ``Set-Cookie`` is read part by part
        (:meth:`_scrubbed_cookie`)."""
        if name == b"set-cookie":
            return self._scrubbed_cookie(value, sink, location)
        try:
            text, codec = value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, codec = value.decode("latin-1"), "latin-1"
        scrubber = self.config.scrubber
        spans = self._header_spans(name, text, location)
        if not spans:
            return value
        new, findings = scrubber.scrub_spans(text, spans, sink=sink, consent=self.consent,
                                             route=self.route_template, location=location)
        self._record(findings)
        return value if new == text else new.encode(codec, "replace")

    def _scrubbed_cookie(self, header: bytes, sink: Sink, location: str) -> bytes:
        """A ``Set-Cookie``: its name and attributes scanned as any header value, its value
        too unless it is a signed token (the app's session); a quoted value is read with its
        escapes undone (``"Zo\\303\\253"`` hid a name) and quoted back."""
        name, eq, rest = header.partition(b"=")
        if not eq:
            return self._scrubbed_value(b"set-cookie-value", header, sink, location)
        value, semi, attrs = rest.partition(b";")
        new_name = self._scrubbed_value(b"set-cookie-value", name, sink, location)
        new_attrs = self._scrubbed_value(b"set-cookie-value", attrs, sink, location) \
            if attrs else attrs
        quoted = _quoted_cookie(value)
        if quoted is not None:
            inner = self._scrubbed_value(b"set-cookie-value", quoted, sink, location)
            new_value = value if inner is quoted else _cookie_quote(inner)
        elif (payload := _token_payload(value)) is not None and not self._header_spans(
                b"set-cookie-value", payload.decode("latin-1"), location):
            new_value = value  # the rest of a signed token (signature, timestamp) is the app's
        else:
            new_value = self._scrubbed_value(b"set-cookie-value", value, sink, location)
        if new_name is name and new_value is value and new_attrs is attrs:
            return header
        return new_name + eq + new_value + semi + new_attrs

    def _vary(self, headers: Headers, plan: Plan) -> Headers:
        """The response's headers plus ``Vary`` naming the request headers whose signals
        changed it, and, where the plan has values a signal may change (a use other than
        ``essential``), every signal header, sent or not: a shared cache must not serve the
        response of a request without a signal to one with it, nor the other way round.
        (``Cookie`` only when a cookie's signal changed it: varying on it always would make
        every planned response per user.)"""
        value = self.vary_for(plan)
        return headers if value is None else [*headers, (b"vary", value.encode("latin-1"))]

    def vary_for(self, plan: Plan) -> str | None:
        """The ``Vary`` value :meth:`_vary` adds for ``plan``, or None."""
        settings = self.config.consent_settings
        names = set(settings.header_vary) if _signal_sensitive(plan) else set()
        if self._signals_used:
            names.update(name for s in self._signals_used for name in settings.vary.get(s, ()))
        return ", ".join(sorted(names)) if names else None


_COOKIE_ESCAPE = re.compile(rb"\\([0-3][0-7]{2}|.)", re.S)


def _quoted_cookie(value: bytes) -> bytes | None:
    """A cookie value quoted with backslash escapes (``http.cookies`` and Werkzeug write
    non-ASCII characters, ``,`` and ``;`` as octal escapes), unquoted; else None. The result
    is the escaped bytes (Werkzeug: UTF-8; ``http.cookies``: one byte per Latin-1 character)."""
    value = value.strip()
    if len(value) < 2 or value[:1] != b'"' or value[-1:] != b'"' or b"\\" not in value:
        return None
    return _COOKIE_ESCAPE.sub(
        lambda m: bytes([int(m.group(1), 8)]) if len(m.group(1)) == 3 else m.group(1),
        value[1:-1])


def _cookie_quote(value: bytes) -> bytes:
    """``value`` quoted back as Werkzeug quotes a cookie (octal escapes, UTF-8 bytes)."""
    out = bytearray(b'"')
    for byte in value:
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif 0x20 <= byte < 0x7F and byte not in b",;":
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    out += b'"'
    return bytes(out)


_TOKEN_PART = re.compile(rb"[A-Za-z0-9_=+/-]+")
_DIGITS = re.compile(rb"[0-9]")
_LETTERS = re.compile(rb"[A-Za-z]")


def _token_payload(value: bytes) -> bytes | None:
    """The payload of a cookie value that is a signed token (Flask's and Starlette's
    sessions, a JWT: an encoded payload, then timestamp and signature, joined by dots or
    colons), else None; a name or an email never is one. Only the payload is scanned: the
    detectors would find the token as a whole (a JWT) and then leave it alone, a cost on
    every response renewing a session."""
    parts = value.strip(b' "').lstrip(b".").replace(b":", b".").split(b".")
    if len(parts) < 2 or not all(_TOKEN_PART.fullmatch(p) for p in parts):
        return None
    # The payload comes first and must itself be encoded: Django's set_signed_cookie and
    # itsdangerous' Signer write it in clear ("123-45-6789:1xXeNh:sig"), and such a value
    # is scanned. Signatures and timestamps follow (a word and one long run is no token).
    first = parts[0]
    if len(first) < 20 or not _DIGITS.search(first) or not _LETTERS.search(first):
        return None
    return first if sum(len(p) >= 6 for p in parts) >= 2 else None


#: Lines of a streamed response whose findings are kept for the audit record (see
#: :meth:`Exchange.response_line`).
_STREAM_RESULTS_MAX = 1000
#: Response headers holding a URL: the request's own host may appear in them.
_URL_HEADERS = frozenset({b"location", b"content-location", b"link", b"refresh"})
#: Response headers that frame or secure a response and never hold what a request brought
#: in: never read. Every other header is scanned (custom ones are named without ``X-``
#: since RFC 6648: ``Customer-Email``), ``Server-Timing`` descriptions included.
FRAMING_RESPONSE_HEADERS = frozenset({
    b"content-type", b"content-length", b"content-encoding", b"content-language",
    b"content-range", b"content-md5", b"digest", b"transfer-encoding", b"trailer",
    b"connection", b"keep-alive", b"upgrade", b"date", b"server", b"vary", b"etag",
    b"last-modified", b"cache-control", b"expires", b"age", b"pragma", b"accept-ranges",
    b"allow", b"retry-after", b"alt-svc", b"priority", b"strict-transport-security",
    b"content-security-policy", b"content-security-policy-report-only", b"referrer-policy",
    b"permissions-policy", b"feature-policy", b"cross-origin-opener-policy",
    b"cross-origin-embedder-policy", b"cross-origin-resource-policy", b"origin-agent-cluster",
    b"access-control-allow-origin", b"access-control-allow-credentials",
    b"access-control-allow-methods", b"access-control-allow-headers",
    b"access-control-expose-headers", b"access-control-max-age", b"timing-allow-origin",
    b"nel", b"report-to", b"reporting-endpoints", b"x-frame-options",
    b"x-content-type-options", b"x-xss-protection", b"x-dns-prefetch-control",
    b"x-permitted-cross-domain-policies", b"x-download-options", b"x-robots-tag",
    b"x-ua-compatible", b"x-powered-by", b"x-request-id", b"x-runtime"})


#: :data:`FRAMING_RESPONSE_HEADERS` as text (WSGI and Django name headers in ``str``).
FRAMING_HEADER_NAMES = frozenset(n.decode("latin-1") for n in FRAMING_RESPONSE_HEADERS)


def _scanned_header(name: bytes) -> bool:
    return name not in FRAMING_RESPONSE_HEADERS


def scans_response_headers(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Has the response a header :meth:`Exchange.response_headers` reads? (Most responses
    carry only framing headers: one set lookup per name, nothing else.)"""
    for name, _ in headers:  # noqa: SIM110 - a loop: no generator per response
        if name not in FRAMING_RESPONSE_HEADERS:
            return True
    return False


def _signal_sensitive(plan: Plan) -> bool:
    """Has ``plan`` a value whose uses an opt-out signal can refuse (any but ``essential``)?
    Signals name uses; a categories opt-out comes from the registry, per user. Memoised on
    the plan."""
    known = plan._extra.get("signal_sensitive")
    if known is None:
        known = plan._extra["signal_sensitive"] = any(
            not use_within(use, "essential") for entry in plan.entries for use in entry.tag.uses)
    return bool(known)


#: Guards the first read of an exchange's consent against adds from other threads (held
#: only for that read and for merges, never for I/O).
_CONSENT_LOCK = threading.RLock()


def _header_signals(headers: Headers, config: Config) -> Consent:
    """The consent the request's opt-out signal headers give; :data:`DEFAULT` if none."""
    settings = config.consent_settings
    watched = settings.signal_headers
    for k, v in headers:
        if k in watched:  # most requests carry no signal: no Consent is built
            if k == b"cookie" and not signals_mod.may_hold_source(k, v, settings.cookie_names):
                continue  # most requests with cookies: none of them a source
            return signals_mod.header_consent(headers, settings)
    return DEFAULT


def declared_names(route: Route | None) -> Collection[str]:
    """The property names the route's request schema may repeat in a problem."""
    body = route.request if route is not None else None
    return body.validator.names if body is not None and body.validator is not None else ()


def rejected_problem(path: Iterable[str | int] | None,
                     names: Collection[str] = ()) -> Problem:
    """422 for a body policy refuses: names where and which tag, never what. ``path``: the
    refused value's (:attr:`Result.rejected_path`); a key the client chose (not in ``names``,
    the declared property names, a phone number as a key included) reads ``*``."""
    pointer = safe_pointer(path or (), names) or "/"
    return Problem(422, "rejected", "The request carries data this endpoint must not receive.",
                   [{"pointer": pointer, "keyword": "x-pii"}])


class LineStream:
    """A response streaming JSON lines, scrubbed line by line (see
    :meth:`Exchange.line_plan`): :meth:`feed` each chunk, send on what it returns, then
    :meth:`close`. A line longer than ``max_response_bytes`` ends the stream there
    (:attr:`over`; its headers are gone, so it cannot become a 500). Sans-IO: the ASGI,
    WSGI and Django adapters drive it."""

    __slots__ = ("_exchange", "_lines", "_pending", "_plan", "_size", "over")

    def __init__(self, exchange: Exchange, plan: Plan) -> None:
        self._exchange = exchange
        self._plan = plan
        #: The chunks of the line not yet complete (joined once, when it is: a long line
        #: in many chunks costs no copy per chunk).
        self._pending: list[bytes] = []
        self._size = 0
        self._lines = 0
        self.over = False

    def feed(self, chunk: bytes) -> bytes:
        """The complete lines ``chunk`` finishes, scrubbed; b"" once :attr:`over`."""
        if self.over:
            return b""
        limit = self._exchange.config.max_response_bytes
        cut = chunk.rfind(b"\n")
        if cut < 0:  # the line goes on
            self._pending.append(chunk)
            self._size += len(chunk)
            if self._size > limit:
                self._stop()
            return b""
        head = b"".join([*self._pending, chunk[:cut]])
        rest = chunk[cut + 1:]
        self._pending, self._size = ([rest], len(rest)) if rest else ([], 0)
        if self._size > limit:
            self._stop()  # the lines before it still go out
        # Split on "\n" alone, as NDJSON readers do (not on a lone "\r").
        return b"".join(self._line(part + b"\n") for part in head.split(b"\n"))

    def _stop(self) -> None:
        self._exchange.too_large()  # logged and counted
        self.over = True
        self._pending, self._size = [], 0

    def close(self) -> bytes:
        """The last line, if it had no newline, scrubbed."""
        rest = b"".join(self._pending)
        self._pending, self._size = [], 0
        if self.over or not rest:
            return b""
        return self._line(rest)

    def _line(self, line: bytes) -> bytes:
        # An endless stream must not grow its request without bound: past this many lines
        # their findings are not kept for the audit record.
        self._lines += 1
        return self._exchange.response_line(self._plan, line,
                                            keep=self._lines <= _STREAM_RESULTS_MAX)

    def scrub(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """A streamed body's chunks, as scrubbed lines (WSGI, Django)."""
        for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
            if self.over:
                return
        out = self.close()
        if out:
            yield out

    async def ascrub(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        """:meth:`scrub` for an async body (Django's async streaming responses)."""
        async for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
            if self.over:
                return
        out = self.close()
        if out:
            yield out


def _text_sink(status: int) -> Sink:
    """Whose rules a scanned response text follows: an error page's, else the client's."""
    return "error" if status >= 400 else "client"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _textual(media: str) -> bool:
    """Text piimw buffers and scans; never an event stream, which would never end (NDJSON
    streams too, but only where the operation does not declare it, see the caller). Any
    ``+xml`` type is text: an SVG image showing a name is read by browsers as XML."""
    return (media.startswith(TEXTUAL_TYPES) or media.endswith("+xml")) and \
        media != "text/event-stream"


def _charset(headers: Headers) -> str | None:
    """The charset the response's ``Content-Type`` names, or None."""
    raw = header(headers, b"content-type")
    if raw:
        for part in raw.decode("latin-1").split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                return v.strip('"')
    return None


#: Headers a rewritten body makes wrong: its length, and validators of the old bytes.
LENGTH_AND_VALIDATORS = (b"content-length", b"etag", b"content-md5")


def _rewrite(headers: Headers, body: bytes) -> Headers:
    """Headers for a rewritten body: new length, and no validators of the old bytes."""
    out = [(k, v) for k, v in headers if k not in LENGTH_AND_VALIDATORS]
    out.append((b"content-length", str(len(body)).encode()))
    return out


def end_of_request(exchange: Exchange) -> None:
    """Hand a finished request to the audit trail and the discovery sampler (queue puts only)."""
    config = exchange.config
    if config.audit is not None:
        config.audit.record_exchange(exchange)
    sampler = config.discovery
    if sampler is not None and exchange.request_doc is not None:
        from piimw.discover.sampler import json_texts

        doc = exchange.request_doc
        sampler.offer(exchange, lambda: json_texts(doc))
