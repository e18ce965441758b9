"""Fixtures shared by the channel tests."""

from __future__ import annotations

import pytest
from pii_canary import Canary


@pytest.fixture
def canary() -> Canary:
    """A fresh set of planted values (email, card, name...) that must never reach a sink."""
    return Canary()
