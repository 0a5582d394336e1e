"""One reader of the live event stream per web process, fanning each event out to its streams.

Two hundred agents' streams in one process would otherwise each read (and parse, and decode)
every event from Redis themselves. Here one task per event loop waits on Redis and hands each
batch, decoded once, to every open stream's queue; a stream only filters and writes.

A stream catches up by itself from the id it resumes at (`catch_up`) and then takes what the
hub hands it, skipping what it already sent, so nothing is missed or sent twice. A stream that
falls more than QUEUE_LIMIT batches behind stops being fed and catches up from Redis again.
When Redis fails the hub retries after short pauses; when it stays down the hub tells every
stream (`Failed`), which ends with `live.error`, and the browser reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from weakref import WeakKeyDictionary

import redis
import redis.asyncio

from inbox import live

logger = logging.getLogger(__name__)

# The longest wait on Redis (a quiet hub reads again after this).
BLOCK_MS = 5_000
QUEUE_LIMIT = 500
# After handing out a batch the hub lets events gather this long: under a burst each stream
# then writes a few times a second, not once per event (a write per stream is what costs).
GATHER_SECONDS = 0.05
READ_COUNT = 1000
# Pauses before retrying a failed read; when all are spent, the streams are told.
RETRY_SECONDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)


@dataclass(frozen=True, slots=True)
class Item:
    """One event as every stream sends it: rendered once, filtered by channel per stream."""

    key: tuple[int, int]  # the stream id, comparable
    channel: Any
    block: str  # the SSE lines, id and all


Events = list[Item]


def render(events: list[tuple[str, dict[str, Any]]]) -> Events:
    """Return the decoded events of one read as the SSE blocks streams write."""
    return [
        Item(
            id_key(event_id),
            event.get("channel"),
            f"id: {event_id}\nevent: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n",
        )
        for event_id, event in events
    ]


class Failed(Exception):
    """Redis stayed unreachable through every retry."""


def id_key(event_id: str) -> tuple[int, int]:
    """Return a stream id ("1700000000000-3") as a comparable pair."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(eq=False)
class Subscription:
    """One open stream's share of the hub: batches to send, or the hub's failure."""

    queue: asyncio.Queue[Events | Failed] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    behind: bool = False  # the queue overflowed: catch up from Redis
    failed: Failed | None = None  # the hub stopped: the stream must end


class Hub:
    """The process's one blocking reader of `live.STREAM` (one per event loop)."""

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()
        self.client: redis.asyncio.Redis | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[str] | None = None

    async def subscribe(self) -> Subscription:
        """Join; return once the hub reads, so catching up from now on misses nothing."""
        subscription = Subscription()
        self.subscribers.add(subscription)
        if self.task is None or self.task.done():
            self.ready = asyncio.get_running_loop().create_future()
            self.task = asyncio.create_task(self._run(self.ready))
        assert self.ready is not None
        try:
            await asyncio.shield(self.ready)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        if not self.subscribers and self.task is not None:
            self.task.cancel()
            self.task = None

    def redis(self) -> redis.asyncio.Redis:
        """Return the hub's client, for streams' own short reads (catching up, sign-outs)."""
        if self.client is None:
            client = live.stream_client(block_ms=BLOCK_MS)
            if client is None:
                raise Failed("live updates need REDIS_URL")
            self.client = client
        return self.client

    async def retrying(self, attempt: Any) -> Any:
        """Return `await attempt()`, retried after short pauses; Failed when Redis stays down."""
        for pause in (*RETRY_SECONDS, None):
            try:
                return await attempt()
            except redis.RedisError as exc:
                if pause is None:
                    raise Failed(str(exc)) from exc
                logger.info("live hub read failed, retrying: %s", exc)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    async def _run(self, ready: asyncio.Future[str]) -> None:
        try:
            client = self.redis()
            position = await self.retrying(lambda: live.newest_id(client))
            ready.set_result(position)
            while True:
                read = await self.retrying(
                    partial(live.read, client, position, block_ms=BLOCK_MS, count=READ_COUNT)
                )
                if not read:
                    continue
                position = read[-1][0]
                events = render(read)
                for subscription in list(self.subscribers):
                    if subscription.behind:
                        continue
                    try:
                        subscription.queue.put_nowait(events)
                    except asyncio.QueueFull:
                        subscription.behind = True
                await asyncio.sleep(GATHER_SECONDS)
        except Failed as exc:
            logger.warning("live updates stopped, Redis unavailable: %s", exc)
            if not ready.done():
                ready.set_exception(exc)
            for subscription in list(self.subscribers):
                subscription.failed = exc
                with contextlib.suppress(asyncio.QueueFull):
                    subscription.queue.put_nowait(exc)  # wakes a waiting stream
            # Streams still open are told; whoever subscribes next starts a new reader.
            self.subscribers.clear()
            self.task = None


_hubs: WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = WeakKeyDictionary()


def hub() -> Hub:
    """Return this event loop's hub (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found


async def catch_up(client: redis.asyncio.Redis, last_id: str) -> Events:
    """Return every event after `last_id` the stream holds now (no waiting)."""
    events: Events = []
    while True:
        batch = await live.read(client, last_id, block_ms=None)
        if not batch:
            return events
        events.extend(render(batch))
        last_id = batch[-1][0]
