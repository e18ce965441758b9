"""Django adapter: ``"piimw.contrib.django.PIIMiddleware"`` in ``MIDDLEWARE`` and
``"piimw.contrib.django"`` in ``INSTALLED_APPS`` (system checks for the configuration)."""

# mypy: disable-error-code="import-untyped"

from __future__ import annotations

try:
    import django  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "piimw.contrib.django needs Django: pip install 'piimw[django]'"
    ) from exc

from piimw.contrib.django.middleware import PIIMiddleware

__all__ = ["PIIMiddleware"]
