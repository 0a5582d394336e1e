from __future__ import annotations

from django.urls import path, re_path

from integrations.webhooks import WebhookView

app_name = "integrations"

# One view answers the account's callback URL and every platform sub-path below it; the view
# dispatches on the body's shape, not on the path (XMS spec §4.0).
urlpatterns = [
    path("webhooks/<slug:kind>/<str:account_id>/", WebhookView.as_view(), name="webhook"),
    re_path(
        r"^webhooks/(?P<kind>[-a-z0-9_]+)/(?P<account_id>[^/]+)$",
        WebhookView.as_view(),
        name="webhook-bare",
    ),
    re_path(
        r"^webhooks/(?P<kind>[-a-z0-9_]+)/(?P<account_id>[^/]+)/(?P<subpath>.+?)/?$",
        WebhookView.as_view(),
        name="webhook-subpath",
    ),
]
