"""URL configuration."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found
from django.views.defaults import server_error as defaults_server_error
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularSwaggerSplitView,
)

from inbox import live_views
from inbox.views import media as media_views
from inbox.views.uploads import upload_serve


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Answer the load balancer's and docker-compose's health checks."""
    return JsonResponse({"status": "ok"})


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Answer an unknown address: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "not_found", "detail": f"No endpoint at {request.path}."}, status=404
        )
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unexpected error: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"error": "server_error", "detail": "Something went wrong on our side."}, status=500
        )
    return defaults_server_error(request)


handler404 = not_found
handler500 = server_error

admin.site.site_header = "Switchboard"
admin.site.site_title = "Switchboard admin"
admin.site.index_title = "Administration"

urlpatterns = [
    path("", include("integrations.urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("live/events/", live_views.events, name="live-events"),
    path("api/v1/", include("inbox.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its init script as a file: the Content-Security-Policy refuses
    # inline scripts.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # ReDoc was dropped: it styles itself with inline <style> elements (the policy refuses
    # them) and loads its logo from cdn.redoc.ly. Old links land on Swagger UI.
    path("api/redoc/", RedirectView.as_view(pattern_name="api-docs"), name="api-redoc"),
    # Files agents attach, fetched by the platforms by their unguessable path (no sign-in).
    path("media/uploads/<path:path>", upload_serve, name="upload-serve"),
    path("media/<int:media_id>/", media_views.media_file, name="media-file"),
    path("media/<int:media_id>/thumbnail/", media_views.media_thumbnail, name="media-thumbnail"),
    # The agent pages; the root URL is the inbox.
    path("", include("inbox.urls")),
]

if settings.BENCH_ENDPOINTS:
    # The benchmark's baselines (bench/views.py); never on in a real deployment.
    urlpatterns.insert(0, path("_bench/", include("bench.urls")))
