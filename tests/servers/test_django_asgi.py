"""The Django example app under a real uvicorn process (ASGI), reached over HTTP.

uvicorn writes its access line when Django's handler sends the response, after the middleware
has returned: the request's known values must still be current then (found by review: under
ASGI the middleware left the request's context on return, and query values went to the
access log as sent).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

pytest.importorskip("django", reason="django is not installed in this env")

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(start_server: Callable[..., AbstractContextManager[Any]]) -> Iterator[Any]:
    cmd = [sys.executable, "-m", "uvicorn", "example_apps.django_app.asgi:application",
           "--host", "127.0.0.1", "--port", "{port}", "--lifespan", "off"]
    with start_server(cmd, env={"DJANGO_ALLOWED_HOSTS": "127.0.0.1"},
                      ready_path="/healthz") as running:
        yield running


def _settled(server: Any) -> str:
    # A path, not a query value: query values are redacted in the access log.
    marker = f"/mark-{uuid.uuid4().hex}"
    httpx.get(server.url + marker)
    deadline = time.monotonic() + 10
    while marker not in (text := server.output()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return str(text)


@pytest.mark.parametrize("path", ["/about", "/users/1", "/nowhere"])
def test_query_values_stay_out_of_the_access_log(server: Any, path: str) -> None:
    name = f"Zebulon Quackenbush {uuid.uuid4().hex[:8]}"
    r = httpx.get(server.url + path, params={"name": name})
    assert r.status_code in (200, 404)
    output = _settled(server)
    assert f"GET {path}?name=" in output
    assert name.split()[-1] not in output
