"""Validation with jsonschema, compiled once; errors are pointers and keywords, never values.

jsonschema's own messages quote the instance (``'jane@example.com' is not of type 'integer'``),
so a :class:`Problem` is built only from the error's path, keyword and schema location.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
import jsonschema.validators
import referencing

from piimw.schema.loader import DRAFT_7, DRAFT_2020, SchemaStore, escape_token

_rs: Any
try:  # a compiled validator for the hot path; jsonschema stays the reference and the reporter
    import jsonschema_rs as _rs
except ImportError:  # pragma: no cover - the wheel is a dependency; this guards odd platforms
    _rs = None

#: Formats asserted on purpose (the rest are annotations, as the 2020-12 spec says).
CHECKED_FORMATS = (
    "email", "idn-email", "ipv4", "ipv6", "date", "time", "date-time", "uuid", "regex",
    "hostname", "uri", "uri-reference", "json-pointer",
)
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One validation failure: where in the instance, which keyword, where in the schema."""

    pointer: str
    keyword: str
    schema_pointer: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer or "/", "keyword": self.keyword}


def _pointer(parts: Iterable[Any]) -> str:
    return "".join(f"/{escape_token(str(p))}" for p in parts)


def safe_pointer(parts: Iterable[Any], names: Collection[str]) -> str:
    """A JSON pointer into a client's document that repeats no key the client chose: array
    indices and declared property names stay, any other key reads ``*`` (a body keyed by
    e-mail address would otherwise have its addresses echoed in the 422)."""
    return "".join(f"/{p}" if isinstance(p, int) else
                   f"/{escape_token(p)}" if p in names else "/*" for p in parts)


@lru_cache(maxsize=8)
def _format_checker(cls: type[Any]) -> jsonschema.FormatChecker:
    """The checked formats the dialect's own checker knows. Not ``FormatChecker()``'s, which
    holds every draft's: its ``time`` is draft 3's ``HH:MM:SS``, refusing RFC 3339's
    ``12:00:00Z`` (a valid request was refused where jsonschema-rs is not installed)."""
    known = cls.FORMAT_CHECKER.checkers
    return jsonschema.FormatChecker(formats=[f for f in CHECKED_FORMATS if f in known])


def fast_registry(store: SchemaStore) -> Any:
    """A jsonschema-rs registry of every loaded document (offline: nothing is fetched)."""
    if _rs is None:
        return None
    try:
        return _rs.Registry([(uri, doc) for uri, doc in store.documents.items()
                             if isinstance(doc, dict)])
    except Exception:  # a schema jsonschema-rs cannot take: jsonschema alone will do
        return None


class Validator:
    """A compiled validator for the schema at ``uri#pointer`` within a :class:`SchemaStore`.

    ``is_valid`` asks jsonschema-rs first (about the cost of one JSON parse); only when it says
    "invalid" does jsonschema decide: where jsonschema-rs refuses a format jsonschema does not
    check, jsonschema wins; where jsonschema-rs accepts, it wins (``multipleOf: 0.1`` and
    ``0.3``, which jsonschema's float division refuses; ECMA-262 syntax in a ``regex``
    format). Differential tests keep them in step.
    """

    __slots__ = ("_fast", "_validator", "name", "names")

    def __init__(self, store: SchemaStore, uri: str, pointer: str,
                 registry: referencing.Registry[Any], fast: Any = None) -> None:
        doc = store.documents[uri]
        dialect = doc.get("$schema") if isinstance(doc, dict) else None
        if not isinstance(dialect, str):
            dialect = DRAFT_2020
        cls = jsonschema.validators.validator_for({"$schema": dialect},
                                                  default=jsonschema.Draft202012Validator)
        wrapper: dict[str, Any] = {"$ref": f"{uri}#{pointer}"}
        if cls is jsonschema.Draft7Validator:
            wrapper["$schema"] = DRAFT_7
        store.check_patterns()
        self._validator = cls(wrapper, registry=registry, format_checker=_format_checker(cls))
        self.name = f"{store.names.get(uri, uri)}#{pointer}"
        #: Keys a problem's pointer may repeat (see :func:`safe_pointer`).
        self.names: Collection[str] = store.property_names
        self._fast: Any = None
        if fast is not None and _rs is not None:
            rs_wrapper = dict(wrapper)
            try:
                self._fast = _rs.validator_for(rs_wrapper, registry=fast, validate_formats=True)
            except Exception:
                self._fast = None

    def is_valid(self, instance: Any) -> bool:
        fast = self._fast
        if fast is not None:
            try:
                if fast.is_valid(instance):
                    return True
            except (ValueError, TypeError, OverflowError):
                pass  # e.g. integers beyond 64 bits: let jsonschema judge
        return bool(self._validator.is_valid(instance))

    def is_valid_reference(self, instance: Any) -> bool:
        """jsonschema alone (for differential tests)."""
        return bool(self._validator.is_valid(instance))

    def is_valid_fast(self, instance: Any) -> bool | None:
        """jsonschema-rs alone, or None where it is not available (for differential tests)."""
        return None if self._fast is None else bool(self._fast.is_valid(instance))

    def problems(self, instance: Any, limit: int = MAX_PROBLEMS) -> list[Problem]:
        """At most ``limit`` problems, deepest first, as value-free records."""
        out: list[Problem] = []
        for error in self._validator.iter_errors(instance):
            out.append(Problem(safe_pointer(error.absolute_path, self.names),
                               str(error.validator),
                               _pointer(list(error.absolute_schema_path)[1:])))
            if len(out) >= limit:
                break
        out.sort(key=lambda p: (p.pointer, p.keyword))
        return out[:limit]
