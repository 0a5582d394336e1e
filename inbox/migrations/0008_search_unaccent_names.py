# Search finds names regardless of accents (`muller` finds `Müller`): both sides are compared
# through `inbox_unaccent(text)`, an IMMUTABLE wrapper around the `unaccent` extension (the
# extension's own function is only STABLE, because its dictionary could change, so no index may
# use it). A trigram GIN index on UPPER(inbox_unaccent(name)) answers the name search, as
# 0006's index on UPPER(name) did, which it replaces. PostgreSQL only: on SQLite the function is
# registered on each connection (inbox.search) and there is no index.
#
# The wrapper names the extension's schema and dictionary explicitly, so it does not depend on
# the search_path of whoever calls it (an index expression must not).

from django.contrib.postgres.operations import UnaccentExtension
from django.db import migrations


def create_function_and_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'unaccent'"
        )
        schema = cursor.fetchone()[0]
    ident = '"' + schema.replace('"', '""') + '"'
    literal = f"{ident}.unaccent".replace("'", "''")
    schema_editor.execute(
        "CREATE OR REPLACE FUNCTION inbox_unaccent(text) RETURNS text"
        " LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT"
        f" AS $$ SELECT {ident}.unaccent('{literal}'::regdictionary, $1) $$"
    )
    schema_editor.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS contact_name_unaccent_trgm ON inbox_contact"
        " USING gin (UPPER(inbox_unaccent(name)) gin_trgm_ops)"
    )
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS contact_name_trgm")


def drop_function_and_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS contact_name_trgm ON inbox_contact"
        " USING gin (UPPER(name) gin_trgm_ops)"
    )
    schema_editor.execute("DROP INDEX CONCURRENTLY IF EXISTS contact_name_unaccent_trgm")
    schema_editor.execute("DROP FUNCTION IF EXISTS inbox_unaccent(text)")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('inbox', '0007_external_ids_kept_whole'),
    ]

    operations = [
        UnaccentExtension(),
        migrations.RunPython(create_function_and_index, drop_function_and_index),
    ]
