"""URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer the load balancer's and docker-compose's health checks."""
    return JsonResponse({"status": "ok"})


admin.site.site_header = "Switchboard"
admin.site.site_title = "Switchboard admin"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", include("integrations.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]
