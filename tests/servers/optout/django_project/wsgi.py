"""``gunicorn django_project.wsgi``: migrates the SQLite user database (under a file lock, as
several workers of two servers start at once; a no-op once done), then serves."""

from __future__ import annotations

import fcntl
import os

import django
from django.conf import settings
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")
django.setup()
with open(str(settings.DATABASES["default"]["NAME"]) + ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        call_command("migrate", interactive=False, verbosity=0)
    finally:
        connections.close_all()  # never hand an open SQLite connection to forked workers
        fcntl.flock(lock, fcntl.LOCK_UN)

application = get_wsgi_application()
