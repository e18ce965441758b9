"""The matrix app's Django views (URLconf: ``matrix_apps.django_urls``)."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from matrix_apps.common import handle


@csrf_exempt
@require_POST
def endpoint(request: HttpRequest) -> HttpResponse:
    payload = json.loads(request.body)
    body = handle(request.path, payload, request.GET.dict(),
                  request.headers.get("Authorization"))
    return JsonResponse(body, status=201)


def healthz(request: HttpRequest, mark: str = "") -> HttpResponse:
    return JsonResponse({"ok": True})
