"""Parse ``x-pii`` annotations. Errors name the file and JSON pointer of the bad tag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from piimw.errors import SchemaError
from piimw.findings import ACTIONS, Action
from piimw.policy import STRICTNESS
from piimw.taxonomy import UnknownCategoryError, resolve, resolve_use

TAG_KEY = "x-pii"
CREDENTIALS = "user.authorization.credentials"


@dataclass(frozen=True)
class Tag:
    """What a schema says about one value: its categories, uses and an optional action.

    ``reviewed`` marks ``x-pii: false``: someone decided the field is not PII.
    """

    categories: tuple[str, ...]
    uses: tuple[str, ...] = ("essential",)
    action: Action | None = None
    reviewed: bool = False
    implicit: bool = False  # from writeOnly / format: password rather than x-pii

    @property
    def category(self) -> str:
        return self.categories[0] if self.categories else ""

    def merge(self, other: Tag) -> Tag:
        if self.reviewed and not other.categories:
            return self
        if other.reviewed and not self.categories:
            return other
        if not other.categories:
            return self
        if not self.categories:
            return other
        cats = tuple(dict.fromkeys(self.categories + other.categories))
        uses = tuple(dict.fromkeys(self.uses + other.uses))
        action = self.action
        if other.action is not None and (
            action is None or STRICTNESS[other.action] > STRICTNESS[action]
        ):
            action = other.action
        return Tag(cats, uses, action, implicit=self.implicit and other.implicit)


REVIEWED = Tag((), (), None, reviewed=True)


def _category(value: object, source: str, pointer: str) -> str:
    if not isinstance(value, str):
        raise SchemaError(
            f"x-pii category must be a string, got {type(value).__name__}",
            source=source, pointer=pointer,
        )
    try:
        return resolve(value)
    except UnknownCategoryError:
        raise SchemaError(
            f"x-pii names unknown data category {value!r}", source=source, pointer=pointer
        ) from None


def parse_tag(raw: object, source: str, pointer: str) -> Tag | None:
    """Parse the value of an ``x-pii`` keyword found at ``pointer`` (pointer of the keyword)."""
    if raw is False:
        return REVIEWED
    if raw is True:
        raise SchemaError(
            "x-pii: true does not say which category; name one (e.g. \"email\")",
            source=source, pointer=pointer,
        )
    if isinstance(raw, str):
        return Tag((_category(raw, source, pointer),))
    if isinstance(raw, list):
        if not raw:
            raise SchemaError("x-pii list is empty", source=source, pointer=pointer)
        return Tag(tuple(_category(c, source, f"{pointer}/{i}") for i, c in enumerate(raw)))
    if isinstance(raw, Mapping):
        return _parse_object(cast(Mapping[str, Any], raw), source, pointer)
    raise SchemaError(
        f"x-pii must be a category, a list of categories, an object or false, "
        f"got {type(raw).__name__}",
        source=source, pointer=pointer,
    )


def _parse_object(raw: Mapping[str, Any], source: str, pointer: str) -> Tag:
    unknown = set(raw) - {"category", "categories", "uses", "use", "action"}
    if unknown:
        raise SchemaError(
            f"x-pii object has unknown key(s) {sorted(unknown)}; "
            "allowed: category, uses, action",
            source=source, pointer=pointer,
        )
    key = "category" if "category" in raw else "categories"
    cats_raw = raw.get(key)
    if cats_raw is None:
        raise SchemaError("x-pii object needs a 'category'", source=source, pointer=pointer)
    if cats_raw == []:  # not "not PII": that is x-pii: false, said on purpose
        raise SchemaError(f"x-pii '{key}' list is empty", source=source,
                          pointer=f"{pointer}/{key}")
    if isinstance(cats_raw, list):
        cats = tuple(
            _category(c, source, f"{pointer}/{key}/{i}") for i, c in enumerate(cats_raw)
        )
    else:
        cats = (_category(cats_raw, source, f"{pointer}/{key}"),)
    ukey = "uses" if "uses" in raw else "use"
    uses_raw = raw.get(ukey, ["essential"])
    listed = isinstance(uses_raw, list)
    if isinstance(uses_raw, str):
        uses_raw = [uses_raw]
    if not isinstance(uses_raw, list) or not uses_raw:
        raise SchemaError(f"x-pii '{ukey}' must be a non-empty list", source=source,
                          pointer=f"{pointer}/{ukey}")
    uses = []
    for i, u in enumerate(uses_raw):
        try:
            uses.append(resolve_use(str(u)))
        except ValueError as e:
            raise SchemaError(str(e), source=source, pointer=f"{pointer}/{ukey}" + (
                f"/{i}" if listed else "")) from None
    action = raw.get("action")
    if action is not None and action not in ACTIONS:
        raise SchemaError(
            f"x-pii action {action!r} is not one of {', '.join(ACTIONS)}",
            source=source, pointer=f"{pointer}/action",
        )
    return Tag(cats, tuple(uses), cast("Action | None", action))


def tag_of(schema: Mapping[str, Any], source: str, pointer: str) -> Tag | None:
    """The tag a subschema carries: explicit ``x-pii``, else writeOnly/password credentials."""
    if TAG_KEY in schema:
        return parse_tag(schema[TAG_KEY], source, f"{pointer}/{TAG_KEY}")
    if schema.get("writeOnly") is True or schema.get("format") == "password":
        return Tag((CREDENTIALS,), implicit=True)
    return None
