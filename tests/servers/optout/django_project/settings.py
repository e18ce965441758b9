"""Django test project: real sign-in (``django.contrib.auth.login``) with users in a SQLite file
(``$OPTOUT_DJANGO_DB``) that ``wsgi.py`` migrates at start-up; sessions in signed cookies."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optout_common import load_config

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("OPTOUT_SECRET_KEY", "optout-test-only-secret-key")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "piimw.contrib.django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "piimw.contrib.django.PIIMiddleware",  # after auth: reads request.user
]
ROOT_URLCONF = "django_project.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("OPTOUT_DJANGO_DB",
                               str(Path(tempfile.gettempdir()) / "piimw-optout-django.db")),
        "OPTIONS": {"timeout": 20},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

PIIMW = load_config()
