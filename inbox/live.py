"""Live updates: what changed in the inbox, published on commit, read by agents' browsers.

Services call `publish(...)` inside their transaction; the event is written after commit to a
Redis stream (`XADD`, capped), never through the task queue, so live updates keep flowing when
the Celery worker is down. The SSE endpoint reads the stream from the client's `Last-Event-ID`,
so a reconnecting browser catches up without gaps. Without Redis (the embedded default) nothing
is published and pages fall back to polling (`live.js` fires `switchboard:poll`).

An event is small: {"type", "session", "channel", "message"?}. Browsers fetch what they show.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
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


def stream_client() -> redis.asyncio.Redis | None:
    """Return a new asyncio Redis client for one SSE stream (close it when the stream ends)."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    return redis.asyncio.Redis.from_url(url, socket_connect_timeout=1)


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
    client: redis.asyncio.Redis, last_id: str, *, block_ms: int, count: int = 200
) -> list[tuple[str, dict[str, Any]]]:
    """Return events after `last_id`, waiting up to `block_ms` for one (async, for SSE)."""
    return _decode(await client.xread({STREAM: last_id}, block=block_ms, count=count))


def latest_id() -> str:
    """Return the id of the newest event ("0-0" when there is none)."""
    client = _client()
    if client is None:
        return "0-0"
    entries = client.xrevrange(STREAM, count=1)
    if not entries:
        return "0-0"
    entry_id = entries[0][0]
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
