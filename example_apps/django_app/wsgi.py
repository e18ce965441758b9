"""WSGI entry point: ``gunicorn example_apps.django_app.wsgi``."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_app.settings")
application = get_wsgi_application()
