"""Start the media lifecycle for the messages that arrived before it (issue 15).

Inbound media messages get a pending row: the sweep fetches them (a link the platform no longer
serves ends `expired`, in words). Agents' earlier uploads are already in our storage: their row
is `stored`, found from the upload link the message names.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import migrations
from django.utils import timezone

MEDIA_TYPES = ("image", "video", "audio", "voice", "document")
UPLOAD = re.compile(r"/media/uploads/(\d{4}/\d{2}/[A-Za-z0-9_-]{20,64}/[^/\\?]{1,150})$")
BATCH = 2000


def backfill(apps: Any, schema_editor: Any) -> None:
    message_model = apps.get_model("inbox", "Message")
    media_model = apps.get_model("inbox", "MediaFile")
    now = timezone.now()
    messages = (
        message_model.objects.filter(type__in=MEDIA_TYPES, media_file__isnull=True)
        .exclude(media_url="", media_external_id="")
        .values_list(
            "pk",
            "account_id",
            "session__channel_id",
            "direction",
            "media_url",
            "media_external_id",
            "media_mime_type",
            "media_sha256",
            "media_filename",
            "media_size",
        )
        .order_by("pk")
    )
    rows = []
    for pk, account, channel, direction, url, source, mime, sha, name, size in messages.iterator(
        chunk_size=BATCH
    ):
        upload = UPLOAD.search(url)
        if direction == "out" and upload is None:
            continue  # a link an integrator gave: theirs, not a file of ours
        common = {
            "message_id": pk,
            "account_id": account,
            "channel_id": channel,
            "filename": (name or "")[:255] or f"file-{pk}",
            "declared_type": mime[:255],
            "size": size,
        }
        if upload is not None:
            rows.append(
                media_model(
                    **common,
                    state="stored",
                    path=f"uploads/{upload.group(1)}",
                    content_type=mime[:255],
                    inline=mime.split("/", 1)[0] in ("image", "video", "audio"),
                    stored_at=now,
                )
            )
        else:
            rows.append(
                media_model(
                    **common,
                    state="pending",
                    source_url=url,
                    source_id=source[:255],
                    declared_sha256=sha[:128],
                    next_attempt_at=now,
                )
            )
        if len(rows) >= BATCH:
            media_model.objects.bulk_create(rows)
            rows = []
    media_model.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [("inbox", "0013_media_file")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
