"""Django settings for the adapter tests; ``setup()`` configures Django once per process.

Plain ``settings.configure`` (no pytest-django). Tests change ``PIIMW`` and ``MIDDLEWARE``
with ``override_settings``; a test client built inside the override loads the middleware
with them.
"""

from __future__ import annotations

from typing import Any

SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
PIIMW = "piimw.contrib.django.PIIMiddleware"

SETTINGS: dict[str, Any] = {
    "DEBUG": False,
    "SECRET_KEY": "piimw-tests-not-a-secret",
    "ALLOWED_HOSTS": ["testserver"],
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "piimw.contrib.django",
    ],
    "MIDDLEWARE": [SESSION, AUTH, PIIMW],
    "ROOT_URLCONF": "adapters.django_urls",
    # Signed-cookie sessions: the session flag works without a database.
    "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
    "DATABASES": {},
    "USE_TZ": True,
    # Quiet: django.request would print every deliberate 4xx/5xx of the tests.
    "LOGGING_CONFIG": None,
}


def setup() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()
