"""Baseline endpoints, mounted at `/_bench/` when `settings.BENCH_ENDPOINTS` is on."""

from __future__ import annotations

from django.urls import path

from bench import views

app_name = "bench"

urlpatterns = [
    path("raw/", views.raw_insert, name="raw"),
    path("floor/", views.floor, name="floor"),
]
