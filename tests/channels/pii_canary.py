"""Canary PII for the channel tests: fresh unique values, planted in an exchange, and a leak check.

Every test plants values no other test uses (uuid-based), so a leak can only come from the
scenario under test. :meth:`Canary.leaks` looks for each value in the forms it typically leaks
in (as is, URL-, HTML- and JSON-escaped, digits without separators) and for its random core (so
half a value counts as a leak too).
"""

from __future__ import annotations

import builtins
import html
import json
import re
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

from piimw.config import Config
from piimw.consent import Consent
from piimw.exchange import Exchange

_SEPARATORS = re.compile(r"[\s\-.()]")

#: Exception groups and ``add_note`` are Python 3.11+; the project supports 3.10.
HAS_GROUPS = sys.version_info >= (3, 11)


def exception_group(message: str, exceptions: list[Exception]) -> Exception:
    group: Exception = builtins.ExceptionGroup(message, exceptions)  # type: ignore[attr-defined]
    return group


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on 3.10 (where tracebacks do not print notes)."""
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]  # type: ignore[attr-defined]


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return digits + str((10 - total % 10) % 10)


@dataclass
class Canary:
    hex: str = field(default_factory=lambda: secrets.token_hex(5), repr=False)

    def __post_init__(self) -> None:
        n = int(self.hex, 16)
        self.email = f"zq.{self.hex}@example.org"
        self.name = f"Zq{self.hex}"
        body = f"4{n % 10**14:014d}"
        self.card = _luhn_complete(body)
        self.phone = f"+44 20 7946 0{n % 1000:03d}"
        self.ip = f"203.0.113.{n % 254 + 1}"
        self.token = f"tok_{self.hex}{secrets.token_hex(8)}"

    # -- planting -------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, str]:
        return {"email": self.email, "name": self.name, "card": self.card,
                "phone": self.phone, "ip": self.ip, "token": self.token}

    def payload(self) -> dict[str, object]:
        return {"email": self.email, "name": self.name, "card": self.card,
                "phone": self.phone, "plan": "pro", "count": 3}

    def plant(self, exchange: Exchange) -> Exchange:
        known = exchange.known
        known.add(self.email, "user.contact.email")
        known.add(self.name, "user.name")
        known.add(self.card, "user.financial.credit_card")
        known.add(self.phone, "user.contact.phone_number")
        known.add(self.ip, "user.device.ip_address")
        known.add(self.token, "user.authorization.credentials")
        return exchange

    def exchange(self, *, consent: Consent | None = None, config: Config | None = None,
                 path: str = "/signup") -> Exchange:
        return self.plant(Exchange(config or Config(), "POST", path, [], consent=consent))

    # -- looking for leaks ----------------------------------------------------------------
    def _forms(self, value: str) -> set[str]:
        return {value, quote(value), quote(value, safe=""), quote_plus(value),
                html.escape(value), json.dumps(value)[1:-1], repr(value)[1:-1]}

    def leaks(self, output: str | bytes | Iterable[str | bytes]) -> list[str]:
        """The names of the planted values that appear in ``output`` (empty: no leak)."""
        texts = [output] if isinstance(output, (str, bytes)) else list(output)
        text = "\n".join(t.decode("utf-8", "replace") if isinstance(t, bytes) else t
                         for t in texts)
        squeezed = _SEPARATORS.sub("", text)
        found = []
        for label, value in self.values.items():
            digits = _SEPARATORS.sub("", value).lstrip("+")
            if any(form in text for form in self._forms(value)) or (
                    label in ("card", "phone") and digits in squeezed):
                found.append(label)
        if self.hex in text.lower() and not found:
            found.append("core")
        return found

    def assert_clean(self, output: str | bytes | Iterable[str | bytes], what: str = "") -> None:
        leaked = self.leaks(output)
        assert not leaked, f"planted values leaked into {what or 'output'}: {leaked}"


class HookedAccount:
    """A clean ``repr``; what structlog's ``JSONRenderer`` shows instead (``__structlog__``)
    carries the email."""

    def __init__(self, email: str) -> None:
        self.email = email

    def __repr__(self) -> str:
        return "<Account 42>"

    def __structlog__(self) -> dict[str, object]:
        return {"id": 42, "email": self.email}
