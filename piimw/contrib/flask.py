"""Flask adapter: ``PIIMW(app)`` or ``PIIMW().init_app(app)`` in an app factory.

It wraps ``app.wsgi_app`` in the WSGI middleware, so the request is inspected before Flask
sees it and the response after Flask is done with it. What it adds is Flask's knowledge:
the route template from the URL map, and the opt-out flag from the session cookie.

    app.config["PIIMW"] = "piimw.toml"  # or a dict, or a Config
    PIIMW(app)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

try:
    from flask import Flask, Request
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import RoutingException
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "piimw.contrib.flask needs Flask: pip install 'piimw[flask]'"
    ) from exc

from piimw import consent as consent_mod
from piimw.api import default_config
from piimw.config import Config
from piimw.consent import Consent
from piimw.exchange import Exchange
from piimw.wsgi import PIIMiddleware, WSGIApp

__all__ = ["DEFAULT_SESSION_KEY", "PIIMW", "PIIMWState", "route_template", "session_consent"]

logger = logging.getLogger("piimw")

#: The session key holding the user's opt-out: ``True`` (all non-essential uses) or a list.
DEFAULT_SESSION_KEY = "piimw_opt_out"
#: Where Flask-Login keeps the signed-in user id; read only when a registry is configured.
DEFAULT_USER_SESSION_KEY = "_user_id"
EXTENSION = "piimw"
_ENVIRON_TEMPLATE = "piimw.flask.route_template"
_ENVIRON_REQUEST = "piimw.flask.request"
_ENVIRON_USER = "piimw.flask.user_id"
_CONVERTER = re.compile(r"<(?:[^<>]*:)?([^<>:]+)>")

ConfigLike = Config | Mapping[str, Any] | str | PathLike[str]


def route_template(rule: str) -> str:
    """``/users/<int:user_id>`` -> ``/users/{user_id}`` (the OpenAPI spelling)."""
    return _CONVERTER.sub(lambda m: "{" + m.group(1).strip() + "}", rule)


session_consent = consent_mod.from_session_flag


def _load(config: ConfigLike, root: str) -> Config:
    """Relative paths are relative to the app's root path, as in ``app.config.from_file``."""
    if isinstance(config, Config):
        return config
    if isinstance(config, (str, PathLike)):
        path = Path(config)
        return Config.from_file(path if path.is_absolute() else Path(root) / path)
    return Config.from_dict(config, base_dir=root, source='app.config["PIIMW"]')


@dataclass
class PIIMWState:
    """What ``app.extensions["piimw"]`` holds for one app."""

    config: Config
    middleware: FlaskPIIMiddleware
    session_key: str


def _may_name_cookie(header: str, name: str) -> bool:
    """Could Werkzeug's cookie parser find a cookie called ``name`` in this ``Cookie`` header?

    False only where it cannot: its keys are taken as written (never decoded), start the
    header or follow a ``;``, whitespace or ``=``, and end at the header's end, whitespace,
    ``=`` or ``;``. (Werkzeug 3 allows blanks there. Werkzeug 2.3 strips any whitespace
    ``str.strip`` removes, ``\n`` and ``\xa0`` too, and where a value cannot be read, as
    when a newline ends it, its regular expression starts a key right after the ``=``.)
    Parsing the header and building a request object for it costs far more, and most
    requests carry cookies without the session's (``sessionid`` is not ``session``).
    """
    size = len(name)
    at = header.find(name)
    while at >= 0:
        end = at + size
        if (at == 0 or (c := header[at - 1]) in ";=" or c.isspace()) and (
                end == len(header) or (c := header[end]) in "=;" or c.isspace()):
            return True
        at = header.find(name, at + 1)
    return False


class FlaskPIIMiddleware(PIIMiddleware):
    """The WSGI middleware plus Flask's route templates and session flag."""

    def __init__(self, wsgi_app: WSGIApp, config: Config, flask_app: Flask,
                 session_key: str = DEFAULT_SESSION_KEY,
                 user_session_key: str = DEFAULT_USER_SESSION_KEY) -> None:
        super().__init__(wsgi_app, config)
        self.flask_app = flask_app
        self.session_key = session_key
        self.user_session_key = user_session_key
        # (host, scheme, script root, path, method) -> (Flask's rule as a template, the
        # template the route table knows or None, the table's version).
        self._templates: dict[tuple[Any, ...], tuple[str | None, str | None, int]] = {}

    def user_id(self, environ: dict[str, Any]) -> str | int | None:
        """The signed-in user's id as Flask-Login keeps it in the session (``_user_id``)."""
        if self.config.registry is None:  # nobody needs it: do not decode the session again
            return None
        if _ENVIRON_USER in environ:
            value = environ.pop(_ENVIRON_USER)
        else:  # asked before prepare() (the opt-out API path): read the session now
            try:
                session = self._open_session(environ)
            except Exception:  # unreadable: nobody is signed in
                session = None
            value = session.get(self.user_session_key) if session is not None else None
        return value if isinstance(value, (str, int)) and not isinstance(value, bool) else None

    def _open_session(self, environ: dict[str, Any]) -> Any:
        """Flask's session for this request (no app context), None without a cookie.

        Raises whatever the session interface raises on a forged or unreadable cookie.
        """
        cookies = environ.get("HTTP_COOKIE")
        if not cookies:
            return None  # no cookie, no session: no request object needed
        app = self.flask_app
        interface = app.session_interface
        name = interface.get_cookie_name(app)
        if not _may_name_cookie(cookies, name):
            return None  # most requests: cookies, none of them the session's
        request = self._request(environ)
        if name not in request.cookies:
            return None
        return interface.open_session(app, request)

    def _request(self, environ: dict[str, Any]) -> Request:
        """One shallow request object for every hook (it never touches the body stream)."""
        request = environ.get(_ENVIRON_REQUEST)
        if not isinstance(request, Request):
            request = environ[_ENVIRON_REQUEST] = self.flask_app.request_class(environ,
                                                                               shallow=True)
        return request

    def route_template(self, environ: dict[str, Any]) -> str | None:
        """The matched rule in OpenAPI spelling; None if Flask will not match it either.

        Only returned when the route table knows it, so that a spelling difference
        (``{user_id}`` here, ``{id}`` in the OpenAPI file) falls back to matching the path.
        """
        # Flask refuses new URL rules once it has served a request, so a match depends only
        # on what Werkzeug matches on: host, scheme, script root, path and method. The
        # answer also depends on the route table (its version says when it changed).
        key = (environ.get("HTTP_HOST") or environ.get("SERVER_NAME"),
               environ.get("wsgi.url_scheme"), environ.get("SCRIPT_NAME", ""),
               environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET"))
        routes = self.config.routes
        memo = self._templates
        hit = memo.get(key)
        if hit is not None and hit[2] == routes.version:
            environ[_ENVIRON_TEMPLATE] = hit[0]
            return hit[1]
        template = self._match_rule(environ) if hit is None else hit[0]
        environ[_ENVIRON_TEMPLATE] = template
        answer = routes.known_template(key[4].upper(), template)
        if len(memo) >= 8192:
            memo.clear()
        memo[key] = (template, answer, routes.version)
        return answer

    def _match_rule(self, environ: dict[str, Any]) -> str | None:
        try:
            adapter = self.flask_app.create_url_adapter(self._request(environ))
            if adapter is None:
                return None
            rule, _ = adapter.match(return_rule=True)
        except (HTTPException, RoutingException):  # 404, 405, redirects, untrusted host
            return None
        return route_template(rule.rule)

    def prepare(self, exchange: Exchange, environ: dict[str, Any]) -> None:
        template = environ.pop(_ENVIRON_TEMPLATE, None)
        if exchange.route_template is None:  # a label for logs and audit, not a plan lookup
            exchange.route_template = template
        try:
            flag = self._session_flag(environ)
        finally:
            environ.pop(_ENVIRON_REQUEST, None)
        if flag is not None:
            exchange.set_consent(flag)

    def _session_flag(self, environ: dict[str, Any]) -> Consent | None:
        """Decode the session (Flask's own interface) without pushing an app context."""
        try:
            session = self._open_session(environ)
        except Exception as exc:  # fail closed: an unreadable session may hold an opt-out
            logger.warning("piimw: session could not be read (%s); treated as opted out",
                           type(exc).__name__)
            return session_consent(True)
        if session is None:
            return None
        if self.config.registry is not None:
            environ[_ENVIRON_USER] = session.get(self.user_session_key)
        return session_consent(session.get(self.session_key))


class PIIMW:
    """The Flask extension. Configuration comes from ``config`` or ``app.config["PIIMW"]``.

    Per-app state lives in ``app.extensions["piimw"]``, so one instance serves many apps
    made by a factory.
    """

    def __init__(self, app: Flask | None = None, config: ConfigLike | None = None, *,
                 session_key: str | None = None) -> None:
        self._config = config
        self._session_key = session_key
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> PIIMWState:
        if EXTENSION in app.extensions:
            raise RuntimeError("piimw is already set up on this Flask app")
        raw = self._config if self._config is not None else app.config.get("PIIMW")
        config = _load(raw, app.root_path) if raw is not None else default_config()
        key = (self._session_key or app.config.get("PIIMW_SESSION_KEY")
               or config.consent_settings.session_key or DEFAULT_SESSION_KEY)
        user_key = app.config.get("PIIMW_USER_SESSION_KEY") or DEFAULT_USER_SESSION_KEY
        middleware = FlaskPIIMiddleware(app.wsgi_app, config, app, str(key), str(user_key))
        app.wsgi_app = middleware  # type: ignore[method-assign]
        state = PIIMWState(config, middleware, str(key))
        app.extensions[EXTENSION] = state
        return state

    @staticmethod
    def state(app: Flask) -> PIIMWState:
        """The state ``init_app`` stored on ``app``."""
        state = app.extensions.get(EXTENSION)
        if not isinstance(state, PIIMWState):
            raise RuntimeError("piimw is not set up on this Flask app; call PIIMW(app)")
        return state
