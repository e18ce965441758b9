from __future__ import annotations

from django.urls import path

from matrix_apps.common import ROUTES
from matrix_apps.django_views import endpoint, healthz

urlpatterns = [*(path(route.lstrip("/"), endpoint) for route in ROUTES),
               path("healthz", healthz), path("healthz/<str:mark>", healthz)]
