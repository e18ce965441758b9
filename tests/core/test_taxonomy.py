from __future__ import annotations

import pytest

from piimw import taxonomy


def test_aliases_resolve_to_known_keys() -> None:
    for alias, key in taxonomy.ALIASES.items():
        assert taxonomy.resolve(alias) == key
        assert key in taxonomy.categories()


def test_extensions_are_present_and_marked() -> None:
    cats = taxonomy.categories()
    for key in ("user.demographic.trade_union_membership", "user.biometric.neural",
                "user.health_and_medical.event_date", "user.content.communications",
                "user.demographic.philosophical_belief"):
        assert cats[key].source == "piimw"
    assert cats["user.contact.email"].source == "fideslang"


def test_unknown_category() -> None:
    with pytest.raises(taxonomy.UnknownCategoryError):
        taxonomy.resolve("user.contact.emial")


def test_prefix_matching() -> None:
    assert taxonomy.is_within("user.contact.email", "user.contact")
    assert taxonomy.is_within("user.contact", "user.contact")
    assert not taxonomy.is_within("user.contactless", "user.contact")


def test_tiers() -> None:
    assert taxonomy.tier("user.financial.credit_card") == "sensitive"
    assert taxonomy.tier("user.contact.email") == "identifier"
    assert taxonomy.tier("user.demographic.date_of_birth") == "quasi"
    assert taxonomy.tier("user.demographic.trade_union_membership") == "sensitive"


def test_uses() -> None:
    assert taxonomy.resolve_use("third_party_sharing") == "third_party"
    assert taxonomy.resolve_use("marketing.email") == "marketing.email"
    with pytest.raises(ValueError, match="unknown use"):
        taxonomy.resolve_use("sale")


def test_labels() -> None:
    assert taxonomy.label("user.contact.email") == "email"
    assert taxonomy.label("user.contact.address.city") == "city"
