"""Shared helpers for the audit tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from piimw.audit import AuditSettings, AuditTrail
from piimw.audit.records import AuditKey, Sealer
from piimw.audit.sinks import open_sink
from piimw.config import Config
from piimw.exchange import Exchange

KEY = "audit-test-key-0123456789abcdef"

SIGNUP = {
    "type": "object",
    "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
        "name": {"type": "string", "x-pii": {"category": "name", "uses": ["marketing"]}},
        "extra": {"type": "object", "additionalProperties": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "x-pii": "email"},
        "friends": {"type": "array", "items": {"type": "object", "properties": {
            "email": {"type": "string", "x-pii": "email"}}}},
    },
}
PROFILE = {"type": "object", "properties": {"nickname": {"type": "string"}}}

# Values planted in requests; none may ever appear in a trail.
PLANTED = ("jane.canary@example.com", "4111 1111 1111 1111", "Janet Canary",
           "bob.canary@example.org", "4242 4242 4242 4242", "subject-canary-42",
           "tok-canary-secret-123456", "carol.canary@example.net", "dave.canary@example.com")


def write_schemas(tmp_path: Path) -> Path:
    d = tmp_path / "schemas"
    d.mkdir()
    (d / "signup.json").write_text(json.dumps(SIGNUP))
    (d / "user.json").write_text(json.dumps(USER))
    (d / "profile.json").write_text(json.dumps(PROFILE))
    return d


def make_config(schemas: Path, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "routes": [
            {"route": "POST /signup", "request": "signup.json", "response": "user.json"},
            {"route": "PUT /profile", "request": "profile.json"},
        ],
    }
    data.update(extra)
    return Config.from_dict(data, base_dir=schemas)


def trail_for(url: str, key: AuditKey, *, env: str = "test", **settings: Any) -> AuditTrail:
    s = AuditSettings(url=url, **settings)
    sealer = Sealer(key, env, s.checkpoint_every)
    return AuditTrail(open_sink(url, sealer), key, environment=env, policy="p" * 32, settings=s)


def exchange(config: Config, method: str = "POST", path: str = "/signup", *,
             body: Any = None, headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
             response: Any = None, status: int = 200, query: bytes = b"") -> Exchange:
    """Drive one request through the exchange the way the middleware does."""
    hdrs = [(b"content-type", b"application/json")]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in headers]
    ex = Exchange(config, method, path, hdrs, query)
    ex.add_client_address("198.51.100.23")
    if body is not None:
        out = ex.request_body(hdrs, json.dumps(body).encode())
        if out.problem is not None:
            ex.status = out.problem.status
            return ex
    resp_headers = [(b"content-type", b"application/json")]
    if ex.wants_response_body(status, resp_headers) and response is not None:
        ex.response_body(status, resp_headers, json.dumps(response).encode())
    return ex


def signup_body() -> dict[str, Any]:
    return {"email": "jane.canary@example.com",
            "card": "4111 1111 1111 1111", "name": "Janet Canary",
            "extra": {"bob.canary@example.org": "write to carol.canary@example.net"},
            "tags": ["dave.canary@example.com"]}


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class FlakySink:
    """A sink that fails (and fails its health probe) while ``down``."""

    url = "flaky://"

    def __init__(self) -> None:
        self.down = False
        self.lines: list[Mapping[str, Any]] = []

    def append(self, payloads: Sequence[Mapping[str, Any]]) -> list[bytes]:
        if self.down:
            raise OSError("disk full")
        self.lines.extend(payloads)
        return []

    def probe(self) -> None:
        if self.down:
            raise OSError("disk full")

    def finish(self) -> list[bytes]:
        return []

    def close(self) -> None:
        return None


def flaky_trail(on_failure: str, key: AuditKey) -> tuple[AuditTrail, FlakySink]:
    """A trail over a :class:`FlakySink` that retries and probes every 50 ms."""
    sink = FlakySink()
    s = AuditSettings(on_failure=on_failure, summary_interval=0.05)  # type: ignore[arg-type]
    trail = AuditTrail(sink, key, environment="t", policy="p", settings=s)
    trail._writer.retry_interval = 0.05
    return trail, sink
