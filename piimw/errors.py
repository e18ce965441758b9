"""Exceptions raised by piimw. Messages name where the problem is, never a protected value."""

from __future__ import annotations


class PIIMWError(Exception):
    """Base class for piimw errors."""


class ConfigError(PIIMWError):
    """A configuration, schema or ``x-pii`` tag is malformed; raised at start-up.

    ``source`` is the file (or ``"<dict>"``), ``pointer`` the JSON pointer of the offending node.
    """

    def __init__(self, message: str, *, source: str = "<config>", pointer: str = "") -> None:
        self.source = source
        self.pointer = pointer
        self.reason = message
        where = f"{source}#{pointer}" if pointer else source
        super().__init__(f"{where}: {message}")


class SchemaError(ConfigError):
    """A schema or OpenAPI document cannot be loaded or compiled."""


class KeyMissingError(ConfigError):
    """A keyed hash is configured but its secret key is not in the environment."""


class RejectedError(PIIMWError):
    """Policy says the request must be refused. Carries findings, never values."""

    def __init__(self, status: int, reason: str, pointer: str = "") -> None:
        self.status = status
        self.reason = reason
        self.pointer = pointer
        super().__init__(f"rejected ({status}): {reason} at {pointer or '/'}")
