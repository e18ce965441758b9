"""The Django app: add ``"piimw.contrib.django"`` to ``INSTALLED_APPS`` for system checks."""

# mypy: disable-error-code="import-untyped"
# Django ships no type hints (django-stubs is not a dependency).

from __future__ import annotations

from django.apps import AppConfig


class PIIMWConfig(AppConfig):  # type: ignore[misc]  # AppConfig is untyped
    name = "piimw.contrib.django"
    label = "piimw"
    verbose_name = "piimw"

    def ready(self) -> None:
        from django.core import checks

        from piimw.contrib.django.checks import check_settings

        checks.register(check_settings, "piimw")
