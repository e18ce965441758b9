"""The detector protocol every machine-learning (NER) engine plugs into."""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from piimw.detect.spans import Span

__all__ = ["ADDRESS", "LABEL_CATEGORIES", "NAME", "NERDetector"]

NAME: Final = "user.name"
ADDRESS: Final = "user.contact.address"

#: NER labels (spaCy/Presidio style and our own) mapped onto piimw categories.
LABEL_CATEGORIES: Final[dict[str, str]] = {
    "PER": NAME, "PERSON": NAME,
    "ADDR": ADDRESS, "ADDRESS": ADDRESS, "STREET_ADDRESS": ADDRESS,
    "LOC": ADDRESS, "LOCATION": ADDRESS, "GPE": "user.contact.address.city",
}


@runtime_checkable
class NERDetector(Protocol):
    """Finds personal data in free text; slow is fine (it never runs on the request path).

    ``find`` returns sorted :class:`~piimw.detect.spans.Span` objects whose ``category`` is a
    piimw category (``user.name``, ``user.contact.address``, ...) and whose ``detector`` is
    ``name``. Implementations must be safe to call from one background thread; they never
    log, store or return the matched values.
    """

    name: str

    def find(self, text: str) -> list[Span]: ...
