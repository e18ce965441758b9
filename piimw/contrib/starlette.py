"""Starlette and FastAPI: ``app.add_middleware(PIIMiddleware, config="piimw.toml")``.

This is the pure ASGI middleware plus the two things Starlette knows and raw ASGI does not: the
route template a request will be dispatched to (so ``/users/{id:int}`` finds the plan written
for ``/users/{id}`` without re-matching paths) and an opt-out flag kept in the session.
FastAPI apps can take their plans from the OpenAPI document FastAPI generates
(:func:`openapi_config`; :class:`LazyOpenAPI` when the middleware is added before the routes).
"""

from __future__ import annotations

import itertools
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

try:
    from starlette.routing import Match
except ImportError as e:  # pragma: no cover - exercised with starlette hidden
    raise ImportError(
        "piimw.contrib.starlette needs Starlette: pip install 'piimw[starlette]'") from e


from piimw.asgi import ASGIApp, Message, Receive, Scope, Send
from piimw.asgi import PIIMiddleware as _ASGIMiddleware
from piimw.config import Config
from piimw.consent import from_session_flag
from piimw.exchange import Exchange
from piimw.routes import Route

__all__ = ["DEFAULT_SESSION_KEY", "LazyOpenAPI", "PIIMiddleware", "openapi_config"]

#: The session key read for an opt-out: a list of uses, or ``True`` for every non-essential use.
DEFAULT_SESSION_KEY = "piimw_opt_out"

_CONVERTOR = re.compile(r"\{([^{}:]+):[^{}]*\}")
_PARAM = re.compile(r"\{[^{}/]+\}")
_documents = itertools.count(1)


class _NoRoutes:
    """What the resolve memo reads as the route list of an owner that has none."""

    routes: tuple[()] = ()


_NO_ROUTES = _NoRoutes()


@lru_cache(maxsize=4096)
def openapi_template(path: str) -> str:
    """Starlette's ``/users/{id:int}`` as OpenAPI writes it: ``/users/{id}``."""
    return _CONVERTOR.sub(r"{\1}", path)


def _fastapi_flatten(routes: list[Any]) -> Iterable[Any]:
    """FastAPI keeps included routers as one route each; list the routes inside them."""
    module = sys.modules.get("fastapi.routing")
    iter_contexts = getattr(module, "iter_route_contexts", None)
    if iter_contexts is None:
        return routes
    return list(iter_contexts(routes))


class PIIMiddleware(_ASGIMiddleware):
    """Pure ASGI middleware that reads route templates and the session from Starlette.

    ``config`` is a :class:`~piimw.Config`, a settings dict, a path to ``piimw.toml`` or a
    :class:`LazyOpenAPI`. To see the session, this must run inside ``SessionMiddleware``: call
    ``add_middleware(SessionMiddleware, ...)`` *after* adding this one, or list
    ``SessionMiddleware`` first in ``Starlette(middleware=[...])``. ``session_key`` names the
    opt-out flag in the session: a list of uses, or ``True`` for every non-essential use.
    """

    def __init__(self, app: ASGIApp, config: Config | str | os.PathLike[str] | Mapping[str, Any]
                 | LazyOpenAPI | None = None, *, session_key: str | None = None) -> None:
        self._lazy: LazyOpenAPI | None = config if isinstance(config, LazyOpenAPI) else None
        self._lock = threading.Lock()
        eager = None if isinstance(config, LazyOpenAPI) else config
        super().__init__(app, eager)  # type: ignore[arg-type]  # the base coerces paths too
        self.session_key = session_key
        # id(owner) -> (owner, routes list, its length, flattened routes). Holds the owner so
        # that the id stays its own; the owners are this app's routers, alive as long as it.
        self._routes: dict[int, tuple[Any, Any, int, list[Any]]] = {}
        # (id(owner), method, root_path, path) -> template, for matches that did not depend on
        # the Host header. Emptied when the top-level route list changes; bounded.
        self._templates: dict[tuple[int, str, str, str], str | None] = {}
        self._templates_for: list[Any] | None = None
        # (method, root_path, path) -> (configured route, template) for one owner: what
        # every request asks first (see :meth:`resolve`).
        self._resolved: dict[tuple[str, str, str], tuple[Any, str | None]] = {}
        # (owner, holder of its route list, that list, its length, route table, its version)
        # the memo was filled for; at first, for no owner.
        self._resolved_for: tuple[Any, ...] = (object(), _NO_ROUTES, (), 0, None, -1)

    async def _late(self, scope: Scope, receive: Receive, send: Send) -> bool:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._startup_send(scope, send))
            return True
        self._build(scope)
        return False

    # -- lazy configuration ---------------------------------------------------------------
    def _build(self, scope: Scope) -> None:
        """Build the lazy configuration once, whichever thread or task comes first.

        Synchronous on purpose: on one event loop no other request can interleave, and the
        lock covers threads. A build that raises is tried again by the next request.
        """
        with self._lock:
            lazy = self._lazy
            if lazy is None:
                return
            self._configure(lazy.build(scope.get("app")))
            self._lazy = None

    def _startup_send(self, scope: Scope, send: Send) -> Send:
        """Build when the app reports start-up complete: all routes exist by then, and a
        configuration error fails start-up instead of the first request."""

        async def startup_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete" and self._lazy is not None:
                self._build(scope)  # Starlette turns an error into lifespan.startup.failed
            await send(message)

        return startup_send

    # -- hooks ----------------------------------------------------------------------------
    def resolve(self, scope: Scope) -> tuple[Route | None, str | None]:
        """Route and template, memoised per path: one dict lookup for most requests.

        The memo holds answers for one owner (the app Starlette puts in the scope), valid
        while its route list and the configuration's route table are those it was filled
        for. Every request on every route asks this first, so the checks read plain
        attributes (the router's list, not ``Starlette.routes``, a property).
        """
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        valid = self._resolved_for
        routes = valid[1].routes
        table = self.config.routes
        if (valid[0] is scope.get("app") and routes is valid[2] and len(routes) == valid[3]
                and table is valid[4] and table.version == valid[5]):
            try:
                return self._resolved[key]
            except KeyError:
                pass
        else:
            self._forget(scope.get("app"), table)
        template = self.route_template(scope)
        route = table.lookup(scope["method"].upper(), template, scope["path"])
        # Memoised only if the template did not depend on the Host header.
        if (id(scope.get("app")), *key) in self._templates:
            if len(self._resolved) >= 8192:
                self._resolved.clear()
            self._resolved[key] = (route, template)
        return route, template

    def _forget(self, owner: Any, table: Any) -> None:
        """Start the memo afresh for ``owner`` and its current routes."""
        self._resolved.clear()
        router = getattr(owner, "router", None)
        holder = router if isinstance(getattr(router, "routes", None), list) else owner
        routes = getattr(holder, "routes", None)
        if routes is None:
            holder, routes = _NO_ROUTES, _NO_ROUTES.routes
        self._resolved_for = (owner, holder, routes, len(routes), table, table.version)

    def route_template(self, scope: Scope) -> str | None:
        """The template Starlette will dispatch to, spelled as the configuration spells it."""
        owner = scope.get("app")
        if not hasattr(owner, "routes"):
            owner = self.app if hasattr(self.app, "routes") else None
            if owner is None:
                return None
        flat = self._candidates(owner)
        if flat is not self._templates_for:
            self._templates.clear()
            self._templates_for = flat
        key = (id(owner), scope["method"], scope.get("root_path", ""), scope["path"])
        try:
            return self._templates[key]
        except KeyError:
            pass
        hosts: list[Any] = []
        template = self._match(owner, dict(scope), "", 0, hosts)
        if not hosts:
            if len(self._templates) >= 8192:
                self._templates.clear()
            self._templates[key] = template
        return template  # the route table matches it whatever the parameter names

    def user_id(self, scope: Scope) -> str | int | None:
        """The signed-in user from Starlette's ``AuthenticationMiddleware`` (runs before us)."""
        if self.config.registry is None:
            return None
        user = scope.get("user")
        try:
            if user is None or not user.is_authenticated:
                return None
            identity = user.identity
        except (AttributeError, NotImplementedError):  # BaseUser leaves identity abstract
            return None
        return identity if isinstance(identity, (str, int)) and identity != "" else None

    def prepare(self, exchange: Exchange, scope: Scope) -> None:
        """Merge the session's opt-out flag (``SessionMiddleware`` must run before us)."""
        session = scope.get("session")
        if session is None or not isinstance(session, Mapping):
            return
        key = (self.session_key or self.config.consent_settings.session_key
               or DEFAULT_SESSION_KEY)
        consent = from_session_flag(session.get(key))
        if consent is not None:
            exchange.set_consent(consent)

    # -- route matching -------------------------------------------------------------------
    def _candidates(self, owner: Any) -> list[Any]:
        routes = getattr(owner, "routes", None) or []
        hit = self._routes.get(id(owner))
        if hit is not None and hit[0] is owner and hit[1] is routes and hit[2] == len(routes):
            return hit[3]
        flat = list(_fastapi_flatten(routes))
        self._routes[id(owner)] = (owner, routes, len(routes), flat)
        return flat

    def _match(self, owner: Any, scope: Scope, prefix: str, depth: int,
               hosts: list[Any]) -> str | None:
        """Walk the routes as Starlette's router will: the first full match wins."""
        if depth > 16:
            return None
        partial: str | None = None
        for route in self._candidates(owner):
            matches = getattr(route, "matches", None)
            if matches is None:
                continue
            if getattr(route, "host", None) is not None:  # Host (or FastAPI's wrapper of one)
                hosts.append(route)  # its answer depends on a header: not memoised
            match, child = matches(scope)
            if match is Match.NONE:
                continue
            path = getattr(route, "path", None)
            if hasattr(route, "routes"):  # Mount or Host: descend with the child scope
                if match is Match.FULL:
                    return self._match(route, {**scope, **child},
                                       prefix + openapi_template(path or ""), depth + 1,
                                       hosts)
                continue
            if not isinstance(path, str):
                continue
            template = prefix + openapi_template(path)
            if match is Match.FULL:
                return template
            if partial is None:
                partial = template  # right path, other method: Starlette answers 405
        return partial


# -- FastAPI ------------------------------------------------------------------------------
def openapi_config(app: Any, settings: Mapping[str, Any] | str | os.PathLike[str] | None = None,
                   /, **kwargs: Any) -> Config:
    """A configuration whose plans come from ``app.openapi()`` (FastAPI) plus ``settings``.

    Tag Pydantic fields with ``Field(json_schema_extra={"x-pii": "email"})``. ``settings`` is a
    dict of piimw settings or a path to ``piimw.toml``; keyword arguments are settings too.
    """
    title = getattr(app, "title", None) or type(app).__name__
    documents = {f"<{title} app.openapi()>": app.openapi()}
    if isinstance(settings, (str, os.PathLike)):
        if kwargs:
            raise TypeError("pass settings either as a piimw.toml path or as keywords, not both")
        return Config.from_file(Path(settings), openapi_documents=documents)
    data = {**(settings or {}), **kwargs}
    return Config.from_dict(data, source="<openapi_config settings>", openapi_documents=documents)


@dataclass(frozen=True)
class LazyOpenAPI:
    """Build the configuration from the app's OpenAPI at start-up, or on the first request.

    FastAPI generates its OpenAPI document from the routes, which usually do not exist yet when
    ``add_middleware`` runs. The middleware builds this once (under a lock) when the lifespan
    start-up completes, else on the first request; ``app`` defaults to ``scope["app"]``.
    """

    settings: Mapping[str, Any] | str | os.PathLike[str] | None = None
    app: Any = None

    def build(self, app: Any = None) -> Config:
        target = self.app if self.app is not None else app
        if target is None or not hasattr(target, "openapi"):
            raise TypeError("LazyOpenAPI needs a FastAPI app: pass app=... or run the "
                            "middleware inside one")
        return openapi_config(target, self.settings)
