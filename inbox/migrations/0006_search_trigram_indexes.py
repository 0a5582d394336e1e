# Search (`sessions_matching`) finds text anywhere in message bodies and contact names and
# phones with `icontains`, which PostgreSQL runs as `UPPER(column) LIKE UPPER('%text%')`. Without
# an index that is a scan of every message; trigram GIN indexes on the same expressions answer
# it from the index (for three characters or more). PostgreSQL only: on SQLite this does nothing.
#
# Built CONCURRENTLY (so outside a transaction) to keep a live inbox writable while the message
# index is built. The indexes are not in the models' Meta: Django cannot create a GIN index on
# SQLite, which the tests also run on.

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

INDEXES = [
    ("message_body_trgm", "inbox_message", "body"),
    ("contact_name_trgm", "inbox_contact", "name"),
    ("contact_phone_trgm", "inbox_contact", "phone"),
]


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table, column in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} "
            f"USING gin (UPPER({column}) gin_trgm_ops)"
        )


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _, _ in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('inbox', '0005_session_window_and_queue_indexes'),
    ]

    operations = [
        TrigramExtension(),
        migrations.RunPython(create_indexes, drop_indexes),
    ]
