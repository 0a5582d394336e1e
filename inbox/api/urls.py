"""Routes of the integrator API, mounted at /api/v1/."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from inbox.api import views

app_name = "api"

router = SimpleRouter()
router.register("sessions", views.SessionViewSet, basename="session")
router.register("messages", views.MessageViewSet, basename="message")
router.register("actions", views.SessionActionViewSet, basename="action")
router.register("templates", views.TemplateViewSet, basename="template")
router.register("channels", views.ChannelViewSet, basename="channel")

urlpatterns = [
    path(
        "sessions/<int:session_id>/messages/",
        views.SessionMessagesView.as_view(),
        name="session-messages",
    ),
    *router.urls,
]
