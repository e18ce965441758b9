"""Views for the Django adapter tests: each sync view has an async twin under ``/async``."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseServerError,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

import piimw

PROFILE = {"id": 7, "email": "jane.doe@example.com", "card": "4242424242424242",
           "phone": "+14155550100"}


class Seen:
    """What the last view received, and the exchange it ran under."""

    body: bytes = b""
    post: dict[str, Any] = {}
    get: dict[str, Any] = {}
    exchange: piimw.Exchange | None = None
    attribute: Any = None
    response: HttpResponse | None = None

    @classmethod
    def reset(cls) -> None:
        cls.body, cls.post, cls.get, cls.exchange, cls.attribute = b"", {}, {}, None, None
        cls.response = None


def _record(request: HttpRequest) -> None:
    Seen.exchange = piimw.current()
    Seen.attribute = getattr(request, "piimw", None)
    Seen.get = request.GET.dict()
    if request.method == "POST":
        Seen.body = request.body
        Seen.post = request.POST.dict()


def _signup_response(request: HttpRequest) -> HttpResponse:
    if request.content_type == "application/json":
        data = json.loads(request.body)
    else:
        data = request.POST.dict()
    return JsonResponse({"id": 1, **{k: v for k, v in data.items() if k != "password"}},
                        status=201)


@csrf_exempt
def signup(request: HttpRequest) -> HttpResponse:
    _record(request)
    return _signup_response(request)


async def asignup(request: HttpRequest) -> HttpResponse:
    _record(request)
    return _signup_response(request)


# Not @csrf_exempt: before Django 5.0 it wraps an async view in a sync function, which Django
# then calls without awaiting. The attribute is what CsrfViewMiddleware reads.
asignup.csrf_exempt = True  # type: ignore[attr-defined]


def user(request: HttpRequest, user_id: int) -> HttpResponse:
    _record(request)
    return JsonResponse({**PROFILE, "id": user_id})


def cookie_user(request: HttpRequest, user_id: int) -> HttpResponse:
    """The profile, and a cookie holding the email (what a withheld response must not send)."""
    _record(request)
    response = JsonResponse({**PROFILE, "id": user_id})
    response.set_cookie("who", PROFILE["email"])
    return response


def redirect_user(request: HttpRequest) -> HttpResponse:
    """A redirect, a cookie and a header built from the request's email (no plan)."""
    email = request.GET.get("email", "")
    response = HttpResponse(status=302)
    response["Location"] = f"/welcome?email={email}&next={request.GET.get('next', '')}"
    response["X-Debug-User"] = email
    response["X-Display"] = f"\u5c71\u7530 \u592a\u90ce <{email}>"  # MIME-encoded by Django
    response.set_cookie("last_user", email)
    response.set_cookie("auth_token", request.COOKIES.get("auth_token", ""))
    response.set_cookie("prefs", "1", path=f"/u/{email}/")  # an attribute with the email
    return response


async def auser(request: HttpRequest, user_id: int) -> HttpResponse:
    _record(request)
    return JsonResponse({**PROFILE, "id": user_id})


def article(request: HttpRequest, year: str) -> HttpResponse:
    _record(request)
    return JsonResponse(PROFILE)


def about(request: HttpRequest) -> HttpResponse:
    _record(request)
    response = JsonResponse({"contact": "privacy@example.com"})
    response.set_cookie("seen", "1")
    return response


def orders(request: HttpRequest) -> HttpResponse:
    _record(request)
    return JsonResponse({"orders": []})


@csrf_exempt
def opt_out(request: HttpRequest) -> HttpResponse:
    request.session["piimw_opt_out"] = json.loads(request.body)
    return HttpResponse(status=204)


@csrf_exempt
def failing(request: HttpRequest) -> HttpResponse:
    email = json.loads(request.body)["email"]
    return HttpResponseServerError(f"duplicate key for {email}", content_type="text/plain")


@csrf_exempt
def crash(request: HttpRequest) -> HttpResponse:
    email = json.loads(request.body)["email"]
    raise RuntimeError(f"mail relay refused {email}")


def _chunks(doc: Any, size: int = 8) -> Iterator[bytes]:
    raw = json.dumps(doc).encode()
    for i in range(0, len(raw), size):
        yield raw[i:i + size]


async def _achunks(doc: Any) -> AsyncIterator[bytes]:
    for chunk in _chunks(doc):
        yield chunk


def stream_user(request: HttpRequest, user_id: int) -> HttpResponse:
    _record(request)
    return StreamingHttpResponse(_chunks(PROFILE), content_type="application/json")


async def astream_user(request: HttpRequest, user_id: int) -> HttpResponse:
    _record(request)
    return StreamingHttpResponse(_achunks(PROFILE), content_type="application/json")


def feed(request: HttpRequest) -> HttpResponse:
    """Profiles as NDJSON lines, streamed (a generator, or an async one under ASGI)."""
    _record(request)
    lines = [json.dumps(PROFILE).encode() + b"\n" for _ in range(3)]
    return StreamingHttpResponse(iter(lines), content_type="application/x-ndjson")


async def afeed(request: HttpRequest) -> HttpResponse:
    _record(request)

    async def lines() -> Any:
        for _ in range(3):
            yield json.dumps(PROFILE).encode() + b"\n"

    return StreamingHttpResponse(lines(), content_type="application/x-ndjson")


def stream_about(request: HttpRequest) -> HttpResponse:
    _record(request)
    return StreamingHttpResponse(_chunks(PROFILE), content_type="application/json")


async def astream_about(request: HttpRequest) -> HttpResponse:
    _record(request)
    return StreamingHttpResponse(_achunks(PROFILE), content_type="application/json")


def file_user(request: HttpRequest, user_id: int) -> HttpResponse:
    _record(request)
    Seen.response = response = FileResponse(io.BytesIO(json.dumps(PROFILE).encode()),
                                             content_type="application/json")
    return response


urlpatterns = [
    path("signup", signup),
    path("async/signup", asignup),
    path("users/<int:user_id>", user),
    path("async/users/<int:user_id>", auser),
    path("cookie/users/<int:user_id>", cookie_user),
    path("redirect", redirect_user),
    path("feed", feed),
    path("async/feed", afeed),
    # The OpenAPI document calls this parameter {id}: matched by path instead.
    path("accounts/<int:user_id>", user),
    re_path(r"^articles/(?P<year>[0-9]{4})/$", article),
    path("about", about),
    path("orders", orders),
    path("opt-out", opt_out),
    path("failing", failing),
    path("crash", crash),
    path("stream/users/<int:user_id>", stream_user),
    path("async/stream/users/<int:user_id>", astream_user),
    path("files/users/<int:user_id>", file_user),
    path("stream/about", stream_about),
    path("async/stream/about", astream_about),
]
