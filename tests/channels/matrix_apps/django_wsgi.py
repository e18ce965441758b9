"""``gunicorn matrix_apps.django_wsgi`` (with ``tests/channels`` on ``PYTHONPATH``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "matrix_apps.django_settings")
application = get_wsgi_application()
