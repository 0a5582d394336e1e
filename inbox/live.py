"""Live updates: what changed in the inbox, published on commit, read by agents' browsers.

Services call `publish(...)` inside their transaction; the event is written after commit to a
Redis stream (`XADD`, capped), never through the task queue, so live updates keep flowing when
the Celery worker is down. The SSE endpoint reads the stream from the client's `Last-Event-ID`,
so a reconnecting browser catches up without gaps. Without Redis (the embedded default) nothing
is published and pages fall back to polling (`live.js` fires `switchboard:poll`).

An event is small: {"type", "session", "channel", "message"?}. Browsers fetch what they show.

Signing out and deactivation leave a short-lived marker in Redis (`access_revoke`) that every
open stream checks each time it waits, so a signed-out agent's stream ends within seconds
without each stream asking the database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import redis
import redis.asyncio
from django.conf import settings
from django.db import transaction

from config.redis import redis_client

logger = logging.getLogger(__name__)

STREAM = "switchboard:events"
STREAM_MAXLEN = 20_000

SESSION_CREATED = "session.created"
SESSION_UPDATED = "session.updated"
MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"

REVOKED_PREFIX = "switchboard:live:revoked:"
# Longer than any stream waits between two checks; the database re-check sees it after that.
REVOKED_TTL_SECONDS = 600
# A stream's read waits up to its block time for Redis; past that plus this margin the
# connection is taken as dead (redis-py's own default, 5 s, is shorter than the block).
READ_TIMEOUT_MARGIN_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Event:
    """One change an agent's page may want to show."""

    type: str
    session: int
    channel: int
    message: int | None = None


def _client() -> redis.Redis | None:
    return redis_client(socket_timeout=2.0)


def enabled() -> bool:
    """Say whether live events are published (Redis configured)."""
    return _client() is not None


def publish(kind: str, *, session_id: int, channel_id: int, message_id: int | None = None) -> None:
    """Publish an event once the current transaction commits (at once outside one).

    Each event registers its own commit hook: a transaction that rolls back publishes
    nothing, and the next one is unaffected.
    """
    if _client() is None:
        return
    event = Event(type=kind, session=session_id, channel=channel_id, message=message_id)
    transaction.on_commit(partial(send, [event]))


def publish_many(events: Iterable[Event]) -> None:
    """Publish events together, in one round trip, once the current transaction commits."""
    events = list(events)
    if _client() is None or not events:
        return
    transaction.on_commit(partial(send, events))


def send(events: Iterable[Event]) -> None:
    """Write events to the stream now (a failure is logged; pages then catch up by polling)."""
    client = _client()
    events = list(events)
    if client is None or not events:
        return
    try:
        pipe = client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(
                STREAM, {"e": json.dumps(asdict(event))}, maxlen=STREAM_MAXLEN, approximate=True
            )
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("live events not published (%s); pages will catch up", exc)


def stream_client(*, block_ms: int) -> redis.asyncio.Redis | None:
    """Return a new asyncio Redis client for one SSE stream (close it when the stream ends).

    Its socket timeout outlasts the stream's blocking reads of `block_ms`: a quiet read is a
    normal answer, not an error (redis-py's default 5 s timeout cut 15 s reads short).
    """
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    return redis.asyncio.Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=block_ms / 1000 + READ_TIMEOUT_MARGIN_SECONDS,
        socket_keepalive=True,
    )


def _decode(answer: Any) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    for _stream, entries in answer or []:
        for entry_id, fields in entries:
            raw = fields.get(b"e") if isinstance(fields, dict) else None
            try:
                payload = json.loads(raw) if raw is not None else None
            except (TypeError, ValueError):
                continue
            if isinstance(payload, dict):
                key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                events.append((key, payload))
    return events


async def read(
    client: redis.asyncio.Redis, last_id: str, *, block_ms: int | None, count: int = 200
) -> list[tuple[str, dict[str, Any]]]:
    """Return events after `last_id`, waiting up to `block_ms` for one (None: no waiting)."""
    return _decode(await client.xread({STREAM: last_id}, block=block_ms, count=count))


async def newest_id(client: redis.asyncio.Redis) -> str:
    """Return the id of the newest event ("0-0" when there is none), async."""
    entries = await client.xrevrange(STREAM, count=1)
    if not entries:
        return "0-0"
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def revoked(client: redis.asyncio.Redis, keys: Sequence[str]) -> bool:
    """Say whether any of `keys` (see `revoked_keys_for`) is set: the stream must end."""
    return bool(await client.exists(*keys))


def latest_id() -> str:
    """Return the id of the newest event ("0-0" when there is none, "" when Redis is down)."""
    client = _client()
    if client is None:
        return "0-0"
    try:
        entries = client.xrevrange(STREAM, count=1)
    except redis.RedisError as exc:
        logger.warning("live stream position unknown (%s); pages will poll", exc)
        return ""
    if not entries:
        return "0-0"
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def revoked_keys_for(*, session_key: str, user_id: int) -> list[str]:
    """Return the markers whose presence ends a stream of this browser session and user."""
    return [f"{REVOKED_PREFIX}s:{session_key}", f"{REVOKED_PREFIX}u:{user_id}"]


def access_revoke(*, session_key: str | None = None, user_id: int | None = None) -> None:
    """End the open streams of a browser session (signed out) or of a user (deactivated).

    Best effort: without Redis there are no streams; with Redis unreachable, the streams'
    periodic database re-check ends them instead.
    """
    client = _client()
    if client is None:
        return
    keys = []
    if session_key:
        keys.append(f"{REVOKED_PREFIX}s:{session_key}")
    if user_id is not None:
        keys.append(f"{REVOKED_PREFIX}u:{user_id}")
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.set(key, b"1", ex=REVOKED_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("open live streams not told of revoked access (%s)", exc)


def access_restore(*, user_id: int) -> None:
    """Let a reactivated user's new streams stay open (clears `access_revoke`'s user marker)."""
    client = _client()
    if client is None:
        return
    try:
        client.delete(f"{REVOKED_PREFIX}u:{user_id}")
    except redis.RedisError as exc:
        logger.warning("reactivated user's live marker not cleared (%s)", exc)


# --- Signal receivers (connected in InboxConfig.ready) -----------------------------------------


def on_user_logged_out(sender: object, request: Any = None, user: Any = None, **_: Any) -> None:
    """End the signed-out browser's open streams (its other browsers stay signed in)."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        access_revoke(session_key=key)


def on_user_saved(
    sender: object, instance: Any, created: bool = False, update_fields: Any = None, **_: Any
) -> None:
    """End a deactivated user's open streams; a reactivated user's new ones stay open."""
    if created or (update_fields is not None and "is_active" not in update_fields):
        return  # a save that cannot change it (the sign-in's last_login, say)
    if instance.is_active:
        access_restore(user_id=instance.pk)
    else:
        access_revoke(user_id=instance.pk)


def on_user_deleted(sender: object, instance: Any, **_: Any) -> None:
    """End a deleted user's open streams."""
    access_revoke(user_id=instance.pk)
