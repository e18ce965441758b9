"""The fast phone validator agrees with ``phonenumbers.parse`` + ``is_valid_number``."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from piimw.detect.phones import phone_ok

TYPES = [PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE,
         PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP, PhoneNumberType.PERSONAL_NUMBER,
         PhoneNumberType.UAN, PhoneNumberType.SHARED_COST]


def reference(text: str, region: str | None) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(text, region)))
    except phonenumbers.NumberParseException:
        return False


def international_samples() -> list[str]:
    rng = random.Random(11)
    out: list[str] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
            out.append(e164)
            out.append(phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL))
            digits = list(e164[1:])
            for _ in range(2):  # near misses: one digit changed, one dropped, one added
                i = rng.randrange(2, len(digits))
                changed = digits.copy()
                changed[i] = str(rng.randrange(10))
                out.append("+" + "".join(changed))
            out.append("+" + "".join(digits[:-1]))
            out.append("+" + "".join(digits) + str(rng.randrange(10)))
    return out


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def test_international_numbers_agree_with_phonenumbers() -> None:
    # Numbers under 8 or over 15 digits (short codes of small territories) are not reported on
    # purpose: in free text they are far more often something else.
    samples = [s for s in international_samples() if 8 <= _digit_count(s) <= 15]
    assert len(samples) > 3000
    disagreements = [s for s in samples if phone_ok(s, "US") != reference(s, None)]
    assert len(disagreements) <= len(samples) // 500, disagreements[:20]
    assert not any(phone_ok(s, "US") for s in international_samples() if _digit_count(s) < 8)


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IN", "JP"])
def test_national_numbers_agree_with_phonenumbers(region: str) -> None:
    rng = random.Random(region)
    samples: list[str] = []
    for kind in TYPES:
        number = phonenumbers.example_number_for_type(region, kind)
        if number is None:
            continue
        national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
        samples.append(national)
        for _ in range(20):
            samples.append("".join(str(rng.randrange(10)) if c.isdigit() and rng.random() < 0.3
                                   else c for c in national))
    disagreements = [s for s in samples if phone_ok(s, region) != reference(s, region)]
    assert len(disagreements) <= len(samples) // 50, disagreements[:20]
