from __future__ import annotations

from django.apps import AppConfig


class InboxConfig(AppConfig):
    name = "inbox"
    verbose_name = "Inbox"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from inbox.search import register_sqlite_functions

        # Search compares names with `inbox_unaccent()`: PostgreSQL has it from migration 0008.
        connection_created.connect(register_sqlite_functions, dispatch_uid="inbox-sqlite-search")
