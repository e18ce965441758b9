from __future__ import annotations

import json

from django.contrib import auth
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_POST
from optout_common import PID_HEADER, echo, pid


def _json(doc: object) -> HttpResponse:
    response = JsonResponse(doc, safe=False)
    response[PID_HEADER] = pid()
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    return _json({"ok": True})


@require_POST
def login(request: HttpRequest, uid: str) -> HttpResponse:
    user, _ = User.objects.get_or_create(username=uid)
    auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return _json({"user": uid, "pk": user.pk})


@require_POST
def echo_view(request: HttpRequest) -> HttpResponse:
    return _json(echo(request.piimw, json.loads(request.body)))
