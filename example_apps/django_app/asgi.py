"""ASGI entry point: ``uvicorn example_apps.django_app.asgi:application``."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

import piimw.logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_app.settings")
application = get_asgi_application()
# uvicorn set up its own handlers (its access log quotes query strings) before loading us;
# settings.LOGGING only filters Django's. This puts piimw's filter on every handler.
piimw.logging.install()
