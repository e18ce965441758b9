"""Settings for the Django example shop. No database: the shop keeps its data in memory.

``DJANGO_DEBUG=0`` turns debug pages off (then set ``DJANGO_ALLOWED_HOSTS``). With debug on,
Django's technical 500 page quotes the request and the exception; piimw scrubs it before it
leaves, like any error page.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

# Development only: a real deployment reads these from the environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.sessions",
    "piimw.contrib.django",  # system checks: piimw.E001, E002, W001
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # After the session middleware: piimw reads the opt-out flag from the session.
    "piimw.contrib.django.PIIMiddleware",
]

ROOT_URLCONF = "example_apps.django_app.urls"
WSGI_APPLICATION = "example_apps.django_app.wsgi.application"
DATABASES: dict[str, dict[str, str]] = {}
# Sessions in a signed cookie: no database needed for the opt-out flag.
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
USE_TZ = True

# piimw: plans from the OpenAPI document, policy from piimw.toml (relative to BASE_DIR).
PIIMW = "piimw.toml"
PIIMW_SESSION_KEY = "piimw_opt_out"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"piimw": {"()": "piimw.logging.PIIFilter"}},
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        # The filter sits on the handler, so records from every logger that reaches it
        # (django.request's tracebacks, the shop's own) are scrubbed.
        "console": {"class": "logging.StreamHandler", "formatter": "plain",
                    "filters": ["piimw"]},
    },
    "loggers": {
        "shop": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # runserver's request lines carry query strings.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
