"""Sans-IO opt-out endpoints: a signed-in subject reads, replaces or clears their own choices.

``OptOutAPI(registry).handle(method, user_id, body, headers)`` returns ``(status, headers,
body)``; framework adapters mount it on a path of their choice and pass the *authenticated*
user's id. The subject always comes from that id, never from the URL or the body, so there is
no way to address anyone else. Errors are RFC 9457 problem documents that never echo input.

Cookie-authenticated writes need CSRF protection: a ``PUT`` must be ``application/json`` and
every write must come from this site: ``Sec-Fetch-Site: same-origin``, or an ``Origin`` that
matches the host (or ``allowed_origins``), or, from clients that send neither, a custom
header (``X-Requested-With``) that a cross-site form cannot add without a CORS preflight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from piimw.problem import Problem
from piimw.registry import Registry, RegistryUnavailable, registry_category, registry_use
from piimw.signals import ConsentSettings, GpcJson
from piimw.stores import StoreError, refill

if TYPE_CHECKING:
    from piimw.config import Config

Headers = list[tuple[bytes, bytes]]
Response = tuple[int, Headers, bytes]

MAX_BODY: Final = 8192
_JSON: Final = b"application/json"
_NO_STORE: Final = (b"cache-control", b"no-store")
_ALLOWED: Final = "GET, HEAD, PUT, DELETE"
_TITLES: Final = {401: "Authentication required", 405: "Method not allowed",
                  429: "Too many requests", 503: "Service unavailable"}


@dataclass(frozen=True)
class APISettings:
    """``registry.api`` in the configuration."""

    path: str | None = None  # where the middleware mounts the API (None: not mounted)
    allowed_origins: tuple[str, ...] = ()
    csrf_header: str = "x-requested-with"
    rate_per_minute: float = 10.0
    burst: int = 5

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> APISettings:
        raw = raw or {}
        return cls(
            path=raw.get("path"),
            allowed_origins=tuple(o.lower().rstrip("/") for o in raw.get("allowed_origins", ())),
            csrf_header=str(raw.get("csrf_header", "x-requested-with")).lower(),
            rate_per_minute=float(raw.get("rate_per_minute", 10.0)),
            burst=int(raw.get("burst", 5)),
        )


def _problem(status: int, kind: str, detail: str, *, errors: list[dict[str, str]] | None = None,
             extra: Headers | None = None) -> Response:
    p = Problem(status, kind, detail, errors or [])
    doc = p.as_dict()
    if status in _TITLES:
        doc["title"] = _TITLES[status]
    body = orjson.dumps(doc)
    return status, p.headers(body) + (extra or []), body


def _json(status: int, doc: Any) -> Response:
    body = orjson.dumps(doc)
    return status, [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                    _NO_STORE], body


def _headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    out: dict[bytes, list[bytes]] = {}
    for k, v in headers:
        out.setdefault(k.lower(), []).append(v)
    return out


class RateLimiter:
    """Token buckets per subject pseudonym, in this process (bounded; oldest dropped first):
    for backends that share none (``memory://``), and while a shared one is down."""

    def __init__(self, rate_per_minute: float, burst: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float | None, float | None]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 if allowed, else the seconds until a token is available."""
        now = self._clock()
        with self._lock:
            tokens, wait = refill(*self._buckets.pop(key, (None, None)), now, self.rate,
                                  self.burst)
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.pop(next(iter(self._buckets)))
        return wait


def _same_origin(origin: str, host: str | None, scheme: str | None,
                 allowed: tuple[str, ...]) -> bool:
    origin = origin.strip().lower().rstrip("/")
    if origin in allowed:
        return True
    if not host or origin == "null":
        return False
    o_scheme, sep, o_netloc = origin.partition("://")
    if not sep:
        return False
    if scheme is not None and o_scheme != scheme.lower():
        return False
    default = {"http": ":80", "https": ":443"}.get(o_scheme, "")
    h = host.strip().lower()
    return o_netloc == h or (default != "" and (o_netloc + default == h or
                                                 o_netloc == h + default))


class OptOutAPI:
    """GET / PUT / DELETE of the signed-in subject's own opt-out preferences."""

    def __init__(self, registry: Registry, settings: APISettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry
        self.settings = settings or APISettings()
        self.limiter = RateLimiter(self.settings.rate_per_minute, self.settings.burst,
                                   clock=clock)

    @classmethod
    def from_config(cls, config: Config) -> OptOutAPI | None:
        """The API mounted at ``registry.api.path``; None unless a registry and path are set."""
        raw = config.raw.get("registry")
        if not isinstance(raw, Mapping):
            return None
        settings = APISettings.from_config(raw.get("api"))
        if settings.path is None:
            return None
        registry = getattr(config, "registry", None)  # the exchange's own, once integrated
        if not isinstance(registry, Registry):
            registry = Registry.from_config(config)
        return None if registry is None else cls(registry, settings)

    def handle(self, method: str, subject_id: str | int | None, body: bytes,
               headers: Iterable[tuple[bytes, bytes]], *, cookie_auth: bool = True,
               host: str | None = None, scheme: str | None = None) -> Response:
        """Answer one request. ``subject_id``: the authenticated user's id, or None.

        ``cookie_auth=False`` for requests authenticated by a header the browser does not add
        by itself (a bearer token): those cannot be forged cross-site, so no CSRF checks.
        ``host``/``scheme`` default to the ``Host`` header and "unknown".
        """
        method = method.upper()
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            return _problem(405, "method-not-allowed", "Use GET, PUT or DELETE.",
                            extra=[(b"allow", _ALLOWED.encode())])
        if subject_id is None or subject_id == "":
            return _problem(401, "authentication-required",
                            "Sign in to read or change your privacy preferences.")
        hdrs = _headers(headers)
        if method in ("PUT", "DELETE") and cookie_auth:
            refused = self._csrf(hdrs, host, scheme)
            if refused is not None:
                return refused
        subject = self.registry.adopt(subject_id)
        wait = self._take_token(subject)
        if wait > 0:
            return _problem(429, "rate-limited", "Too many requests; try again later.",
                            extra=[(b"retry-after", str(max(1, int(wait + 0.999))).encode())])
        try:
            if method in ("GET", "HEAD"):
                status, out, payload = _json(200, self.registry.record(subject).as_json())
                return status, out, b"" if method == "HEAD" else payload
            if method == "DELETE":
                self.registry.clear(subject)
                return 204, [_NO_STORE], b""
            return self._put(subject, hdrs, body)
        except RegistryUnavailable:
            return _problem(503, "registry-unavailable",
                            "Privacy preferences cannot be read or changed right now.",
                            extra=[(b"retry-after", b"5")])

    def _take_token(self, subject: str) -> float:
        """The subject's bucket in the registry's backend where it is shared (SQLite, Redis:
        every worker and host counts against one rate), else in this process. While the
        backend cannot be reached, this process's bucket limits."""
        limiter = self.limiter
        try:
            wait = self.registry.store.take_token(subject, limiter.rate, limiter.burst)
        except StoreError:
            wait = None
        return limiter.take(subject) if wait is None else wait

    def _csrf(self, hdrs: dict[bytes, list[bytes]], host: str | None,
              scheme: str | None) -> Response | None:
        def refuse() -> Response:
            return _problem(403, "cross-site-request",
                            "This request did not come from this site.")

        fetch_site = hdrs.get(b"sec-fetch-site")
        if fetch_site is not None:
            return None if fetch_site == [b"same-origin"] else refuse()
        origins = hdrs.get(b"origin")
        if origins is not None:
            if len(origins) != 1:
                return refuse()
            own = host if host is not None else (
                hdrs[b"host"][0].decode("latin-1") if len(hdrs.get(b"host", [])) == 1 else None)
            ok = _same_origin(origins[0].decode("latin-1"), own, scheme,
                              self.settings.allowed_origins)
            return None if ok else refuse()
        custom = hdrs.get(self.settings.csrf_header.encode("latin-1"))
        if custom and custom[0].strip():
            return None
        return refuse()

    def _put(self, subject: str, hdrs: dict[bytes, list[bytes]], body: bytes) -> Response:
        ctype = b";".join(hdrs.get(b"content-type", [b""]))
        if ctype.split(b";", 1)[0].strip().lower() != _JSON:
            return _problem(415, "unsupported-media-type",
                            "Send the preferences as application/json.")
        if len(body) > MAX_BODY:
            return _problem(413, "too-large", "The request body is too large.")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _problem(400, "malformed-json", "The request body is not valid JSON.")
        parsed = _parse_preferences(doc)
        if isinstance(parsed, list):
            return _problem(422, "validation", "The preferences are not valid.", errors=parsed)
        out_uses, out_categories, in_uses = parsed
        try:
            record = self.registry.set_preferences(
                subject, opt_out_uses=out_uses, opt_out_categories=out_categories,
                opt_in_uses=in_uses, signal="api")
        except ValueError:
            return _problem(422, "validation", "The preferences are not valid.",
                            errors=[{"pointer": "/", "keyword": "conflict"}])
        return _json(200, record.as_json())


def _parse_preferences(
    doc: Any,
) -> tuple[list[str], list[str], list[str]] | list[dict[str, str]]:
    """``{"opt_out": {"uses": [...], "categories": [...]}, "opt_in": {"uses": [...]}}``.

    Returns the lists, or problem entries naming pointers and keywords, never values. Only
    names the registry can record and read back pass (``enum`` otherwise): an unreadable
    record would lock its subject out of their own preferences.
    """
    errors: list[dict[str, str]] = []
    if not isinstance(doc, dict):
        return [{"pointer": "/", "keyword": "type"}]
    if set(doc) - {"opt_out", "opt_in"}:
        errors.append({"pointer": "/", "keyword": "additionalProperties"})
    result: dict[str, list[str]] = {"opt_out/uses": [], "opt_out/categories": [],
                                    "opt_in/uses": []}
    for section, keys in (("opt_out", ("uses", "categories")), ("opt_in", ("uses",))):
        part = doc.get(section, {})
        if not isinstance(part, dict):
            errors.append({"pointer": f"/{section}", "keyword": "type"})
            continue
        if set(part) - set(keys):
            errors.append({"pointer": f"/{section}", "keyword": "additionalProperties"})
        for key in keys:
            items = part.get(key, [])
            if not isinstance(items, list) or len(items) > 64:
                errors.append({"pointer": f"/{section}/{key}", "keyword": "type"})
                continue
            for i, item in enumerate(items):
                pointer = f"/{section}/{key}/{i}"
                if not isinstance(item, str) or len(item) > 128:
                    errors.append({"pointer": pointer, "keyword": "type"})
                    continue
                try:
                    name = registry_use(item) if key == "uses" else registry_category(item)
                except ValueError:
                    errors.append({"pointer": pointer, "keyword": "enum"})
                    continue
                if section == "opt_out" and key == "uses" and name.split(".")[0] == "essential":
                    errors.append({"pointer": pointer, "keyword": "not"})
                    continue
                result[f"{section}/{key}"].append(name)
    if errors:
        return errors
    return result["opt_out/uses"], result["opt_out/categories"], result["opt_in/uses"]


def gpc_json_response(settings: ConsentSettings | GpcJson | None,
                      method: str = "GET") -> Response | None:
    """The ``/.well-known/gpc.json`` response, or None if not configured (let the app 404)."""
    gpc = settings.gpc_json if isinstance(settings, ConsentSettings) else settings
    if gpc is None:
        return None
    if method.upper() not in ("GET", "HEAD"):
        return _problem(405, "method-not-allowed", "Use GET.", extra=[(b"allow", b"GET, HEAD")])
    doc: dict[str, Any] = {"gpc": gpc.gpc}
    if gpc.last_update:
        doc["lastUpdate"] = gpc.last_update
    body = orjson.dumps(doc)
    headers: Headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"public, max-age=86400"),
                        (b"access-control-allow-origin", b"*")]
    return 200, headers, b"" if method.upper() == "HEAD" else body


GPC_JSON_PATH: Final = "/.well-known/gpc.json"

__all__ = ["GPC_JSON_PATH", "APISettings", "OptOutAPI", "RateLimiter", "gpc_json_response"]
