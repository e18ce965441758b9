from __future__ import annotations

from django.urls import path

from django_project import views

urlpatterns = [
    path("healthz", views.healthz),
    path("login/<str:uid>", views.login),
    path("echo", views.echo_view),
]
