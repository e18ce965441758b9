"""The sans-IO opt-out API: auth, CSRF, rate limits, no cross-subject access, problem+json."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import orjson
import pytest

from piimw.optout_api import APISettings, OptOutAPI, gpc_json_response
from piimw.registry import Registry
from piimw.signals import ConsentSettings, GpcJson
from piimw.transform import Hasher

MakeRegistry = Callable[..., Registry]
SAME = [(b"host", b"app.example"), (b"sec-fetch-site", b"same-origin")]
JSON = [(b"content-type", b"application/json")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(hasher: Hasher) -> Iterator[Registry]:
    with Registry("memory://", hasher) as registry:
        yield registry


@pytest.fixture
def api(registry: Registry) -> OptOutAPI:
    return OptOutAPI(registry, APISettings(rate_per_minute=600, burst=50))


def _doc(body: bytes) -> dict[str, object]:
    doc = orjson.loads(body)
    assert isinstance(doc, dict)
    return doc


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def _put(api: OptOutAPI, user: str | None, doc: object, extra: list[tuple[bytes, bytes]] = SAME,
         **kw: object) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return api.handle("PUT", user, orjson.dumps(doc), extra + JSON, **kw)  # type: ignore[arg-type]


def test_get_put_delete_round_trip(api: OptOutAPI, registry: Registry) -> None:
    status, headers, body = api.handle("GET", "alice", b"", SAME)
    assert status == 200
    assert _header(headers, b"cache-control") == b"no-store"
    assert _doc(body) == {"opted_out": {"uses": [], "categories": []}, "opted_in": {"uses": []}}
    status, _, body = _put(api, "alice", {"opt_out": {"uses": ["marketing"],
                                                      "categories": ["email"]},
                                          "opt_in": {"uses": ["analytics"]}})
    assert status == 200
    doc = _doc(body)
    assert [u["name"] for u in doc["opted_out"]["uses"]] == ["marketing"]  # type: ignore[index]
    assert doc["opted_out"]["categories"][0]["name"] == "user.contact.email"  # type: ignore[index]
    assert doc["opted_in"]["uses"][0]["name"] == "analytics"  # type: ignore[index]
    consent = registry.get(registry.subject_for("alice"))
    assert consent.opted_out_uses == {"marketing"}
    assert consent.opted_in == {"analytics"}
    assert "subject" not in doc
    assert "hmac:" not in body.decode()
    status, _, body = api.handle("HEAD", "alice", b"", SAME)
    assert status == 200
    assert body == b""
    status, headers, body = api.handle("DELETE", "alice", b"", SAME)
    assert status == 204
    assert body == b""
    assert registry.get(registry.subject_for("alice")).is_default


def test_authentication_required(api: OptOutAPI) -> None:
    for method in ("GET", "PUT", "DELETE"):
        status, headers, body = api.handle(method, None, b"{}", SAME + JSON)
        assert status == 401
        assert _header(headers, b"content-type") == b"application/problem+json"
        assert _doc(body)["status"] == 401
    assert api.handle("GET", "", b"", SAME)[0] == 401


def test_no_way_to_address_another_subject(api: OptOutAPI, registry: Registry) -> None:
    bob = registry.subject_for("bob")
    registry.opt_out(bob, ["marketing"])
    # The body cannot name a subject or user: unknown members are refused.
    for doc in ({"subject": bob}, {"user": "bob"}, {"opt_out": {"uses": ["analytics"]},
                                                    "subject": bob}):
        status, _, body = _put(api, "alice", doc)
        assert status == 422
        assert bob not in body.decode()
        assert "bob" not in body.decode()
    # Whatever alice does, only alice's record changes.
    _put(api, "alice", {"opt_in": {"uses": ["marketing"]}})
    api.handle("DELETE", "alice", b"", SAME)
    assert registry.get(bob).opted_out_uses == {"marketing"}
    status, _, body = api.handle("GET", "alice", b"", SAME)
    assert _doc(body)["opted_out"] == {"uses": [], "categories": []}


@pytest.mark.parametrize("headers", [
    [(b"host", b"app.example"), (b"sec-fetch-site", b"cross-site")],
    [(b"host", b"app.example"), (b"sec-fetch-site", b"same-site")],
    [(b"host", b"app.example"), (b"sec-fetch-site", b"none")],
    [(b"host", b"app.example"), (b"origin", b"https://evil.example")],
    [(b"host", b"app.example"), (b"origin", b"null")],
    [(b"host", b"app.example"), (b"origin", b"https://app.example.evil.example")],
    [(b"host", b"app.example"), (b"origin", b"https://app.example"),
     (b"origin", b"https://evil.example")],
    [(b"host", b"app.example")],  # no Origin, no Sec-Fetch-Site, no custom header
    # Sec-Fetch-Site wins over a custom header: a site with loose CORS is still protected.
    [(b"host", b"app.example"), (b"sec-fetch-site", b"cross-site"),
     (b"x-requested-with", b"XMLHttpRequest")],
])
def test_csrf_refused(api: OptOutAPI, registry: Registry,
                      headers: list[tuple[bytes, bytes]]) -> None:
    for method in ("PUT", "DELETE"):
        status, _response_headers, body = api.handle(
            method, "alice", orjson.dumps({"opt_in": {"uses": ["marketing"]}}), headers + JSON)
        assert status == 403
        assert str(_doc(body)["type"]).endswith("/cross-site-request")
        assert b"evil" not in body
    assert registry.record(registry.subject_for("alice")).empty
    # Reads are not state-changing: allowed (the browser's CORS keeps them same-origin).
    assert api.handle("GET", "alice", b"", headers)[0] == 200


@pytest.mark.parametrize("headers", [
    [(b"host", b"app.example"), (b"sec-fetch-site", b"same-origin")],
    [(b"host", b"app.example"), (b"origin", b"https://app.example")],
    [(b"host", b"app.example:8443"), (b"origin", b"https://app.example:8443")],
    [(b"host", b"app.example"), (b"origin", b"http://app.example:80")],
    [(b"host", b"app.example"), (b"x-requested-with", b"XMLHttpRequest")],
])
def test_same_origin_accepted(api: OptOutAPI, headers: list[tuple[bytes, bytes]]) -> None:
    status, _, _ = api.handle("PUT", "alice", orjson.dumps({"opt_out": {"uses": ["analytics"]}}),
                              headers + JSON)
    assert status == 200


def test_origin_checks_scheme_and_allowed_origins(registry: Registry) -> None:
    api = OptOutAPI(registry, APISettings(allowed_origins=("https://account.example",)))
    body = orjson.dumps({"opt_out": {"uses": ["analytics"]}})
    cross = [(b"origin", b"https://account.example"), *JSON]
    assert api.handle("PUT", "a", body, cross, host="app.example")[0] == 200
    plain = [(b"origin", b"http://app.example"), *JSON]
    assert api.handle("PUT", "a", body, plain, host="app.example", scheme="https")[0] == 403
    assert api.handle("PUT", "a", body, plain, host="app.example", scheme="http")[0] == 200


def test_token_auth_skips_csrf_but_not_content_type(api: OptOutAPI) -> None:
    body = orjson.dumps({"opt_out": {"uses": ["analytics"]}})
    assert api.handle("PUT", "alice", body, JSON, cookie_auth=False)[0] == 200
    status, _, _ = api.handle("PUT", "alice", body, [(b"content-type", b"text/plain")],
                              cookie_auth=False)
    assert status == 415


def test_put_requires_json_content_type(api: OptOutAPI) -> None:
    body = orjson.dumps({"opt_out": {"uses": ["analytics"]}})
    for ctype in (b"text/plain", b"application/x-www-form-urlencoded", b"multipart/form-data"):
        status, _, _resp = api.handle("PUT", "alice", body, [*SAME, (b"content-type", ctype)])
        assert status == 415
    assert api.handle("PUT", "alice", body, SAME)[0] == 415
    ok = [*SAME, (b"content-type", b"application/json; charset=utf-8")]
    assert api.handle("PUT", "alice", body, ok)[0] == 200


def test_errors_never_echo_input(api: OptOutAPI) -> None:
    canary = "canary-jane.doe@example.com"
    cases = [
        b"{not json " + canary.encode(),
        orjson.dumps({"opt_out": {"uses": [canary]}}),
        orjson.dumps({"opt_out": {"categories": [canary]}}),
        orjson.dumps({canary: 1}),
        orjson.dumps({"opt_out": {canary: []}}),
        orjson.dumps([canary]),
        orjson.dumps({"opt_out": {"uses": ["essential"]}}),
        orjson.dumps({"opt_out": {"uses": ["analytics"]}, "opt_in": {"uses": ["analytics"]}}),
        orjson.dumps({"opt_out": {"uses": [canary] * 100}}),
        b"{" + b" " * 9000 + b"}",
    ]
    for body in cases:
        status, headers, resp = api.handle("PUT", "alice", body, SAME + JSON)
        assert status in (400, 413, 422), body[:40]
        assert _header(headers, b"content-type") == b"application/problem+json"
        assert canary.encode() not in resp
        doc = _doc(resp)
        assert set(doc) <= {"type", "title", "status", "detail", "errors"}
    status, _, resp = api.handle("PUT", "alice", orjson.dumps(
        {"opt_out": {"uses": ["analytics", canary]}}), SAME + JSON)
    assert _doc(resp)["errors"] == [{"pointer": "/opt_out/uses/1", "keyword": "enum"}]


def test_rate_limit_per_subject(registry: Registry) -> None:
    clock = Clock()
    api = OptOutAPI(registry, APISettings(rate_per_minute=6, burst=3), clock=clock)
    for _ in range(3):
        assert api.handle("GET", "alice", b"", SAME)[0] == 200
    status, headers, _body = api.handle("GET", "alice", b"", SAME)
    assert status == 429
    assert _header(headers, b"retry-after") == b"10"
    assert api.handle("GET", "bob", b"", SAME)[0] == 200  # buckets are per subject
    clock.now += 10
    assert api.handle("GET", "alice", b"", SAME)[0] == 200
    assert api.handle("GET", "alice", b"", SAME)[0] == 429
    # Unauthenticated and cross-site requests are refused before they cost a token.
    clock.now += 30
    for _ in range(10):
        api.handle("PUT", "alice", b"{}", [(b"sec-fetch-site", b"cross-site"), *JSON])
    assert api.handle("GET", "alice", b"", SAME)[0] == 200


def test_method_not_allowed(api: OptOutAPI) -> None:
    status, headers, _ = api.handle("POST", "alice", b"{}", SAME + JSON)
    assert status == 405
    assert _header(headers, b"allow") == b"GET, HEAD, PUT, DELETE"


def test_registry_down_is_503(hasher: Hasher) -> None:
    registry = Registry("redis://127.0.0.1:1/0", hasher, timeout=0.05)
    api = OptOutAPI(registry)
    try:
        status, headers, body = api.handle("GET", "alice", b"", SAME)
        assert status == 503
        assert _header(headers, b"retry-after") == b"5"
        assert b"alice" not in body
        status, _, _ = _put(api, "alice", {"opt_out": {"uses": ["analytics"]}})
        assert status == 503
    finally:
        registry.close()


def test_gpc_json() -> None:
    assert gpc_json_response(ConsentSettings()) is None
    status, headers, body = gpc_json_response(  # type: ignore[misc]
        ConsentSettings(gpc_json=GpcJson(last_update="2024-05-01")))
    assert status == 200
    assert orjson.loads(body) == {"gpc": True, "lastUpdate": "2024-05-01"}
    assert _header(headers, b"content-type") == b"application/json"
    status, _, body = gpc_json_response(GpcJson(), "HEAD")  # type: ignore[misc]
    assert status == 200
    assert body == b""
    assert orjson.loads(gpc_json_response(GpcJson())[2]) == {"gpc": True}  # type: ignore[index]
    assert gpc_json_response(GpcJson(), "POST")[0] == 405  # type: ignore[index]


def test_from_config() -> None:
    from piimw.config import Config

    env = {"PIIMW_HASH_KEY": "registry-test-key-0123456789"}
    assert OptOutAPI.from_config(Config.from_dict({}, environ=env)) is None
    no_path = Config.from_dict({"registry": {"url": "memory://api"}}, environ=env)
    assert OptOutAPI.from_config(no_path) is None
    config = Config.from_dict({"registry": {"url": "memory://api", "api": {
        "path": "/privacy/preferences", "rate_per_minute": 30, "burst": 2,
        "allowed_origins": ["https://Account.example"]}}}, environ=env)
    api = OptOutAPI.from_config(config)
    assert api is not None
    assert api.settings == APISettings(path="/privacy/preferences", rate_per_minute=30.0,
                                       burst=2, allowed_origins=("https://account.example",))
    api.registry.close()
