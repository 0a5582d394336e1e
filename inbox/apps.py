from __future__ import annotations

from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "inbox"
    verbose_name = "Inbox"

    def ready(self) -> None:
        from django.conf import settings
        from django.contrib.auth.signals import user_logged_out
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        from inbox import live
        from inbox.search import register_sqlite_functions

        # Search compares names with `inbox_unaccent()`: PostgreSQL has it from migration 0008.
        connection_created.connect(register_sqlite_functions, dispatch_uid="inbox-sqlite-search")
        # Sign-out and deactivation end the user's open live streams within seconds.

        user_logged_out.connect(live.on_user_logged_out, dispatch_uid="live-logged-out")
        post_save.connect(
            live.on_user_saved, sender=settings.AUTH_USER_MODEL, dispatch_uid="live-user-saved"
        )
        post_delete.connect(
            live.on_user_deleted, sender=settings.AUTH_USER_MODEL, dispatch_uid="live-user-deleted"
        )
