"""A small shop API (signup, profile, orders, support) protected by piimw, in Django.

The views are careless the way real ones are: ``/signup`` logs the whole payload and
``/support`` raises an exception that quotes the customer's email. piimw's plans (from
``openapi.json``) and policy (``piimw.toml``) decide what reaches the view, the client and
the logs. ``/about`` and ``/healthz`` are not in the OpenAPI document and pass through.
Some views are ``async``: the middleware serves both kinds under WSGI and ASGI. (They check
the method themselves: before Django 5.0, ``require_GET`` and ``csrf_exempt`` turn an async
view into a sync one that returns an unawaited coroutine.)
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

logger = logging.getLogger("shop")

USERS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "email": "demo.user@example.com", "name": "Demo User",
        "phone": "+1 415 555 0100", "card": "4242 4242 4242 4242"},
}
ORDERS: dict[int, dict[str, Any]] = {}
_ids = itertools.count(2)


def _json(request: HttpRequest) -> dict[str, Any]:
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        payload = None
    return payload if isinstance(payload, dict) else {}


@csrf_exempt
@require_POST
def signup(request: HttpRequest) -> HttpResponse:
    payload = _json(request)
    logger.info("signup %s", payload)  # careless: the whole payload goes to the log
    user = {"id": next(_ids), **{k: v for k, v in payload.items() if k != "password"}}
    USERS[user["id"]] = user
    return JsonResponse(user, status=201)


async def get_user(request: HttpRequest, user_id: int) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    user = USERS.get(user_id)
    if user is None:
        return JsonResponse({"detail": "no such user"}, status=404)
    return JsonResponse(user)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def orders(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        email = request.GET.get("email")
        ids = {u["id"] for u in USERS.values() if email is None or u.get("email") == email}
        return JsonResponse({"orders": [o for o in ORDERS.values() if o.get("user_id") in ids]})
    payload = _json(request)
    order = {"id": next(_ids), "user_id": 1, **payload}
    ORDERS[order["id"]] = order
    logger.info("order %d placed with %d item(s)", order["id"], len(payload.get("items", ())))
    return JsonResponse(order, status=201)


async def get_order(request: HttpRequest, order_id: int) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    order = ORDERS.get(order_id)
    if order is None:
        return JsonResponse({"detail": "no such order"}, status=404)
    return JsonResponse(order)


@csrf_exempt
@require_POST
def support(request: HttpRequest) -> HttpResponse:
    payload = _json(request)
    # careless: the exception message quotes the customer, and ends up in the error log
    raise RuntimeError(f"mail relay refused the ticket from {payload.get('email')}")


@csrf_exempt
@require_POST
def opt_out(request: HttpRequest) -> HttpResponse:
    """Remember an opt-out in the session: ``{"uses": ["marketing"]}``, or all if none given."""
    request.session[settings.PIIMW_SESSION_KEY] = _json(request).get("uses") or True
    return HttpResponse(status=204)


@require_GET
def about(request: HttpRequest) -> HttpResponse:
    """Not in the OpenAPI document: piimw lets it through untouched."""
    return JsonResponse({"service": "example shop", "privacy_contact": "privacy@example.com"})


async def healthz(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    return JsonResponse({"ok": True})
