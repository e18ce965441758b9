"""Settings for the matrix Django app under gunicorn (``MATRIX_DEBUG=1``: ``DEBUG = True``).

In-process tests use ``tests/adapters/django_settings`` with :data:`OVERRIDES` instead.
"""

from __future__ import annotations

import os

from matrix_apps.common import config, server_logging

PIIMW_MIDDLEWARE = "piimw.contrib.django.PIIMiddleware"
OVERRIDES = {
    "ROOT_URLCONF": "matrix_apps.django_urls",
    "MIDDLEWARE": ["django.contrib.sessions.middleware.SessionMiddleware", PIIMW_MIDDLEWARE],
    "PIIMW": config(),
    "DEFAULT_EXCEPTION_REPORTER_FILTER":
        "piimw.contrib.django.reporting.PIIExceptionReporterFilter",
    "DEFAULT_EXCEPTION_REPORTER": "piimw.contrib.django.reporting.PIIExceptionReporter",
}

SECRET_KEY = "matrix-not-a-secret"
DEBUG = os.environ.get("MATRIX_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "testserver"]
INSTALLED_APPS = ["django.contrib.sessions", "piimw.contrib.django"]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
ROOT_URLCONF = OVERRIDES["ROOT_URLCONF"]
MIDDLEWARE = OVERRIDES["MIDDLEWARE"]
PIIMW = OVERRIDES["PIIMW"]
DEFAULT_EXCEPTION_REPORTER_FILTER = OVERRIDES["DEFAULT_EXCEPTION_REPORTER_FILTER"]
DEFAULT_EXCEPTION_REPORTER = OVERRIDES["DEFAULT_EXCEPTION_REPORTER"]
# Django's default logging prints django.request only with DEBUG on; send everything to root.
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"django": {"level": "INFO", "propagate": True}}}

if os.environ.get("MATRIX_SERVER") == "django":
    server_logging()
