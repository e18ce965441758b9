"""The Starlette example app under a real uvicorn process, reached over HTTP.

Canary values (unique per run) are planted in requests; they must not come back in responses
or reach the server's output except where policy allows: declared fields go back to the
client, emails reach the log masked (``piimw.toml``), everything else stays out.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.server


class Shop:
    """The running example app, its output, and the bodies its handlers received."""

    def __init__(self, url: str, output: Callable[[], str], record: Path) -> None:
        self.url = url
        self._output = output
        self.record = record

    def settled_output(self) -> str:
        """The server output once everything before now is written (a marker request's
        access line comes after the log lines of every earlier request)."""
        marker = f"/healthz/mark-{uuid.uuid4().hex}"
        httpx.get(self.url + marker)
        deadline = time.monotonic() + 10
        while marker not in (text := self._output()) and time.monotonic() < deadline:
            time.sleep(0.02)
        return text

    def received(self) -> list[dict[str, Any]]:
        lines = self.record.read_text("utf-8").splitlines()
        return [json.loads(json.loads(line)["body"]) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def shop(start_server: Callable[..., AbstractContextManager[Any]],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    record = tmp_path_factory.mktemp("uvicorn") / "received.jsonl"
    record.touch()
    cmd = [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app",
           "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "on"]
    with start_server(cmd, env={"PIIMW_EXAMPLE_RECORD": str(record)},
                      ready_path="/healthz") as server:
        yield Shop(server.url, server.output, record)


def canary() -> str:
    return uuid.uuid4().hex[:12]


def test_planned_route_masks_card_in_response(shop: Shop) -> None:
    card = "4000 0566 5566 5556"
    r = httpx.post(shop.url + "/orders", json={"card": card, "items": [{"sku": "A", "qty": 1}]})
    assert r.status_code == 201
    assert r.json()["card"] == "**** **** **** 5556"
    assert card not in r.text
    assert r.headers["content-length"] == str(len(r.content))
    again = httpx.get(f"{shop.url}/orders/{r.json()['id']}")
    assert again.json()["card"] == "**** **** **** 5556"
    assert any(body.get("card") == card for body in shop.received())  # the handler got it


def test_unplanned_route_passes_through(shop: Shop) -> None:
    expected = b'{"service":"example shop","privacy_contact":"privacy@example.com"}'
    for headers in ({}, {"Sec-GPC": "1"}):
        r = httpx.get(shop.url + "/about", headers=headers)
        assert r.status_code == 200
        assert r.content == expected
        assert "vary" not in r.headers


def test_canaries_stay_out_of_responses_and_logs(shop: Shop) -> None:
    token = canary()
    email = f"canary-{token}@example.com"
    signup = {"email": email, "name": f"Canary {token}", "phone": f"+1 415 555 {token[:4]}",
              "password": f"pw-{token}-secret",
              "address": {"street": f"{token} Canary Road", "city": "Springfield"}}
    r = httpx.post(shop.url + "/signup", json=signup, headers={"Sec-GPC": "1"})
    assert r.status_code == 201
    body = r.json()
    # Policy allows declared, essential fields back to the client...
    assert body["email"] == email
    assert body["name"] == signup["name"]
    # ...but not the marketing phone under GPC, and never the password (writeOnly).
    assert "phone" not in body
    assert f"pw-{token}" not in r.text
    assert r.headers["vary"] == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"

    r = httpx.post(shop.url + "/support", json={"email": email, "message": f"help {token}"})
    assert r.status_code == 500
    assert token not in r.text

    received = [b for b in shop.received() if b.get("email") == email]
    assert received
    assert "phone" not in received[0]  # dropped before the handler
    assert received[0]["password"] == signup["password"]  # the handler needs it

    output = shop.settled_output()
    assert "signup" in output  # both were logged
    assert "mail relay refused" in output
    assert token not in output  # no canary part, in any field, in any log line
    assert "c***@example.com" in output  # the email, masked as piimw.toml allows


async def test_concurrent_requests_never_mix(shop: Shop) -> None:
    token = canary()
    rng = random.Random(token)
    n = 200
    gpc = [rng.random() < 0.5 for _ in range(n)]

    def email(i: int) -> str:
        return f"u{i}-{token}@example.com"

    def payload(i: int) -> dict[str, Any]:
        return {"email": email(i), "name": f"Person {i}x{token}", "phone": f"+1 202 555 {i:04d}",
                "password": f"secret-{i}-{token}"}

    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=shop.url, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post("/signup", json=payload(i), headers={"Sec-GPC": "1"} if gpc[i] else {})
            for i in range(n)))

    for i, r in enumerate(responses):
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["email"] == email(i)
        assert body["name"] == f"Person {i}x{token}"
        if gpc[i]:
            assert "phone" not in body
        else:
            assert body["phone"] == f"+1 202 555 {i:04d}"
        # varies on every signal header whether this request sent one or not (review)
        assert r.headers.get("vary") == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"
        others = [j for j in range(n) if j != i and f"u{j}-{token}@" in r.text]
        assert not others, f"response {i} carries values of requests {others}"

    by_email = {b["email"]: b for b in shop.received() if token in b.get("email", "")}
    assert len(by_email) == n
    for i in range(n):
        assert ("phone" in by_email[email(i)]) is not gpc[i], i

    output = shop.settled_output()
    assert output.count("signup {") >= n
    assert token not in output  # emails masked, names and passwords redacted
    assert not [i for i in range(n) if f"+1 202 555 {i:04d}" in output]
