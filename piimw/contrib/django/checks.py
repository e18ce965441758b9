"""System checks: configuration mistakes surface at deploy time, not per request.

``piimw.E001`` the configuration is invalid (the message names the file and JSON pointer);
``piimw.E002`` the middleware comes before a middleware whose result it reads;
``piimw.W001`` ``settings.PIIMW`` is missing; ``piimw.W002`` the middleware is not installed.
"""

# mypy: disable-error-code="import-untyped"
# Django ships no type hints (django-stubs is not a dependency).

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core import checks

from piimw.contrib.django.conf import conf
from piimw.errors import ConfigError

MIDDLEWARE_PATHS = (
    "piimw.contrib.django.PIIMiddleware",
    "piimw.contrib.django.middleware.PIIMiddleware",
)
#: Middleware whose work ours reads (the session flag, the user): they must run first.
MUST_COME_BEFORE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
)


def check_settings(app_configs: Sequence[Any] | None = None,
                   **kwargs: Any) -> list[checks.CheckMessage]:
    """The piimw checks, registered by the app config under the tag ``piimw``."""
    return [*_check_config(), *_check_middleware()]


def _check_config() -> list[checks.CheckMessage]:
    if not conf.is_set:
        return [checks.Warning(
            "settings.PIIMW is not set: piimw runs without schemas, so it only honours "
            "opt-out signals and scrubs error pages.",
            hint="Set PIIMW to a dict or to the path of a piimw.toml file.",
            id="piimw.W001",
        )]
    try:
        conf.config()
    except ConfigError as exc:
        return [checks.Error(
            f"The piimw configuration is invalid: {exc}",
            hint="Fix the setting or file at the JSON pointer named above.",
            id="piimw.E001",
        )]
    return []


def _check_middleware() -> list[checks.CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if not ours:
        return [checks.Warning(
            "piimw.contrib.django is installed but its middleware is not in MIDDLEWARE.",
            hint='Add "piimw.contrib.django.PIIMiddleware" after the session and '
                 "authentication middleware.",
            id="piimw.W002",
        )]
    messages: list[checks.CheckMessage] = []
    for before in MUST_COME_BEFORE:
        if before in middleware and middleware.index(before) > ours[0]:
            messages.append(checks.Error(
                f"piimw's middleware must come after {before}: it reads what that "
                "middleware provides (the session opt-out flag, the user).",
                hint=f'Move "{middleware[ours[0]]}" below "{before}" in MIDDLEWARE.',
                id="piimw.E002",
            ))
    return messages
