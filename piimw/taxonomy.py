"""Data categories (fideslang keys plus piimw extensions), aliases, uses and sensitivity tiers.

Categories are dotted names matched by prefix: a rule on ``user.contact`` covers
``user.contact.email``. The tier is derived here so schema authors never have to write it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

Tier = Literal["identifier", "quasi", "sensitive"]

#: Short names schema authors may write instead of the full key.
ALIASES: dict[str, str] = {
    "email": "user.contact.email",
    "phone": "user.contact.phone_number",
    "name": "user.name",
    "first_name": "user.name.first",
    "last_name": "user.name.last",
    "address": "user.contact.address",
    "postal_code": "user.contact.address.postal_code",
    "ssn": "user.government_id.national_identification_number",
    "national_id": "user.government_id.national_identification_number",
    "passport": "user.government_id.passport_number",
    "card": "user.financial.credit_card",
    "iban": "user.financial.bank_account",
    "bank_account": "user.financial.bank_account",
    "ip": "user.device.ip_address",
    "device_id": "user.device.device_id",
    "dob": "user.demographic.date_of_birth",
    "gender": "user.demographic.gender",
    "secret": "user.authorization.credentials",
    "password": "user.authorization.password",
    "username": "user.account.username",
    "location": "user.location.precise",
    "health": "user.health_and_medical",
}

#: Purposes data is processed for. Opt-out is per use; ``essential`` can never be opted out of.
USES: tuple[str, ...] = ("essential", "analytics", "marketing", "third_party", "personalization")

#: fideslang data-use keys accepted as synonyms for the top-level uses above.
USE_ALIASES: dict[str, str] = {
    "third_party_sharing": "third_party",
    "personalize": "personalization",
    "functional": "essential",
    "collect": "essential",
    "operations": "essential",
}

_SENSITIVE_PREFIXES = (
    "user.authorization",
    "user.biometric",
    "user.childrens",
    "user.criminal_history",
    "user.financial",
    "user.payment",
    "user.government_id",
    "user.health_and_medical",
    "user.location.precise",
    "user.content.communications",
    "user.content.private",
    "user.demographic.political_opinion",
    "user.demographic.race_ethnicity",
    "user.demographic.religious_belief",
    "user.demographic.sexual_orientation",
    "user.demographic.trade_union_membership",
    "user.demographic.philosophical_belief",
)
_IDENTIFIER_PREFIXES = (
    "user.name",
    "user.contact.email",
    "user.contact.phone_number",
    "user.contact.fax_number",
    "user.contact.address.street",
    "user.account.username",
    "user.device",
    "user.unique_id",
    "user.social",
    "user.content.self_image",
)


@dataclass(frozen=True)
class CategoryInfo:
    key: str
    name: str
    description: str
    parent: str | None
    source: str


class UnknownCategoryError(ValueError):
    """Raised for a category that is neither a known key nor an alias."""


@lru_cache(maxsize=1)
def categories() -> dict[str, CategoryInfo]:
    """All known categories by key (loaded once from the shipped data file)."""
    raw = json.loads(resources.files("piimw").joinpath("data/data_categories.json").read_bytes())
    return {
        c["key"]: CategoryInfo(c["key"], c["name"], c["description"], c.get("parent"), c["source"])
        for c in raw["categories"]
    }


def resolve(name: str) -> str:
    """Return the full category key for a key or alias; raise :class:`UnknownCategoryError`."""
    key = ALIASES.get(name, name)
    if key not in categories():
        raise UnknownCategoryError(f"unknown data category {name!r}")
    return key


def resolve_use(name: str) -> str:
    """Return the canonical use for ``name`` (a use, a dotted sub-use or a fideslang alias)."""
    head, _, rest = name.partition(".")
    head = USE_ALIASES.get(head, head)
    if head not in USES:
        raise ValueError(f"unknown use {name!r}; expected one of {', '.join(USES)}")
    return f"{head}.{rest}" if rest else head


def is_within(category: str, prefix: str) -> bool:
    """True if ``category`` equals ``prefix`` or lies below it in the taxonomy."""
    return category == prefix or category.startswith(prefix + ".") or prefix in ("", "*")


def use_within(use: str, prefix: str) -> bool:
    """True if ``use`` equals ``prefix`` or is a sub-use of it."""
    return use == prefix or use.startswith(prefix + ".")


@lru_cache(maxsize=512)
def tier(category: str) -> Tier:
    """Sensitivity tier of a category: derived from its key, never declared."""
    if any(is_within(category, p) for p in _SENSITIVE_PREFIXES):
        return "sensitive"
    if any(is_within(category, p) for p in _IDENTIFIER_PREFIXES):
        return "identifier"
    return "quasi"


@lru_cache(maxsize=512)
def label(category: str) -> str:
    """Short label used in redaction tokens: the alias if there is one, else the last segment."""
    for alias, key in ALIASES.items():
        if key == category:
            return alias
    return category.rsplit(".", 1)[-1]
