"""File URLs from settings files: a relative path is relative to the file that names it.

Schemas and OpenAPI documents named in ``piimw.toml`` are found next to it; the audit trail
and the embedded registry must be too, or the application and the operators' tools (``piimw
audit verify``, ``piimw optout``) would open different files when run from different
directories. Paths are made absolute when the settings are loaded.
"""

from __future__ import annotations

from pathlib import Path


def audit_url(url: str, base: Path | None) -> str:
    """``jsonl://trail.jsonl`` -> ``jsonl:///srv/app/trail.jsonl`` (also ``sqlite://``, and a
    bare path); absolute paths, ``logging://`` and a missing ``base`` are left as they are."""
    if base is None:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url if Path(url).is_absolute() else str(base / url)
    if scheme in ("jsonl", "sqlite") and rest and not Path(rest).is_absolute():
        return f"{scheme}://{base / rest}"
    return url


def registry_url(url: str, base: Path | None) -> str:
    """``sqlite:///registry.db`` (relative, SQLAlchemy's spelling) -> ``sqlite:////srv/app/
    registry.db``; other backends and absolute paths are left as they are."""
    if base is None or not url.startswith("sqlite:///"):
        return url
    path = url[len("sqlite:///"):]
    if not path or Path(path).is_absolute():
        return url
    return f"sqlite:///{base / path}"
