"""Discovery through the real middleware: config -> sampler -> audit trail -> data map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from asgi_driver import call

import piimw
from piimw.asgi import PIIMiddleware
from piimw.datamap import observed

AUDIT_KEY = "audit-key-0123456789abcdef"


async def test_untagged_name_is_discovered_off_the_request_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIIMW_AUDIT_KEY", AUDIT_KEY)
    schema = tmp_path / "ticket.json"
    schema.write_bytes(orjson.dumps({"type": "object", "properties": {
        "email": {"type": "string", "x-pii": "email"}, "message": {"type": "string"}}}))
    trail = tmp_path / "audit.jsonl"
    cfg = piimw.Config.from_dict({
        "routes": [{"route": "POST /tickets", "request": str(schema)}],
        "audit": {"url": f"jsonl://{trail}"},
        "discovery": {"rate": 1.0},
    })
    assert cfg.discovery is not None
    assert cfg.audit is not None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    body = orjson.dumps({"email": "q@example.com",
                         "message": "Please call Gwendolyn Okafor at the front desk"})
    try:
        r = await call(PIIMiddleware(app, cfg), "POST", "/tickets", body=body,
                       headers=[("content-type", "application/json")])
        assert r.status == 204
        assert cfg.discovery.flush(30)
        cfg.audit.flush(10)
    finally:
        cfg.discovery.close()
        cfg.audit.close()
    text = trail.read_text()
    assert "Gwendolyn" not in text
    assert "Okafor" not in text
    assert "q@example.com" not in text
    kinds = [orjson.loads(line)["kind"] for line in text.splitlines()]
    assert "discovery" in kinds
    seen = observed([f"jsonl://{trail}"])
    assert any("user.name" in str(entry) for entry in seen)
