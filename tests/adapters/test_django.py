"""The Django adapter through ``django.test.Client`` and ``AsyncClient`` (every scenario runs
with both), over sync and async views; and the system checks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

pytest.importorskip("django")

from adapters import django_settings
from adapters.django_urls import PROFILE, Seen
from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings

import piimw
from piimw.contrib.django import PIIMiddleware
from piimw.contrib.django.checks import check_settings
from piimw.contrib.django.middleware import route_template, session_consent

django_settings.setup()

SESSION, AUTH, OURS = django_settings.SESSION, django_settings.AUTH, django_settings.PIIMW

SIGNUP = {
    "type": "object", "required": ["email"], "additionalProperties": False,
    "properties": {
        "email": {"type": "string", "x-pii": "email"},
        "name": {"type": "string", "x-pii": "name"},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
        "password": {"type": "string", "writeOnly": True},
    },
}
USER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "email": {"type": "string", "x-pii": {"category": "email", "action": "mask"}},
        "card": {"type": "string", "x-pii": {"category": "card", "action": "mask"}},
        "phone": {"type": "string", "x-pii": {"category": "phone", "uses": ["marketing"]}},
    },
}


def _body(schema: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _get_user() -> dict[str, Any]:
    return {"get": {"responses": {"200": {"description": "ok", **_body("User")}}}}


def _get_feed() -> dict[str, Any]:
    return {"get": {"responses": {"200": {"description": "ok", "content": {
        "application/x-ndjson": {"itemSchema": {"$ref": "#/components/schemas/User"}}}}}}}


def _post_signup() -> dict[str, Any]:
    return {"post": {"requestBody": _body("Signup"),
                     "responses": {"201": {"description": "ok", **_body("User")}}}}


OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "test", "version": "1"},
    "paths": {
        "/signup": _post_signup(),
        "/async/signup": _post_signup(),
        "/failing": _post_signup(),
        "/crash": _post_signup(),
        "/users/{user_id}": _get_user(),
        "/async/users/{user_id}": _get_user(),
        "/accounts/{id}": _get_user(),
        "/articles/{year}/": _get_user(),
        "/stream/users/{user_id}": _get_user(),
        "/async/stream/users/{user_id}": _get_user(),
        "/files/users/{user_id}": _get_user(),
        "/cookie/users/{user_id}": _get_user(),
        "/feed": _get_feed(),
        "/async/feed": _get_feed(),
        "/orders": {"get": {
            "parameters": [{"name": "email", "in": "query", "schema": {"type": "string"},
                            "x-pii": {"category": "email", "uses": ["marketing"]}}],
            "responses": {"200": {"description": "ok"}}}},
    },
    "components": {"schemas": {"Signup": SIGNUP, "User": USER}},
}


@dataclass
class Reply:
    """A response read to the end, the same from both clients."""

    status: int
    headers: dict[str, str]
    body: bytes
    streaming: bool
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.body)


def _reply(response: HttpResponse, body: bytes) -> Reply:
    return Reply(response.status_code, dict(response.headers), body, response.streaming,
                 {k: m.value for k, m in response.cookies.items()})


class Caller:
    """``caller("post", "/signup", ...)`` through Client or AsyncClient."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.client: Client | AsyncClient = (
            Client(raise_request_exception=False) if kind == "sync"
            else AsyncClient(raise_request_exception=False))

    def __call__(self, method: str, path: str, *args: Any, **kwargs: Any) -> Reply:
        if self.kind == "sync":
            response = getattr(self.client, method)(path, *args, **kwargs)
            return _reply(response, async_to_sync(_read)(response))
        return async_to_sync(self._acall)(method, path, *args, **kwargs)

    async def _acall(self, method: str, path: str, *args: Any, **kwargs: Any) -> Reply:
        response = await getattr(self.client, method)(path, *args, **kwargs)
        return _reply(response, await _read(response))


async def _read(response: HttpResponse) -> bytes:
    if not response.streaming:
        return bytes(response.content)
    if response.is_async:
        return b"".join([chunk async for chunk in response.streaming_content])
    return b"".join(response.streaming_content)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_bytes(orjson.dumps(OPENAPI))
    return path


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    Seen.reset()
    yield
    assert piimw.current() is None


@pytest.fixture(params=["sync", "async"])
def make_call(request: pytest.FixtureRequest, spec: Path) -> Iterator[Callable[..., Caller]]:
    """A caller whose middleware loads with ``PIIMW`` for the test spec plus ``piimw``."""
    with ExitStack() as stack:
        def make(piimw: dict[str, Any] | None = None, **overrides: Any) -> Caller:
            config = {"openapi": [str(spec)], **(piimw or {})}
            stack.enter_context(override_settings(PIIMW=config, **overrides))
            return Caller(request.param)

        yield make


@pytest.fixture
def call(make_call: Callable[..., Caller]) -> Caller:
    return make_call()


# -- route templates ------------------------------------------------------------------------
@pytest.mark.parametrize(("route", "template"), [
    ("users/<int:user_id>", "/users/{user_id}"),
    ("users/<int:pk>/orders/<slug:order>/", "/users/{pk}/orders/{order}/"),
    ("files/<path:name>", "/files/{name}"),
    ("about", "/about"),
    ("", "/"),
    (r"^articles/(?P<year>[0-9]{4})/$", "/articles/{year}/"),
    (r"^api/v1/users/(?P<pk>\d+)$", "/api/v1/users/{pk}"),
])
def test_route_to_openapi_template(route: str, template: str) -> None:
    assert route_template(route) == template


def test_exchange_carries_django_route(call: Caller) -> None:
    call("get", "/users/42")
    assert Seen.exchange is not None
    assert Seen.exchange.route_template == "/users/{user_id}"
    assert Seen.exchange.route is not None
    assert Seen.attribute is Seen.exchange  # request.piimw


def test_re_path_route(call: Caller) -> None:
    r = call("get", "/articles/2024/")
    assert r.json()["email"] == "j***@example.com"
    assert Seen.exchange is not None
    assert Seen.exchange.route_template == "/articles/{year}/"


def test_parameter_names_may_differ_from_openapi(call: Caller) -> None:
    r = call("get", "/accounts/3")
    assert r.json()["email"] == "j***@example.com"
    assert Seen.exchange is not None
    assert Seen.exchange.route is not None
    assert Seen.exchange.route.template == "/accounts/{id}"


def test_unknown_path_has_no_template(call: Caller) -> None:
    r = call("get", "/nowhere")
    assert r.status == 404


# -- responses ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/users/7", "/async/users/7"])
def test_response_masked(call: Caller, path: str) -> None:
    r = call("get", path)
    assert r.status == 200
    assert r.json()["email"] == "j***@example.com"
    assert r.json()["card"] == "************4242"
    assert b"4242424242424242" not in r.body
    assert r.headers["Content-Length"] == str(len(r.body))
    assert r.headers["Content-Type"] == "application/json"  # original spelling kept


def test_unplanned_route_untouched(call: Caller) -> None:
    r = call("get", "/about")
    assert r.json() == {"contact": "privacy@example.com"}
    assert r.cookies == {"seen": "1"}
    assert "Vary" not in r.headers  # the session was not touched without a cookie
    assert Seen.exchange is not None
    assert Seen.exchange.route is None
    assert Seen.exchange.passthrough
    assert Seen.exchange.route_template == "/about"  # a label for logs, not a plan


def test_unplanned_route_reads_its_headers_when_asked(call: Caller) -> None:
    """Converted from a copy of ``META`` on first use, as the request brought them."""
    token = "tok_8f3Kq1Lw2Pn3Rt4Yv5"  # a fake bearer token: the value under test
    call("get", "/about", headers={"Authorization": f"Bearer {token}"})
    exchange = Seen.exchange
    assert exchange is not None
    assert exchange.passthrough
    assert (b"authorization", f"Bearer {token}".encode()) in exchange.request_headers
    assert exchange.known.search(f"denied: {token}")  # a log line would be redacted
    call("get", "/about", headers={"Sec-GPC": "1"})  # a signal is read at once
    assert Seen.exchange is not None
    assert Seen.exchange.consent.opted_out_of("marketing") == "gpc"


@pytest.mark.parametrize("path", ["/stream/users/7", "/async/stream/users/7"])
def test_streaming_response_on_planned_route_is_inspected(call: Caller, path: str) -> None:
    r = call("get", path)
    assert r.status == 200
    assert r.json()["email"] == "j***@example.com"
    assert b"4242424242424242" not in r.body


def test_file_response_on_planned_route_is_inspected(call: Caller) -> None:
    r = call("get", "/files/users/7")
    assert r.json()["email"] == "j***@example.com"
    assert b"4242424242424242" not in r.body
    # A WSGI server's file_wrapper would send the original file: it must be gone.
    assert Seen.response is not None
    assert Seen.response.file_to_stream is None


@pytest.mark.parametrize("path", ["/stream/about", "/async/stream/about"])
def test_streaming_response_on_unplanned_route_streams(call: Caller, path: str) -> None:
    r = call("get", path)
    assert r.streaming
    assert r.json() == PROFILE


def test_streaming_response_too_large_is_withheld(make_call: Callable[..., Caller]) -> None:
    call = make_call({"max_response_bytes": 40})
    r = call("get", "/stream/users/7")
    assert r.status == 500
    assert r.headers["Content-Type"] == "application/problem+json"
    assert b"jane" not in r.body


def test_error_page_scrubbed(call: Caller) -> None:
    r = call("post", "/failing", {"email": "canary.q7@example.com"},
             content_type="application/json")
    assert r.status == 500
    assert b"canary.q7" not in r.body


def test_debug_technical_500_scrubbed(make_call: Callable[..., Caller]) -> None:
    call = make_call(DEBUG=True)
    r = call("post", "/crash", {"email": "canary.x9@example.com", "name": "Quillon Canary"},
             content_type="application/json")
    assert r.status == 500
    assert b"RuntimeError" in r.body  # the page is there...
    assert b"canary.x9" not in r.body  # ...without the values the request brought
    assert b"Quillon" not in r.body


# -- requests -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/signup", "/async/signup"])
def test_gpc_drops_marketing_field_and_varies(call: Caller, path: str) -> None:
    r = call("post", path, {"email": "jane@example.com", "phone": "+14155550100"},
             content_type="application/json", headers={"Sec-GPC": "1"})
    assert r.status == 201
    assert orjson.loads(Seen.body) == {"email": "jane@example.com"}
    assert "Sec-GPC" in r.headers["Vary"]


def test_gpc_form_body_rewritten_for_request_post(call: Caller) -> None:
    form = urlencode({"email": "jane@example.com", "phone": "+14155550100"})
    r = call("post", "/signup", form, content_type="application/x-www-form-urlencoded",
             headers={"Sec-GPC": "1"})
    assert r.status == 201
    assert Seen.post == {"email": "jane@example.com"}
    assert b"phone" not in Seen.body


def test_gpc_multipart_body_rewritten_for_request_post(call: Caller) -> None:
    r = call("post", "/signup", {"email": "jane@example.com", "phone": "+14155550100"},
             headers={"Sec-GPC": "1"})
    assert r.status == 201
    assert Seen.post == {"email": "jane@example.com"}


def test_gpc_query_rewritten_for_request_get(call: Caller) -> None:
    call("get", "/orders?email=jane%40example.com&page=2", headers={"Sec-GPC": "1"})
    assert Seen.get == {"page": "2"}


def test_problem_json_on_invalid_json(call: Caller) -> None:
    r = call("post", "/signup", b'{"email": "jane@exa', content_type="application/json")
    assert r.status == 400
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["type"].endswith("/malformed-json")
    assert Seen.exchange is None  # the view never ran


@pytest.mark.parametrize("path", ["/signup", "/async/signup"])
def test_problem_json_on_validation_error_never_echoes(call: Caller, path: str) -> None:
    r = call("post", path, {"name": "Canary Q. Person", "extra": "x"},
             content_type="application/json")
    assert r.status == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert b"Canary" not in r.body
    assert Seen.exchange is None


def test_body_too_large(make_call: Callable[..., Caller]) -> None:
    call = make_call({"max_body_bytes": 10})
    r = call("post", "/signup", {"email": "jane@example.com"}, content_type="application/json")
    assert r.status == 413
    assert r.headers["Content-Type"] == "application/problem+json"


# -- the session flag -----------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "kept"), [
    (["marketing"], {"email"}),
    (True, {"email"}),
    ("analytics", {"email", "phone"}),  # phone is only used for marketing
])
def test_session_flag_opts_out(call: Caller, flag: Any, kept: set[str]) -> None:
    assert call("post", "/opt-out", orjson.dumps(flag),
                content_type="application/json").status == 204
    r = call("post", "/signup", {"email": "jane@example.com", "phone": "+14155550100"},
             content_type="application/json")
    assert r.status == 201
    assert set(orjson.loads(Seen.body)) == kept
    assert Seen.exchange is not None
    assert "session" in Seen.exchange.consent.signals
    assert "Cookie" in r.headers["Vary"]  # the response depends on the session


def test_session_consent_shapes() -> None:
    assert session_consent(None) is None
    assert session_consent([]) is None
    everything = session_consent(True)
    assert everything is not None
    assert everything.opted_out_uses >= {"marketing", "analytics", "third_party"}


# -- the middleware itself ------------------------------------------------------------------
def test_sync_and_async_capable(spec: Path) -> None:
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    async def aview(request: HttpRequest) -> HttpResponse:
        return HttpResponse()

    with override_settings(PIIMW={"openapi": [str(spec)]}):
        assert not iscoroutinefunction(PIIMiddleware(view))
        assert iscoroutinefunction(PIIMiddleware(aview))
    assert PIIMiddleware.sync_capable
    assert PIIMiddleware.async_capable


def test_bad_config_refuses_to_start(make_call: Callable[..., Caller]) -> None:
    call = make_call({"max_body_bytes": "big"})
    with pytest.raises(ImproperlyConfigured, match="/max_body_bytes"):
        call("get", "/about")


# -- system checks --------------------------------------------------------------------------
def _ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_checks_registered_by_app_config(spec: Path) -> None:
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        assert run_checks(tags=["piimw"]) == []
    with override_settings(PIIMW={"nope": 1}):
        assert _ids(run_checks(tags=["piimw"])) == ["piimw.E001"]


def test_e001_names_the_pointer() -> None:
    with override_settings(PIIMW={"rules": [{"id": "r", "action": "explode"}]}):
        [error] = check_settings()
    assert error.id == "piimw.E001"
    assert "settings.PIIMW#/rules/0/action" in error.msg


def test_e001_names_the_file(tmp_path: Path) -> None:
    toml = tmp_path / "piimw.toml"
    toml.write_text('max_body_bytes = -1\n')
    with override_settings(PIIMW=str(toml)):
        [error] = check_settings()
    assert error.id == "piimw.E001"
    assert f"{toml}#/max_body_bytes" in error.msg


def test_relative_path_resolves_against_base_dir(tmp_path: Path, spec: Path) -> None:
    (tmp_path / "piimw.toml").write_text(f'openapi = "{spec.name}"\n')
    with override_settings(PIIMW="piimw.toml", BASE_DIR=tmp_path):
        assert check_settings() == []
        assert len(PIIMiddleware(lambda r: HttpResponse()).config.routes) > 0


def test_e002_middleware_order(spec: Path) -> None:
    with override_settings(PIIMW={"openapi": [str(spec)]}, MIDDLEWARE=[OURS, SESSION, AUTH]):
        errors = check_settings()
    assert _ids(errors) == ["piimw.E002", "piimw.E002"]
    assert SESSION in errors[0].msg
    assert AUTH in errors[1].msg
    with override_settings(PIIMW={"openapi": [str(spec)]}, MIDDLEWARE=[SESSION, OURS, AUTH]):
        assert _ids(check_settings()) == ["piimw.E002"]
    with override_settings(PIIMW={"openapi": [str(spec)]}, MIDDLEWARE=[OURS]):
        assert check_settings() == []


def test_w001_settings_missing() -> None:
    assert not hasattr(settings, "PIIMW")
    assert _ids(check_settings()) == ["piimw.W001"]


def test_w002_middleware_missing(spec: Path) -> None:
    with override_settings(PIIMW={"openapi": [str(spec)]}, MIDDLEWARE=[SESSION]):
        assert _ids(check_settings()) == ["piimw.W002"]


# -- what the middleware asks Django once per request ----------------------------------------
def test_request_headers_read_from_meta_as_django_reads_them() -> None:
    from django.test import AsyncRequestFactory, RequestFactory

    from piimw.contrib.django.middleware import _request_headers

    headers = {"X-Forwarded-For": "203.0.113.9", "Authorization": "Bearer abc.def",
               "X-Custom-Thing": "é", "Cookie": "a=1; b=2"}
    for factory in (RequestFactory(), AsyncRequestFactory()):
        request = factory.post("/signup?x=1", data=b'{"a": 1}', content_type="application/json",
                               headers=headers)
        want = [(k.lower().encode("latin-1", "replace"), str(v).encode("latin-1", "replace"))
                for k, v in request.headers.items()]
        assert sorted(_request_headers(request)) == sorted(want)
        assert (b"content-type", b"application/json") in want
        assert any(name == b"x-custom-thing" for name, _ in want)


@pytest.mark.parametrize("path", ["/about", "/users/7"])
def test_meta_values_outside_latin1_are_read_not_raised_on(spec: Path, path: str) -> None:
    """PEP 3333 says latin-1; a layer that breaks that rule (a lone surrogate included) must
    not crash the request in the middleware (found on reading the change: the query string's
    UTF-8 fallback raised on a surrogate), and its tokens stay known values."""
    from django.test import RequestFactory

    token = "tok_8f3Kq1Lw2Pn3Rt4Yv5"  # a fake token: the value under test
    seen: list[Any] = []

    def view(request: HttpRequest) -> HttpResponse:
        seen.append(request.piimw)  # type: ignore[attr-defined]
        return HttpResponse(orjson.dumps({"id": 7}), content_type="application/json")

    request = RequestFactory().get(path)
    request.META["QUERY_STRING"] = f"name=\u5c71\u7530\ud800&token={token}"
    request.META["HTTP_X_REMOTE_USER"] = "\u5c71\u7530 \ud800"
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        response = PIIMiddleware(view)(request)
    response.close()  # as Django's handler does: the request ends here
    assert response.status_code == 200
    (exchange,) = seen
    assert exchange.known.search(f"looked up {token}")


class _OtherURLs:  # a per-request urlconf (``request.urlconf``): the same path, another route
    from django.urls import path as _path

    urlpatterns = [_path("users/<int:member>", lambda request, member: HttpResponse())]


def test_route_memo_follows_the_urlconf_and_the_route_table(spec: Path) -> None:
    from django.test import RequestFactory

    with override_settings(PIIMW={"openapi": [str(spec)]}):
        mw = PIIMiddleware(lambda request: HttpResponse())
    factory = RequestFactory()
    for _ in range(2):  # the second round answers from the memo
        assert mw._templates(factory.get("/users/4"), "GET") == (
            "/users/{user_id}", "/users/{user_id}")
        other = factory.get("/users/4")
        other.urlconf = _OtherURLs
        # Parameter names may differ from the table's: it matches templates by shape.
        assert mw._templates(other, "GET") == ("/users/{member}", "/users/{member}")
        assert mw._templates(factory.get("/nowhere"), "GET") == (None, None)
        assert mw._templates(factory.get("/about"), "GET") == ("/about", None)
    doc = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/about": {
        "get": {"responses": {"200": {"description": "ok", **_body("User")}}}}},
        "components": {"schemas": {"User": USER}}}
    (route,) = piimw.Config.from_dict({}, source="<t>", openapi_documents={"<t>": doc}).routes
    mw.config.routes.add(route)
    # The memo was filled before the add.
    assert mw._templates(factory.get("/about"), "GET") == ("/about", "/about")
    with override_settings(ROOT_URLCONF=_OtherURLs):  # a new resolver: a new memo key
        assert mw._templates(factory.get("/users/4"), "GET") == (
            "/users/{member}", "/users/{member}")
        assert mw._templates(factory.get("/about"), "GET") == (None, None)


class _LocalizedURLs:  # "/about" matches only while the default language is active
    from django.conf.urls.i18n import i18n_patterns as _i18n
    from django.urls import path as _path
    from django.utils.translation import gettext_lazy as _lazy

    urlpatterns = [
        *_i18n(_path("about", lambda request: HttpResponse()), prefix_default_language=False),
        _path(_lazy("contact"), lambda request: HttpResponse()),
    ]


class _TranslatedURLs:  # a lazily translated route, without i18n_patterns
    from django.urls import path as _path
    from django.utils.translation import gettext_lazy as _lazy

    urlpatterns = [_path(_lazy("contact"), lambda request: HttpResponse())]


def test_route_memo_keys_language_dependent_urlconfs_by_language(spec: Path) -> None:
    from django.test import RequestFactory
    from django.urls import get_resolver
    from django.utils import translation

    from piimw.contrib.django.middleware import _language_sensitive

    assert _language_sensitive(get_resolver(_LocalizedURLs))
    assert _language_sensitive(get_resolver(_TranslatedURLs))
    assert not _language_sensitive(get_resolver(_OtherURLs))
    assert not _language_sensitive(get_resolver("adapters.django_urls"))
    with override_settings(PIIMW={"openapi": [str(spec)]}):
        mw = PIIMiddleware(lambda request: HttpResponse())
    request = RequestFactory().get("/about")
    request.urlconf = _LocalizedURLs
    for _ in range(2):
        with translation.override("en-us"):
            assert mw._templates(request, "GET")[0] == "/about"
        with translation.override("fr"):
            assert mw._templates(request, "GET")[0] is None


def test_a_content_length_of_digits_int_refuses_is_no_length(call: Caller) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the middleware failed on such a
    request (found by review), as Django's own ``request.body`` does: a 400 problem."""
    r = call("post", "/signup", b'{"name": "x"}', content_type="application/json",
             CONTENT_LENGTH="\u00b2")
    assert r.status == 400
    assert r.json()["type"].endswith("/malformed-content-length")
    assert Seen.exchange is None  # the view never ran


def test_a_query_parameter_the_policy_rejects_refuses_the_request(
        make_call: Callable[..., Caller]) -> None:
    """``reject`` on a query parameter let the value through to the view (found by
    review); a body with it gets a 422, and so does the query now."""
    call = make_call({"rules": [{"id": "no-email-in", "action": "reject", "category": "email",
                                 "sink": "app"}]})
    r = call("get", "/orders?email=jane%40example.com&page=2")
    assert r.status == 422
    assert r.json()["errors"] == [{"parameter": "email", "keyword": "x-pii"}]
    assert b"jane" not in r.body
    assert Seen.exchange is None  # the view never ran
    assert call("get", "/orders?page=2").status == 200


def test_a_withheld_response_sends_none_of_the_app_s_cookies(
        make_call: Callable[..., Caller]) -> None:
    """Django keeps cookies apart from the headers: a response piimw withheld still sent
    ``Set-Cookie: who=<email>`` (found by review)."""
    r = make_call({"max_response_bytes": 40})("get", "/cookie/users/7")
    assert r.status == 500
    assert r.cookies == {}
    assert b"jane" not in r.body


@pytest.mark.parametrize("method", ["options", "trace", "head"])
def test_a_function_view_answering_any_method_follows_the_get_plan(call: Caller,
                                                                   method: str) -> None:
    """Django's function views answer every method: OPTIONS and TRACE (exempt from CSRF)
    returned the unmasked profile, having found no route of their own (found by review)."""
    r = call(method, "/users/7")
    assert r.status == 200
    if method == "head":  # the length of the app's body, not 0 (review of the HEAD change)
        assert int(r.headers["Content-Length"]) > 0
    assert b"4242424242424242" not in r.body
    assert b"jane.doe@example.com" not in r.body
    assert Seen.exchange is not None
    assert Seen.exchange.route is not None


def test_response_headers_and_cookies_are_scrubbed(call: Caller) -> None:
    """A redirect, an X- header and a cookie built from the request's email went out as
    they were, on any route (found by review); the session cookie renewed with the
    request's own value is kept."""
    call.client.cookies["auth_token"] = "s3ss10n-0f3c9a7d5e2b41"
    r = call("get", "/redirect?email=jane.doe%40example.com")
    assert r.status == 302
    assert "jane.doe@example.com" not in r.headers["Location"]
    assert "jane.doe@example.com" not in r.headers["X-Debug-User"]
    from email.header import decode_header, make_header

    display = str(make_header(decode_header(r.headers["X-Display"])))
    assert display.startswith("\u5c71\u7530")
    assert "jane.doe@example.com" not in display  # it was MIME-encoded (review)
    assert "jane.doe" not in r.cookies["last_user"]
    assert r.cookies["auth_token"] == "s3ss10n-0f3c9a7d5e2b41"
    assert "prefs" not in r.cookies  # its Path held the email: Django cannot write it changed


@pytest.mark.parametrize("path", ["/feed", "/async/feed"])
def test_a_stream_of_tagged_json_lines_is_scrubbed_line_by_line(call: Caller,
                                                                 path: str) -> None:
    """NDJSON whose items are tagged went out unread (a streaming-only operation)."""
    r = call("get", path)
    assert r.status == 200
    assert r.streaming
    assert b"4242424242424242" not in r.body
    assert [json.loads(line)["card"] for line in r.body.splitlines()] == [
        "************4242"] * 3


def test_a_header_value_that_looks_like_a_bad_encoded_word_is_no_crash(call: Caller) -> None:
    """``=?utf-8?b?a?=`` (bad base64) raised out of the middleware: a redirect built from
    a user's ``next`` became a 500 (found by review)."""
    r = call("get", "/redirect?email=x&next==?utf-8?b?a?=")
    assert r.status == 302
