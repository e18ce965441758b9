"""An opt-out is enforced on the very next request, on every worker of every server.

Per framework, two real multi-process servers share one Redis registry (db 13, a key prefix of
this run): Flask and Django under gunicorn (4 sync workers each; one server with ``--preload``,
so its workers are forked from a master that built the app), Starlette under uvicorn
(``--workers 4``). The apps live in ``tests/servers/optout/``; their one planned route,
``POST /echo``, tags ``phone`` with the use ``marketing`` and answers with the field names its
handler received, so every response shows one opt-out decision: ``phone`` missing means the
user counted as opted out of marketing.

The user signs in as the framework does it (Flask-Login's session key, ``django.contrib.auth``,
Starlette's ``AuthenticationMiddleware``), changes their choice through the opt-out API on one
server (``PUT``/``DELETE`` with the CSRF header), and right after the answer hundreds of
requests over several keep-alive connections to both servers check the decision. Any response
that shows the previous state counts as stale; there must be none, in either direction. A
``Sec-GPC: 1`` request from the signed-in user is written through to the registry: later
requests without the header stay opted out, on both servers. Every worker has answered (and so
cached the user's record) before the first change; the responses carry the worker's pid and
its registry cache hit count, so the test also sees that the requests were spread over the
workers and that the caches were in play. Per framework about 1,900 requests, 1,750 of them
right after a change; the file takes about a minute on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

pytestmark = [pytest.mark.redis, pytest.mark.server]

HERE = Path(__file__).resolve().parent / "optout"
REDIS_URL = "redis://127.0.0.1:6379/13"  # as in optout/piimw.toml
API = "/privacy/preferences"  # registry.api.path in optout/piimw.toml
PID_HEADER = "x-worker-pid"
CSRF = {"X-Requested-With": "piimw-test"}  # the header the opt-out API accepts from non-browsers
PHONE = "+1 415 555 0100"
WORKERS = 4
CONNECTIONS = 6  # keep-alive connections (and client threads) per server during a burst
RECYCLE = 20  # every RECYCLE-th request on a connection closes it
AFTER_CHANGE = 250  # requests right after each change, split over both servers
STICKY = 500  # requests without the header after one Sec-GPC request
TIME_LIMIT = 20.0  # seconds, per burst and for the warm-up
#: Known causes, named when the opt-out API answers with this (framework, status).
CAUSES = {
    ("flask", 401): "FlaskPIIMiddleware.user_id() learns the session user in prepare(), which "
                    "requests to the opt-out API never reach",
    ("django", 404): "piimw.contrib.django.PIIMiddleware does not serve registry.api.path",
}


def _gunicorn(target: str, *, preload: bool) -> list[str]:
    """4 sync workers. ``preload``: the app (and piimw's registry) is made in the master and
    the workers are forked from it, as many deployments do; else each worker imports it."""
    return [sys.executable, "-m", "gunicorn", "--workers", str(WORKERS), "--worker-class", "sync",
            "--bind", "127.0.0.1:{port}", "--graceful-timeout", "2", "--no-control-socket",
            *(["--preload"] if preload else []), target]


def _uvicorn(target: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", "{port}",
            "--workers", str(WORKERS), "--no-access-log", "--timeout-graceful-shutdown", "2"]


#: Two servers per framework, sharing one Redis registry.
COMMANDS = {
    "flask": [_gunicorn("flask_app:app", preload=True),
              _gunicorn("flask_app:app", preload=False)],
    "django": [_gunicorn("django_project.wsgi", preload=True),
               _gunicorn("django_project.wsgi", preload=False)],
    "starlette": [_uvicorn("starlette_app:app"), _uvicorn("starlette_app:app")],
}


@dataclass
class Servers:
    framework: str
    urls: list[str]
    outputs: list[Callable[[], str]]
    prefix: str

    def log(self) -> str:
        return "\n".join(f"--- server {i} ---\n{out()[-3000:]}"
                         for i, out in enumerate(self.outputs))


@pytest.fixture(scope="module", params=sorted(COMMANDS))
def servers(request: pytest.FixtureRequest,
            start_server: Callable[..., AbstractContextManager[Any]],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    framework = str(request.param)
    prefix = f"piimwtest-optout-{uuid.uuid4().hex[:12]}"
    env = {"PIIMW_HASH_KEY": "optout-propagation-test-key-0123456789",
           "OPTOUT_KEY_PREFIX": prefix,
           "OPTOUT_SECRET_KEY": uuid.uuid4().hex,
           "OPTOUT_DJANGO_DB": str(tmp_path_factory.mktemp("optout-django") / "users.db"),
           "DJANGO_SETTINGS_MODULE": "django_project.settings"}
    try:
        with ExitStack() as stack:
            running = [stack.enter_context(start_server(cmd, env=env, cwd=HERE,
                                                        ready_path="/healthz"))
                       for cmd in COMMANDS[framework]]
            yield Servers(framework, [s.url for s in running], [s.output for s in running],
                          prefix)
            for server in running:  # stop both at once; start_server then waits and reaps
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, signal.SIGTERM)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


@dataclass
class Tally:
    """What one burst of requests saw."""

    expect_phone: bool
    sent: int = 0
    stale: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pids: list[set[str]] = field(default_factory=lambda: [set(), set()])
    hits: dict[str, int] = field(default_factory=dict)  # max registry cache hits per pid
    elapsed: float = 0.0

    def record(self, server: int, i: int, r: httpx.Response) -> None:
        self.sent += 1
        pid = r.headers.get(PID_HEADER, "?")
        if r.status_code != 200:
            self.errors.append(f"server {server} pid {pid} request {i}: {r.status_code} "
                               f"{r.text[:200]}")
            return
        self.pids[server].add(pid)
        doc = r.json()
        self.hits[pid] = max(self.hits.get(pid, 0), int(doc.get("hits") or 0))
        got_phone = "phone" in doc["received"]
        if got_phone is not self.expect_phone:
            self.stale.append(f"server {server} pid {pid} request {i}: handler "
                              f"{'got' if got_phone else 'did not get'} phone, consent "
                              f"opted out of {doc['opted_out']}")


class User:
    """A signed-in user of both servers, as the framework signs users in."""

    def __init__(self, servers: Servers, uid: str, headers: dict[str, str]) -> None:
        self.servers = servers
        self.uid = uid
        self.headers = headers

    @classmethod
    def sign_in(cls, servers: Servers) -> User:
        uid = f"u{uuid.uuid4().hex[:10]}"
        if servers.framework == "starlette":  # AuthenticationMiddleware reads X-Test-User
            return cls(servers, uid, {"X-Test-User": uid})
        # Flask-Login's session key / django.contrib.auth.login(): a signed session cookie,
        # valid on both servers (same secret key).
        r = httpx.post(f"{servers.urls[0]}/login/{uid}", timeout=10)
        assert r.status_code == 200, r.text
        cookie = "; ".join(f"{name}={value}" for name, value in r.cookies.items())
        assert cookie, f"{servers.framework}: sign-in set no session cookie"
        return cls(servers, uid, {"Cookie": cookie})

    def api(self, server: int, method: str, doc: Any = None) -> httpx.Response:
        return httpx.request(method, self.servers.urls[server] + API, json=doc,
                             headers={**self.headers, **CSRF}, timeout=10)

    def api_call(self, server: int, method: str, doc: Any, expected: int) -> httpx.Response:
        """Read or change the preferences through the opt-out API, as the signed-in user."""
        r = self.api(server, method, doc)
        framework = self.servers.framework
        cause = CAUSES.get((framework, r.status_code))
        assert r.status_code == expected, (
            f"{framework}: {method} {API} as the signed-in user (server {server}) answered "
            f"{r.status_code}, not {expected}: {r.text[:200]!r}. The opt-out API "
            f"(registry.api.path) is not usable on {framework}, so a user cannot read or "
            f"change their opt-outs through it" + (f" ({cause})." if cause else "."))
        return r

    def echo(self, server: int, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.servers.urls[server] + "/echo", json={"ref": "one", "phone": PHONE},
                          headers={**self.headers, **(headers or {})}, timeout=10)

    def burst(self, n: int, *, expect_phone: bool, fresh: bool = False) -> Tally:
        """``n`` requests, half to each server, from CONNECTIONS threads per server sharing a
        keep-alive pool; every RECYCLE-th request closes its connection so that uvicorn's
        workers all get some (``fresh``: every request does)."""
        tally = Tally(expect_phone)
        lock = threading.Lock()
        deadline = time.monotonic() + TIME_LIMIT
        started = time.monotonic()
        recycle = 1 if fresh else RECYCLE

        def worker(client: httpx.Client, server: int, counter: Iterator[int],
                   share: int) -> None:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter)
                if i >= share:
                    return
                close = {"Connection": "close"} if i % recycle == recycle - 1 else {}
                r = client.post("/echo", json={"ref": f"r{i}", "phone": PHONE},
                                headers={**self.headers, **close})
                with lock:
                    tally.record(server, i, r)

        limits = httpx.Limits(max_connections=CONNECTIONS)
        with ExitStack() as stack:
            pool = stack.enter_context(ThreadPoolExecutor(2 * CONNECTIONS))
            jobs = []
            for server, url in enumerate(self.servers.urls):
                client = stack.enter_context(
                    httpx.Client(base_url=url, limits=limits, timeout=TIME_LIMIT))
                counter = itertools.count()
                share = n // 2 + (n % 2 if server == 0 else 0)
                jobs += [pool.submit(worker, client, server, counter, share)
                         for _ in range(CONNECTIONS)]
            for job in jobs:
                job.result()
        tally.elapsed = time.monotonic() - started
        return tally


def check(tally: Tally, servers: Servers, step: str, n: int, *, min_workers: int = 2) -> None:
    state = "allowed" if tally.expect_phone else "opted out"
    assert not tally.errors, (f"{servers.framework}, {step}: {len(tally.errors)} failed "
                              f"request(s), e.g. {tally.errors[:3]}\n{servers.log()}")
    assert tally.sent == n, (
        f"{servers.framework}, {step}: only {tally.sent}/{n} requests sent in {TIME_LIMIT:.0f}s")
    assert not tally.stale, (
        f"{servers.framework}, {step}: {len(tally.stale)} of {tally.sent} decisions stale "
        f"(expected {state}), e.g. {tally.stale[:5]}")
    for i, pids in enumerate(tally.pids):
        assert len(pids) >= min_workers, (
            f"{servers.framework}, {step}: server {i} answered from worker(s) {sorted(pids)} only")


class Totals:
    """Counts over a whole test, for the summary line (``pytest -s`` shows it)."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.sent = 0
        self.after_change = 0
        self.pids: list[set[str]] = [set(), set()]
        self.hits: dict[str, int] = {}
        self.steps: list[str] = []

    def add(self, tally: Tally, step: str | None = None) -> None:
        self.sent += tally.sent
        for i in (0, 1):
            self.pids[i] |= tally.pids[i]
        for pid, hits in tally.hits.items():
            self.hits[pid] = max(hits, self.hits.get(pid, 0))
        if step is not None:
            self.after_change += tally.sent
            self.steps.append(f"{step}: {tally.sent} in {tally.elapsed:.1f}s, "
                              f"{len(tally.pids[0])}+{len(tally.pids[1])} workers")

    def summary(self, test: str) -> str:
        return (f"\n{self.servers.framework} {test}: {self.sent} requests "
                f"({self.after_change} right after a change), 0 stale, "
                f"{len(self.pids[0])}+{len(self.pids[1])} distinct worker pids, "
                f"{sum(1 for h in self.hits.values() if h > 0)} with cache hits; "
                + "; ".join(self.steps))


def warm_up(user: User, totals: Totals, *, expect_phone: bool) -> None:
    """Requests on fresh connections until every worker of both servers has answered, so
    that each holds this user's current record in its cache (bounded)."""
    servers = totals.servers
    seen: list[set[str]] = [set(), set()]
    deadline = time.monotonic() + TIME_LIMIT
    for _ in range(20):
        tally = user.burst(64, expect_phone=expect_phone, fresh=True)
        check(tally, servers, "warm-up", 64, min_workers=1)  # some may still be booting
        totals.add(tally)
        for i in (0, 1):
            seen[i] |= tally.pids[i]
        if all(len(p) == WORKERS for p in seen) or time.monotonic() > deadline:
            break
    assert all(len(p) == WORKERS for p in seen), (
        f"{servers.framework}: not every worker answered within {TIME_LIMIT:.0f}s: "
        f"{[sorted(p) for p in seen]}")


def test_api_changes_are_enforced_on_the_next_request_everywhere(servers: Servers) -> None:
    user = User.sign_in(servers)
    totals = Totals(servers)
    warm_up(user, totals, expect_phone=True)

    steps: list[tuple[str, int, str, Any, int, bool]] = [
        # (step, server taking the change, method, body, status, phone expected after)
        ("PUT opt-out", 0, "PUT", {"opt_out": {"uses": ["marketing"]}}, 200, False),
        ("DELETE", 1, "DELETE", None, 204, True),
        ("PUT opt-out", 1, "PUT", {"opt_out": {"uses": ["marketing"]}}, 200, False),
        ("PUT opt-in", 0, "PUT", {"opt_in": {"uses": ["marketing"]}}, 200, True),
    ]
    for step, server, method, doc, status, expect_phone in steps:
        user.api_call(server, method, doc, status)
        tally = user.burst(AFTER_CHANGE, expect_phone=expect_phone)
        check(tally, servers, f"after {step} on server {server}", AFTER_CHANGE)
        totals.add(tally, f"{step} on {server}")

    r = user.api_call(1, "GET", None, 200)
    assert r.json()["opted_out"]["uses"] == []
    assert [u["name"] for u in r.json()["opted_in"]["uses"]] == ["marketing"]
    # The per-process caches were in play (else this would only test uncached reads).
    assert sum(1 for hits in totals.hits.values() if hits > 0) >= WORKERS, totals.hits
    print(totals.summary("opt-out API"))


def test_gpc_from_a_signed_in_user_is_sticky_everywhere(servers: Servers) -> None:
    user = User.sign_in(servers)
    totals = Totals(servers)
    warm_up(user, totals, expect_phone=True)

    r = user.echo(0, {"Sec-GPC": "1"})  # one request with the signal...
    assert r.status_code == 200, r.text
    assert "phone" not in r.json()["received"]
    # ...and every later one without it, on both servers, stays opted out.
    tally = user.burst(STICKY, expect_phone=False)
    check(tally, servers, "after one Sec-GPC request (sticky)", STICKY)
    totals.add(tally, "after Sec-GPC")

    # The registry holds the GPC opt-out under a pseudonym, never the raw user id.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() for k in client.scan_iter(match=f"{servers.prefix}:*", count=500)]
    finally:
        client.close()
    assert keys
    assert not [k for k in keys if user.uid in k]
    r = user.api_call(1, "GET", None, 200)
    assert [(u["name"], u["signals"]) for u in r.json()["opted_out"]["uses"]] == [
        ("marketing", ["gpc"]), ("third_party", ["gpc"])]

    user.api_call(1, "DELETE", None, 204)  # the user clears it themselves
    tally = user.burst(AFTER_CHANGE, expect_phone=True)
    check(tally, servers, "after DELETE of the sticky GPC opt-out", AFTER_CHANGE)
    totals.add(tally, "DELETE on 1")
    print(totals.summary("sticky GPC"))
