"""Media files' lifecycle: tracked with their message, fetched into our storage, retried,
given up on in words, deleted by retention.

Every message that carries a platform's media gets a `MediaFile` row in the transaction that
writes the message (`media_track`, one path for the webhook, the drain's bulk write and the
history); after commit a task on the media lane fetches the file through the provider
(`media_fetch`). The task claims its row with a conditional UPDATE, so a second run, a
redelivered callback or the sweep finds nothing to do: a file is downloaded once. A fetch that
may pass later is retried with backoff up to MEDIA_FETCH_ATTEMPTS times; then, or at once for
a refusal that will not pass, the row says `failed` with the reason, and an agent may retry it.
Nothing stays `pending`: the sweep re-enqueues fetches whose task was lost, and gives up on
those out of attempts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

import redis
from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from config.queue import enqueue, queue_length
from config.redis import redis_client
from inbox import live
from inbox.media_facts import Facts, checksum_disagrees, facts_read, thumbnail_make
from inbox.models import MediaFile, Message
from inbox.services.messages import message_update_publish
from inbox.services.uploads import safe_filename
from integrations.base import (
    MEDIA_TYPES,
    GoneError,
    Media,
    MessageType,
    ProviderError,
    TooLargeError,
    TransientError,
    with_fresh_credentials,
)
from integrations.models import Channel
from integrations.registry import get_provider
from integrations.services.webhooks import inbound_busy

logger = logging.getLogger(__name__)
MEDIA_PREFIX = "media"
# How often a download waiting for the callbacks being applied looks again, and the key of the
# one download at a time that may run meanwhile once its file waited MEDIA_YIELD_MAX_SECONDS.
YIELD_POLL_SECONDS = 0.2
TRICKLE_KEY = "switchboard:media:trickle"
# Downloads stay in memory up to this size, then spill to a temporary file on disk.
SPOOL_BYTES = 1024 * 1024
_DEFAULT_NAMES = {
    MessageType.IMAGE: "photo",
    MessageType.VIDEO: "video",
    MessageType.AUDIO: "audio",
    MessageType.VOICE: "voice-note",
    MessageType.DOCUMENT: "document",
}


class ChecksumMismatch(TransientError):
    """The bytes that arrived are not the file the platform described (a broken transfer)."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """What one fetch attempt came to."""

    state: str
    detail: str = ""


# --- Tracking ------------------------------------------------------------------------------------


def carries_media(message: Message) -> bool:
    """Say whether a message names a platform media file to fetch."""
    return message.type in MEDIA_TYPES and bool(message.media_url or message.media_external_id)


def media_track(messages: Sequence[Message]) -> list[MediaFile]:
    """Start the lifecycle of these new messages' media: one pending row each, in the caller's
    transaction, fetched by a task once it commits."""
    now = timezone.now()
    rows = [
        MediaFile(
            account_id=message.account_id,
            channel_id=message.session.channel_id,
            message=message,
            source_url=message.media_url,
            source_id=message.media_external_id,
            declared_type=message.media_mime_type,
            declared_sha256=message.media_sha256,
            filename=_name_for(message),
            size=message.media_size,
            next_attempt_at=now,
        )
        for message in messages
        if carries_media(message)
    ]
    if not rows:
        return []
    created = MediaFile.objects.bulk_create(rows)
    ids = [row.pk for row in created]
    # One task for the batch, on the media lane, which queues the fetches from there: a
    # drain's commit pays for one message to the broker, not one per file.
    transaction.on_commit(
        lambda: enqueue(
            "inbox.tasks.media_fetches_start", ids, what=f"the fetches of {len(ids)} media files"
        )
    )
    return created


def media_fetches_start(ids: Sequence[int]) -> int:
    """Queue a fetch task for each of these files (a drain's batch); return how many."""
    _fetches_enqueue(ids)
    return len(ids)


def _name_for(message: Message) -> str:
    if message.media_filename:
        return safe_filename(message.media_filename)
    try:
        stem = _DEFAULT_NAMES.get(MessageType(message.type), "file")
    except ValueError:
        stem = "file"
    return f"{stem}-{message.pk}" if message.pk else stem


def _fetches_enqueue(ids: Sequence[int], countdown: float = 0) -> None:
    for media_id in ids:
        enqueue(
            "inbox.tasks.media_fetch",
            media_id,
            countdown=countdown,
            what=f"fetch of media file {media_id}",
        )


# --- Fetching ------------------------------------------------------------------------------------


def media_fetch(media_id: int) -> str:
    """Fetch one pending media file into our storage; return what became of it.

    Claimed first (a conditional UPDATE), so of two runs only one downloads. Before that, it
    waits for its turn while callbacks are being applied (`_turn`): text first.
    """
    with _turn(media_id):
        media = _claim(media_id)
        if media is None:
            return "nothing to do"
        if media.attempts > settings.MEDIA_FETCH_ATTEMPTS:
            return _settle(media, Fetched(MediaFile.State.FAILED, _gave_up(media))).state
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            outcome = _download_and_store(media, spool)
        return _settle(media, outcome).state


@contextmanager
def _turn(media_id: int) -> Iterator[None]:
    """Wait for this download's turn: at once while no callbacks are being applied; while
    drains apply them, after them (text first), but not once the file is MEDIA_YIELD_MAX_SECONDS
    old, and then one such download at a time (a trickle under steady load).

    On a busy machine a burst of downloads (each a claim, a transfer, a checksum, perhaps a
    thumbnail) would take CPU and database time from the text of the messages arriving with
    them; so files wait a little, and under load that does not stop they still come, slower.
    """
    limit = settings.MEDIA_YIELD_MAX_SECONDS
    if limit <= 0 or not inbound_busy():
        yield
        return
    created = MediaFile.objects.filter(pk=media_id).values_list("created_at", flat=True).first()
    if created is None:
        yield
        return
    deadline = created + timedelta(seconds=limit)
    token = secrets.token_hex(8)
    slot = False
    while inbound_busy():
        if timezone.now() >= deadline and _slot_take(token):
            slot = True
            break
        time.sleep(YIELD_POLL_SECONDS)
    try:
        yield
    finally:
        if slot:
            _slot_give(token)


def _slot_take(token: str) -> bool:
    client = redis_client(socket_timeout=1.0)
    if client is None:
        return True
    try:
        # Held no longer than a download may take, in case its worker dies holding it.
        hold_ms = int((settings.MEDIA_READ_TIMEOUT_SECONDS + 10) * 1000)
        return bool(client.set(TRICKLE_KEY, token, nx=True, px=hold_ms))
    except redis.RedisError:
        return True


def _slot_give(token: str) -> None:
    client = redis_client(socket_timeout=1.0)
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        if client.get(TRICKLE_KEY) == token.encode():
            client.delete(TRICKLE_KEY)


def _claim(media_id: int) -> MediaFile | None:
    now = timezone.now()
    lease = now - timedelta(seconds=settings.MEDIA_FETCH_LEASE_SECONDS)
    claimed = MediaFile.objects.filter(
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=lease),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=media_id,
        state=MediaFile.State.PENDING,
    ).update(claimed_at=now, attempts=F("attempts") + 1)
    if not claimed:
        return None
    # Only what the fetch needs: the account (its credentials) and where to tell the thread.
    media: MediaFile = (
        MediaFile.objects.select_related("account")
        .annotate(session_id=F("message__session_id"))
        .get(pk=media_id)
    )
    return media


def _download_and_store(media: MediaFile, spool: IO[bytes]) -> Fetched:
    account = media.account
    provider = get_provider(account.kind)
    source = Media(
        link=media.source_url,
        mime_type=media.declared_type,
        filename=media.filename,
        sha256=media.declared_sha256,
        media_id=media.source_id,
    )
    try:
        with_fresh_credentials(
            provider,
            account.config(),
            lambda fresh: provider.media_fetch(
                fresh, source, spool, max_bytes=settings.MEDIA_MAX_BYTES
            ),
        )
        facts = facts_read(spool, declared_type=media.declared_type)
        if checksum_disagrees(media.declared_sha256, facts.sha256):
            raise ChecksumMismatch(
                f"The file that arrived does not match the platform's checksum "
                f"(sha256 {facts.sha256[:12]}…, expected {media.declared_sha256[:12]}…)."
            )
    except GoneError as exc:
        return Fetched(
            MediaFile.State.EXPIRED, f"The platform no longer has this file ({_reason(exc)})."
        )
    except TooLargeError:
        limit = settings.MEDIA_MAX_BYTES / 1024 / 1024
        return Fetched(
            MediaFile.State.FAILED,
            f"The file is larger than {limit:.0f} MiB, the most this inbox keeps "
            "(MEDIA_MAX_BYTES); it was not downloaded.",
        )
    except TransientError as exc:
        return Fetched(MediaFile.State.PENDING, _reason(exc))
    except ProviderError as exc:
        return Fetched(MediaFile.State.FAILED, f"The platform refused the download: {_reason(exc)}")
    _store(media, spool, facts)
    return Fetched(MediaFile.State.STORED)


_LINK = re.compile(r"\b(?:GET|POST)?\s*https?://\S+:?\s*", re.IGNORECASE)


def _reason(exc: ProviderError) -> str:
    """Say why a download did not work, in words for agents: without the platform's link
    (pages never show it; some carry the account's token), with its status where it gave one."""
    words = _LINK.sub("", str(exc.detail)).strip(" :;,") or exc.__class__.__name__
    status = f"HTTP {exc.status}"
    if exc.status and status not in words:
        words = f"{words} ({status})"
    return words[:500]


def _store(media: MediaFile, spool: IO[bytes], facts: Facts) -> None:
    """Write the file (and an image's thumbnail) to storage; fill in the row (not saved)."""
    now = timezone.now()
    folder = f"{MEDIA_PREFIX}/{now:%Y}/{now:%m}/{secrets.token_urlsafe(24)}"
    upload = File(spool, name=media.filename)
    upload.size = facts.size
    media.path = default_storage.save(f"{folder}/{media.filename}", upload)
    if facts.content_type.startswith("image/"):
        thumbnail = thumbnail_make(spool, edge=settings.MEDIA_THUMBNAIL_EDGE)
        if thumbnail is not None:
            media.thumbnail_path = default_storage.save(
                f"{folder}/thumbnail.webp", ContentFile(thumbnail)
            )
    media.content_type = facts.content_type
    media.inline = facts.inline
    media.size = facts.size
    media.sha256 = facts.sha256
    media.width, media.height = facts.width, facts.height
    media.duration_seconds = facts.duration_seconds
    media.stored_at = now


def _gave_up(media: MediaFile) -> str:
    last = f" The last attempt: {media.error}" if media.error else ""
    return f"Gave up after {media.attempts - 1} attempts to download it.{last}"


def _settle(media: MediaFile, outcome: Fetched) -> Fetched:
    """Write what the attempt came to, if the row is still ours; tell the thread."""
    state, detail = outcome.state, outcome.detail
    retry_in = None
    if state == MediaFile.State.PENDING:
        if media.attempts >= settings.MEDIA_FETCH_ATTEMPTS:
            state, detail = (
                MediaFile.State.FAILED,
                f"Gave up after {media.attempts} attempts: {detail}",
            )
        else:
            retry_in = min(
                settings.MEDIA_FETCH_BACKOFF_SECONDS * 2 ** (media.attempts - 1),
                settings.MEDIA_FETCH_BACKOFF_MAX_SECONDS,
            )
    now = timezone.now()
    fields = {
        "state": state,
        "error": detail,
        "claimed_at": None,
        "next_attempt_at": now + timedelta(seconds=retry_in) if retry_in is not None else None,
    }
    if state == MediaFile.State.STORED:
        fields.update(
            {
                name: getattr(media, name)
                for name in (
                    "path",
                    "thumbnail_path",
                    "content_type",
                    "inline",
                    "size",
                    "sha256",
                    "width",
                    "height",
                    "duration_seconds",
                    "stored_at",
                )
            }
        )
    with transaction.atomic():
        kept = MediaFile.objects.filter(
            pk=media.pk, state=MediaFile.State.PENDING, claimed_at__isnull=False
        ).update(**fields)
        if kept:
            _thread_tell(media)
    if not kept and state == MediaFile.State.STORED:
        # Someone else settled it meanwhile (a lease that ran out): ours is a spare copy.
        _files_delete([media.path, media.thumbnail_path])
    if kept and retry_in is not None:
        _fetches_enqueue([media.pk], countdown=retry_in)
    if state != MediaFile.State.STORED:
        logger.info("media file %s: %s (%s)", media.pk, state, detail)
    return Fetched(state, detail)


def _thread_tell(media: MediaFile) -> None:
    """Tell open pages the file's message changed (the ids are on the row: no query)."""
    session_id = getattr(media, "session_id", None)
    if session_id is None:
        message_update_publish(media.message)
        return
    live.publish(
        live.MESSAGE_UPDATED,
        session_id=session_id,
        channel_id=media.channel_id,
        message_id=media.message_id,
    )


def _files_delete(paths: Sequence[str]) -> None:
    for path in paths:
        if not path:
            continue
        try:
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete the stored file %s", path, exc_info=True)


# --- Retry, sweep, retention ---------------------------------------------------------------------


def media_retry(media: MediaFile) -> bool:
    """Try a failed fetch again from the start (an agent's *Retry*); say whether it was failed."""
    with transaction.atomic():
        retried = MediaFile.objects.filter(pk=media.pk, state=MediaFile.State.FAILED).update(
            state=MediaFile.State.PENDING,
            attempts=0,
            error="",
            claimed_at=None,
            next_attempt_at=timezone.now(),
        )
        if retried:
            _thread_tell(media)
            transaction.on_commit(lambda: _fetches_enqueue([media.pk]))
    return bool(retried)


def media_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Enqueue pending fetches whose task was lost (due a while ago, or claimed by a worker
    that died); return how many. Each claims its row, so one enqueued twice runs once.

    While the media lane has a backlog, a fetch that is merely due may be waiting in it: only
    those whose worker died are enqueued then. Each one enqueued is not again for a while.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=max(settings.MEDIA_SWEEP_INTERVAL_SECONDS * 2, 30))
    lease = now - timedelta(seconds=settings.MEDIA_FETCH_LEASE_SECONDS)
    orphaned = Q(claimed_at__lt=lease)
    lost = orphaned
    if not queue_length(settings.MEDIA_QUEUE):
        lost |= Q(claimed_at__isnull=True, next_attempt_at__lte=now - grace)
    found = list(
        MediaFile.objects.filter(lost, state=MediaFile.State.PENDING)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if found:
        # A claim outlives its lease only when its worker died, so it is cleared; a row a
        # worker claimed since it was found no longer matches `lost` and is left alone.
        MediaFile.objects.filter(lost, pk__in=found, state=MediaFile.State.PENDING).update(
            next_attempt_at=now, claimed_at=None
        )
        _fetches_enqueue(found)
    return len(found)


def media_retention_apply(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Delete stored files older than their channel keeps them; return how many.

    The row stays (`deleted`, with when), so the thread says a file was there and is gone.
    """
    now = now or timezone.now()
    deleted = 0
    for channel in Channel.objects.filter(media_retention_days__isnull=False):
        due = media_retention_due(channel, now=now).select_related("message")[: limit - deleted]
        for media in due:
            deleted += _retention_delete(media, now)
        if deleted >= limit:
            break
    return deleted


def media_retention_due(channel: Channel, *, now: datetime | None = None) -> QuerySet[MediaFile]:
    """Return a channel's stored files past its retention period (none if it keeps them)."""
    if channel.media_retention_days is None:
        return MediaFile.objects.none()
    cutoff = (now or timezone.now()) - timedelta(days=channel.media_retention_days)
    return MediaFile.objects.filter(
        channel=channel, state=MediaFile.State.STORED, stored_at__lt=cutoff
    )


def _retention_delete(media: MediaFile, now: datetime) -> int:
    with transaction.atomic():
        gone = MediaFile.objects.filter(pk=media.pk, state=MediaFile.State.STORED).update(
            state=MediaFile.State.DELETED, deleted_at=now
        )
        if gone:
            _thread_tell(media)
    if gone:
        _files_delete([media.path, media.thumbnail_path])
    return gone
