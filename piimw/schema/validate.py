"""Validation with jsonschema, compiled once; errors are pointers and keywords, never values.

jsonschema's own messages quote the instance (``'jane@example.com' is not of type 'integer'``),
so a :class:`Problem` is built only from the error's path, keyword and schema location.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.validators
import referencing

from piimw.schema.loader import DRAFT_7, DRAFT_2020, SchemaStore, escape_token

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


def _format_checker() -> jsonschema.FormatChecker:
    known = jsonschema.FormatChecker().checkers
    return jsonschema.FormatChecker(formats=[f for f in CHECKED_FORMATS if f in known])


_FORMAT_CHECKER = _format_checker()


class Validator:
    """A compiled validator for the schema at ``uri#pointer`` within a :class:`SchemaStore`."""

    __slots__ = ("_validator", "name")

    def __init__(self, store: SchemaStore, uri: str, pointer: str,
                 registry: referencing.Registry[Any]) -> None:
        doc = store.documents[uri]
        dialect = doc.get("$schema") if isinstance(doc, dict) else None
        if not isinstance(dialect, str):
            dialect = DRAFT_2020
        cls = jsonschema.validators.validator_for({"$schema": dialect},
                                                  default=jsonschema.Draft202012Validator)
        wrapper: dict[str, Any] = {"$ref": f"{uri}#{pointer}"}
        if cls is jsonschema.Draft7Validator:
            wrapper["$schema"] = DRAFT_7
        self._validator = cls(wrapper, registry=registry, format_checker=_FORMAT_CHECKER)
        self.name = f"{store.names.get(uri, uri)}#{pointer}"

    def is_valid(self, instance: Any) -> bool:
        return bool(self._validator.is_valid(instance))

    def problems(self, instance: Any, limit: int = MAX_PROBLEMS) -> list[Problem]:
        """At most ``limit`` problems, deepest first, as value-free records."""
        out: list[Problem] = []
        for error in self._validator.iter_errors(instance):
            leaves = _leaves(error)
            for leaf in leaves:
                out.append(Problem(_pointer(leaf.absolute_path), str(leaf.validator),
                                   _pointer(list(leaf.absolute_schema_path)[1:])))
            if len(out) >= limit:
                break
        out.sort(key=lambda p: (p.pointer, p.keyword))
        return out[:limit]


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For anyOf/oneOf failures report the combinator itself, not every branch's noise."""
    return [error]
