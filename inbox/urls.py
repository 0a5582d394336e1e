"""The agent pages, mounted at the site root: `/` is the inbox."""

from __future__ import annotations

from django.urls import path

from inbox.views import actions, auth, compose, media, pages

app_name = "inbox"

urlpatterns = [
    path("", pages.inbox_page, name="index"),
    path("login/", auth.SignInView.as_view(), name="login"),
    path("logout/", auth.SignOutView.as_view(), name="logout"),
    path("list/", pages.list_partial, name="list"),
    path("changes/", pages.changes_stamp, name="changes"),
    path("s/<int:session_id>/", pages.inbox_page, name="session"),
    path("s/<int:session_id>/older/", pages.thread_older, name="older"),
    path("s/<int:session_id>/updates/", pages.thread_updates, name="updates"),
    path("s/<int:session_id>/template-form/", pages.template_fields, name="template-form"),
    path(
        "s/<int:session_id>/m/<int:message_id>/retry/",
        compose.message_retry_view,
        name="message-retry",
    ),
    path(
        "s/<int:session_id>/media/<int:media_id>/retry/",
        media.media_retry_view,
        name="media-retry",
    ),
    path("s/<int:session_id>/send/", compose.compose_send, name="send"),
    path("s/<int:session_id>/send-template/", compose.compose_template, name="send-template"),
    path("s/<int:session_id>/assign/", actions.session_assign_view, name="assign"),
    path("s/<int:session_id>/route/", actions.session_route_view, name="route"),
    path("s/<int:session_id>/resolve/", actions.session_resolve_view, name="resolve"),
    path("s/<int:session_id>/close/", actions.session_close_view, name="close"),
    path("s/<int:session_id>/reopen/", actions.session_reopen_view, name="reopen"),
    path("s/<int:session_id>/labels/", actions.session_labels_view, name="labels"),
    path("s/<int:session_id>/language/", actions.contact_language_view, name="language"),
]
