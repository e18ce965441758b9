"""Review findings on free-text detection, each a regression test."""

from __future__ import annotations

import pytest

from piimw.detect import Detectors


def found(text: str, det: Detectors) -> list[tuple[str, str]]:
    return [(s.detector, text[s.start : s.end]) for s in det.find(text)]


@pytest.mark.parametrize(
    ("region", "text", "numbers"),
    [
        ("GB", "020 7946 0958 020 7946 0958 020 7946 0958", ["020 7946 0958"] * 3),
        ("GB", "call 020 7946 0958 24 hours a day", ["020 7946 0958"]),
        ("GB", "(020) 7946 0958 12 times", ["020) 7946 0958"]),
        ("DE", "Tel. 0171 1234567 0171 1234568", ["0171 1234567", "0171 1234568"]),
    ],
)
def test_trunk0_number_followed_by_more_digit_groups(
    region: str, text: str, numbers: list[str]
) -> None:
    # The scan takes the longest shape, which runs into the groups that follow; only "+"
    # numbers and cards were shortened, so these national numbers went out in clear.
    assert found(text, Detectors(phone_region=region)) == [("phone", n) for n in numbers]
