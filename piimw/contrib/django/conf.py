"""Settings for the Django adapter, read through one small object (django-cors-headers style).

``settings.PIIMW`` is the piimw configuration: a dict, a path to ``piimw.toml`` or a
:class:`~piimw.config.Config`. Relative paths are relative to ``settings.BASE_DIR`` when the
project defines it, so they do not depend on the directory the server was started from.
"""

# mypy: disable-error-code="import-untyped"
# Django ships no type hints (django-stubs is not a dependency).

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from django.conf import settings

from piimw.config import Config
from piimw.errors import ConfigError

DEFAULT_SESSION_KEY = "piimw_opt_out"
SOURCE = "settings.PIIMW"


class Settings:
    """Each property reads ``django.conf.settings`` when asked, so ``override_settings`` works."""

    @property
    def PIIMW(self) -> Any:
        return getattr(settings, "PIIMW", None)

    @property
    def is_set(self) -> bool:
        return hasattr(settings, "PIIMW")

    @property
    def PIIMW_SESSION_KEY(self) -> str:
        """The session key holding an opt-out: ``True`` (all non-essential uses) or a list."""
        return str(getattr(settings, "PIIMW_SESSION_KEY", DEFAULT_SESSION_KEY))

    @property
    def base_dir(self) -> Path:
        base = getattr(settings, "BASE_DIR", None)
        return Path(base) if base is not None else Path.cwd()

    def config(self) -> Config:
        """Build and validate the configuration; raises :class:`ConfigError` naming the spot."""
        raw = self.PIIMW
        if raw is None:
            from piimw.api import default_config

            return default_config()
        if isinstance(raw, Config):
            return raw
        if isinstance(raw, (str, PathLike)):
            path = Path(raw)
            return Config.from_file(path if path.is_absolute() else self.base_dir / path)
        if isinstance(raw, Mapping):
            return Config.from_dict(raw, base_dir=self.base_dir, source=SOURCE)
        raise ConfigError(f"must be a dict, a path to piimw.toml or a Config, not "
                          f"{type(raw).__name__}", source=SOURCE)


conf = Settings()
