"""API tokens stored hashed; the plain keys of rest_framework.authtoken carried over.

Each existing DRF token becomes an ApiToken named "Imported token" with the digest of its key,
so integrators keep using the key they have; the plain key is then deleted from
`authtoken_token` (the app is no longer installed; its empty table is left alone).
"""

import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def import_authtoken_keys(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="Imported token",
            prefix=key[:8],
            digest=hashlib.sha256(key.encode()).hexdigest(),
        )
        # auto_now_add stamped it now; keep when the key was really made.
        ApiToken.objects.filter(pk=token.pk).update(created_at=created)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM authtoken_token")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='What or who uses this token.', max_length=100)),
                ('prefix', models.CharField(help_text='The first characters of the key.', max_length=12)),
                ('digest', models.CharField(editable=False, max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('expires_at', models.DateTimeField(blank=True, help_text='Empty: the token does not expire.', null=True)),
                ('revoked_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ['-created_at'],
            },
        ),
        # Plain keys cannot be restored from their hashes: going back leaves the table empty.
        migrations.RunPython(import_authtoken_keys, migrations.RunPython.noop),
    ]
