"""Routes in the OpenAPI document's shape; piimw reads them with ``django.urls.resolve``."""

from __future__ import annotations

from django.urls import path

from example_apps.django_app import views

urlpatterns = [
    path("signup", views.signup),
    path("users/<int:user_id>", views.get_user),
    path("orders", views.orders),
    path("orders/<int:order_id>", views.get_order),
    path("support", views.support),
    path("privacy/opt-out", views.opt_out),
    path("about", views.about),
    path("healthz", views.healthz),
]
