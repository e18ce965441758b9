"""FastAPI: plans from the generated OpenAPI (Pydantic ``json_schema_extra`` x-pii tags)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from pydantic.config import JsonDict

import piimw
from piimw.contrib.starlette import LazyOpenAPI, PIIMiddleware, openapi_config

MARKETING_PHONE: JsonDict = {"x-pii": {"category": "phone", "uses": ["marketing"]}}


class SignupIn(BaseModel):
    email: str = Field(json_schema_extra={"x-pii": "email"})
    name: str | None = Field(default=None, json_schema_extra={"x-pii": "name"})
    phone: str | None = Field(default=None, json_schema_extra=MARKETING_PHONE)
    password: str = Field(min_length=8, json_schema_extra={"writeOnly": True})


class UserOut(BaseModel):
    id: int
    email: str = Field(json_schema_extra={"x-pii": {"category": "email", "action": "mask"}})
    name: str | None = Field(default=None, json_schema_extra={"x-pii": "name"})
    phone: str | None = Field(default=None, json_schema_extra=MARKETING_PHONE)


class Bad(BaseModel):
    email: str = Field(json_schema_extra={"x-pii": "not-a-category"})


class Counting(LazyOpenAPI):
    """A LazyOpenAPI that counts its builds."""

    builds: list[int]

    def build(self, app: Any = None) -> piimw.Config:
        self.builds.append(1)
        return super().build(app)


def counting(**kwargs: Any) -> Counting:
    lazy = Counting(**kwargs)
    object.__setattr__(lazy, "builds", [])
    return lazy


def make_app(config: Any, received: list[SignupIn] | None = None,
             extra: Callable[[FastAPI], None] | None = None) -> FastAPI:
    app = FastAPI()
    # The usual order: middleware first, routes after. LazyOpenAPI makes that work.
    app.add_middleware(PIIMiddleware, config=config)
    got = received if received is not None else []

    @app.post("/signup", response_model=UserOut, status_code=201)
    async def signup(body: SignupIn) -> UserOut:
        got.append(body)
        return UserOut(id=1, email=body.email, name=body.name, phone=body.phone)

    router = APIRouter(prefix="/v1")

    @router.get("/users/{user_id}", response_model=UserOut)
    async def get_user(user_id: int) -> UserOut:
        return UserOut(id=user_id, email="zed@example.com", phone="+1 202 555 0143")

    app.include_router(router)
    if extra is not None:
        extra(app)
    return app


SIGNUP = {"email": "ann@example.com", "name": "Ann Example", "phone": "+1 202 555 0143",
          "password": "correct horse"}


def test_openapi_config_reads_pydantic_tags() -> None:
    cfg = openapi_config(make_app(None))
    routes = {(r.method, r.template): r for r in cfg.routes}
    signup = routes[("POST", "/signup")]
    assert signup.request is not None
    tags = {e.pattern: e.tag for e in signup.request.plan.entries}
    assert tags["/email"].categories == ("user.contact.email",)
    assert tags["/phone"].uses == ("marketing",)
    assert tags["/password"].categories == ("user.authorization.credentials",)
    response = {e.pattern: e.tag for e in signup.responses["201"].plan.entries}
    assert response["/email"].action == "mask"
    assert ("GET", "/v1/users/{user_id}") in routes


def test_openapi_config_takes_settings() -> None:
    cfg = openapi_config(make_app(None), {"environment": "staging"},
                         rules=[{"id": "r1", "action": "allow", "categories": "name",
                                 "sinks": "log"}])
    assert cfg.environment == "staging"
    assert [r.id for r in cfg.policy.rules] == ["r1"]


def test_openapi_config_from_toml(tmp_path: Any) -> None:
    toml = tmp_path / "piimw.toml"
    toml.write_text('environment = "test"\n')
    assert openapi_config(make_app(None), toml).environment == "test"
    with pytest.raises(TypeError):
        openapi_config(make_app(None), toml, environment="x")


def test_request_and_response_plans_apply() -> None:
    received: list[SignupIn] = []
    client = TestClient(make_app(LazyOpenAPI(), received))
    r = client.post("/signup", json=SIGNUP)
    assert r.status_code == 201
    assert received[0].phone == SIGNUP["phone"]
    assert r.json() == {"id": 1, "email": "a***@example.com", "name": "Ann Example",
                        "phone": "+1 202 555 0143"}
    # A signal could change it: it varies on every signal header, sent or not (review).
    assert r.headers["vary"] == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"


def test_gpc_drops_marketing_in_request_and_response() -> None:
    received: list[SignupIn] = []
    client = TestClient(make_app(LazyOpenAPI(), received))
    r = client.post("/signup", json=SIGNUP, headers={"Sec-GPC": "1"})
    assert r.status_code == 201
    assert received[0].phone is None  # the handler never saw it
    assert r.json() == {"id": 1, "email": "a***@example.com", "name": "Ann Example"}
    assert r.headers["vary"] == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"
    r = client.get("/v1/users/5", headers={"Sec-GPC": "1"})  # an included router
    assert r.json() == {"id": 5, "email": "z***@example.com", "name": None}
    assert r.headers["vary"] == "DNT, Sec-GPC, X-Do-Not-Track, X-PII-Opt-Out"


def test_invalid_input_is_problem_json_without_values() -> None:
    received: list[SignupIn] = []
    client = TestClient(make_app(LazyOpenAPI(), received))
    r = client.post("/signup", json={"email": "secret-value@example.com", "password": "short"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "secret-value" not in r.text
    assert {"pointer": "/password", "keyword": "minLength"} in r.json()["errors"]
    assert received == []  # FastAPI's handler never ran


def test_lazy_config_builds_at_startup_once() -> None:
    lazy = counting()
    app = make_app(lazy)
    with TestClient(app) as client:
        assert lazy.builds == [1]  # lifespan start-up, before any request
        for _ in range(3):
            client.get("/v1/users/1")
    assert lazy.builds == [1]


def test_lazy_config_without_lifespan_builds_on_first_request() -> None:
    lazy = counting()
    client = TestClient(make_app(lazy))  # no `with`: no lifespan
    assert lazy.builds == []
    assert client.get("/v1/users/1").json()["email"] == "z***@example.com"
    client.get("/v1/users/1")
    assert lazy.builds == [1]


def test_lazy_config_is_built_once_across_threads() -> None:
    app = make_app(None)
    lazy = counting(app=app)
    mw = PIIMiddleware(app, config=lazy)
    start = threading.Barrier(8)

    def hit() -> None:
        start.wait()
        mw._build({})

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lazy.builds == [1]
    assert len(mw.config.routes) >= 2


def test_bad_tag_fails_startup() -> None:
    def bad(app: FastAPI) -> None:
        @app.post("/bad")
        async def handler(body: Bad) -> dict[str, str]:
            return {}

    app = make_app(LazyOpenAPI(), extra=bad)
    with pytest.raises(piimw.ConfigError, match="not-a-category"), TestClient(app):
        pass


def test_lazy_configuration_serves_its_privacy_endpoints(tmp_path: Any,
                                                         monkeypatch: Any) -> None:
    # Regression: the late-built configuration replaced the settings but not the opt-out API
    # derived from them, so the API path fell through to the app (404).
    monkeypatch.setenv("PIIMW_HASH_KEY", "fastapi-test-key-0123456789")
    lazy = LazyOpenAPI(settings={"registry": {"url": f"sqlite:///{tmp_path / 'r.db'}",
                                              "api": {"path": "/privacy/preferences"}}})
    client = TestClient(make_app(lazy))
    r = client.get("/privacy/preferences")
    assert r.status_code == 401  # answered by piimw: nobody is signed in
    assert r.headers["content-type"] == "application/problem+json"


def test_routes_added_after_the_first_request_are_matched() -> None:
    app = make_app(None)
    app.add_middleware(PIIMiddleware, config=openapi_config(make_app(None)))
    client = TestClient(app)
    assert client.post("/late", json={"email": "ann@example.com"}).status_code == 404

    @app.post("/late")
    async def late(body: dict[str, Any]) -> dict[str, Any]:
        return body

    # The template memo is keyed to the route list it was built from: /late is now known to
    # the router, so the request is served (and the memo did not answer "no route").
    assert client.post("/late", json={"email": "ann@example.com"}).status_code == 200
