"""The Flask example shop: ``flask --app example_apps.flask_app run``."""

from __future__ import annotations

from example_apps.flask_app.app import create_app

__all__ = ["create_app"]
