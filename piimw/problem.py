"""RFC 9457 problem documents: the only error bodies piimw writes. They never echo a value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://piimw.readthedocs.io/problems/"

TITLES = {
    400: "Malformed request body",
    403: "Refused by privacy policy",
    413: "Request body too large to inspect",
    415: "Unsupported media type",
    422: "Request body failed validation",
    500: "Internal Server Error",
}


@dataclass
class Problem:
    status: int
    kind: str
    detail: str
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.kind,
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            doc["errors"] = self.errors
        return doc

    def body(self) -> bytes:
        return orjson.dumps(self.as_dict())

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]


def internal_error() -> Problem:
    """What a client sees when a response could not be inspected: nothing from the app."""
    return Problem(500, "response-not-inspectable",
                   "The response could not be checked for personal data and was withheld.")
