"""Discovery records never carry a client-chosen key: an IBAN, a token or a name as a key."""

from __future__ import annotations

import json
from typing import Any

from piimw.discover import DiscoverySampler, TaggerDetector

IBAN, TOKEN, NAME_KEY = "DE89370400440532013000", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "JohnSmith"
TEXT = "John Smith lives at 12 Baker Street"


class _Exchange:
    route_template = "/signup"
    method = "4111111111111111"  # any token a client sends


class _Trail:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def record(self, payload: dict[str, Any]) -> bool:
        self.payloads.append(payload)
        return True


def test_keys_that_are_pii_become_stars_and_the_method_is_checked() -> None:
    trail = _Trail()
    with DiscoverySampler(TaggerDetector(), rate=1.0, audit=trail, duty=1.0) as sampler:
        assert sampler.offer(_Exchange(), {f"/accounts/{IBAN}": TEXT, f"/tokens/{TOKEN}": TEXT,
                                           f"/friends/{NAME_KEY}": TEXT, "/profile/bio": TEXT})
        assert sampler.flush(20)
    (payload,) = trail.payloads
    text = json.dumps(payload)
    assert not [v for v in (IBAN, TOKEN, NAME_KEY) if v in text]
    assert {d["pattern"] for d in payload["decisions"]} == {
        "/accounts/*", "/tokens/*", "/friends/*", "/profile/bio"}
    assert payload["method"] == "(other)"
    assert "4111111111111111" not in text
