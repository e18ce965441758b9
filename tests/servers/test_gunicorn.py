"""The Flask and the Django example apps under real gunicorn (sync workers, two of them),
reached over HTTP.

Canary values (unique per run) are planted in requests; they must not come back in responses
or reach the server's output, except where policy allows (declared, essential fields go back
to the client; emails reach the log masked, per each app's ``piimw.toml``).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

gunicorn = pytest.importorskip("gunicorn")

pytestmark = pytest.mark.server

APPS = {
    "flask": ("example_apps.flask_app:create_app()", {}),
    # Debug pages on: Django's technical 500 page quotes the request, and piimw scrubs it.
    "django": ("example_apps.django_app.wsgi", {"DJANGO_DEBUG": "1",
                                                "DJANGO_ALLOWED_HOSTS": "127.0.0.1"}),
}


@dataclass
class Shop:
    name: str
    url: str
    output: Callable[[], str]


@pytest.fixture(scope="module", params=sorted(APPS))
def shop(request: pytest.FixtureRequest,
         start_server: Callable[..., AbstractContextManager[Any]]) -> Iterator[Shop]:
    # Each tox env pins one framework; CI installs both, so nothing is skipped there.
    pytest.importorskip(request.param, reason=f"{request.param} is not installed in this env")
    target, env = APPS[request.param]
    cmd = [sys.executable, "-m", "gunicorn", "--workers", "2", "--worker-class", "sync",
           "--bind", "127.0.0.1:{port}", "--graceful-timeout", "2", target]
    if gunicorn.version_info >= (27,):  # no shared control socket in the home directory
        cmd.insert(3, "--no-control-socket")
    with start_server(cmd, env=env, ready_path="/healthz") as server:
        yield Shop(request.param, server.url, server.output)


def canary() -> str:
    return uuid.uuid4().hex[:12]


def test_canaries_stay_out_of_responses_and_logs(shop: Shop) -> None:
    token = canary()
    email = f"canary-{token}@example.com"
    signup = {"email": email, "name": f"Canary {token}", "phone": f"+1 415 555 {token[:4]}",
              "password": f"pw-{token}-secret"}
    r = httpx.post(shop.url + "/signup", json=signup, headers={"Sec-GPC": "1"})
    assert r.status_code == 201
    body = r.json()
    assert body["email"] == "c***@example.com"  # the User schema masks it
    assert body["name"] == signup["name"]  # declared and essential: allowed back
    assert "phone" not in body  # marketing, and the client sent GPC
    assert f"pw-{token}" not in r.text  # writeOnly
    assert email not in r.text
    assert "Sec-GPC" in r.headers["vary"]

    card = f"4000 0566 5566 {int(token[:6], 16) % 10000:04d}"
    r = httpx.post(shop.url + "/orders", json={"card": card, "items": [{"sku": "A", "qty": 1}]})
    assert r.status_code == 201
    assert card not in r.text
    assert r.json()["card"].startswith("**** **** **** ")

    r = httpx.post(shop.url + "/support", json={"email": email, "message": f"help {token}"})
    assert r.status_code == 500
    assert token not in r.text

    output = shop.output()
    assert "signup" in output  # the payload was logged...
    assert token not in output  # ...without any canary part, in any field or traceback
    assert card not in output


def test_profile_masked(shop: Shop) -> None:
    r = httpx.get(shop.url + "/users/1")
    assert r.status_code == 200
    assert r.json()["email"] == "d***@example.com"
    assert r.json()["card"] == "**** **** **** 4242"
    assert "4242 4242 4242 4242" not in r.text
    assert r.headers["content-length"] == str(len(r.content))


def test_problem_json_on_invalid_input(shop: Shop) -> None:
    token = canary()
    r = httpx.post(shop.url + "/signup", content=b'{"email": "' + token.encode(),
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert token not in r.text

    r = httpx.post(shop.url + "/signup", json={"email": f"{token}@example.com",
                                               "name": f"Canary {token}", "nickname": token})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert token not in r.text
    assert {e["keyword"] for e in r.json()["errors"]} >= {"required"}


def test_unplanned_route_passes_through(shop: Shop) -> None:
    for headers in ({}, {"Sec-GPC": "1"}):
        r = httpx.get(shop.url + "/about", headers=headers)
        assert r.status_code == 200
        assert r.json() == {"service": "example shop", "privacy_contact": "privacy@example.com"}
        assert "Sec-GPC" not in r.headers.get("vary", "")


def test_session_opt_out_across_workers(shop: Shop) -> None:
    with httpx.Client(base_url=shop.url) as client:
        assert client.post("/privacy/opt-out", json={"uses": ["marketing"]}).status_code == 204
        for _ in range(4):  # whichever worker answers, the flag travels in the cookie
            r = client.post("/signup", json={"email": "jane@example.com", "name": "Jane",
                                             "phone": "+14155550100", "password": "x" * 12})
            assert r.status_code == 201
            assert "phone" not in r.json()
