"""Enqueue a Celery task by name, or log and leave the job to the sweeps.

Every job a service enqueues is a stored row first (a queued message, a pending session action,
a stored callback), and a periodic sweep or reaper enqueues again whatever has no task. So when
the broker refuses, a service must not fail: it logs and carries on, and the row waits for the
sweep. This is the one place that says so.

Tasks are named by their dotted path and imported when first enqueued, so a service never
imports the tasks module that imports it (`make test`'s import contracts forbid that cycle).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from django.utils.module_loading import import_string

from config.redis import redis_client

logger = logging.getLogger(__name__)


def enqueue(task: str, *args: Any, countdown: float = 0, what: str = "") -> bool:
    """Hand a task to the broker (once, no retries); return False if the broker refused it.

    `task` is the task's dotted path (`"inbox.tasks.message_deliver"`), `args` its arguments
    (JSON), `what` the job in words for the log ("delivery of message 12").
    """
    celery_task = import_string(task)  # (outside the try: a wrong name is a bug, not an outage)
    try:
        celery_task.apply_async(args=args, countdown=countdown, retry=False)
    except Exception as exc:
        logger.warning(
            "could not enqueue %s: %s (it stays stored; a sweep enqueues it later)",
            what or f"{task}{args}",
            exc,
        )
        return False
    return True


def queue_length(queue: str) -> int | None:
    """Return how many tasks wait in `queue` at the broker (None: eager, or not known now)."""
    from config.celery import app

    if app.conf.task_always_eager:
        return None
    try:
        with app.connection_for_read() as connection, connection.channel() as channel:
            declared = channel.queue_declare(queue=queue, passive=True)  # type: ignore[attr-defined]
            return int(declared.message_count)
    except Exception as exc:
        # A queue not declared yet, or the broker away: behave as without a backlog.
        logger.info("could not read the length of queue %s: %s", queue, exc)
        return None


def enqueue_once(task: str, *args: Any, key: str, ttl_seconds: float, what: str = "") -> bool:
    """Make sure one task is on its way under `key`; return False if that cannot be ensured.

    One Redis SET NX per call instead of one task per call: the first call after such a task
    started enqueues the next one, the rest ride along. The task calls `enqueue_once_started`
    when it starts, so every call is followed by a task that starts after it. The key expires
    after `ttl_seconds` in case its task is lost (the sweeps catch what it would have done).
    False (no Redis, a Redis error, the broker refused): the caller falls back to a task of
    its own for the job.
    """
    client = redis_client(socket_timeout=1.0)
    if client is None:
        return False
    try:
        if not client.set(key, b"1", nx=True, px=max(int(ttl_seconds * 1000), 1)):
            return True  # a task is queued and has not started: it will see this job
    except redis.RedisError as exc:
        logger.warning("could not check for a queued %s (%s)", what or task, exc)
        return False
    if not enqueue(task, *args, what=what):
        with contextlib.suppress(redis.RedisError):
            client.delete(key)
        return False
    return True


def enqueue_once_started(key: str) -> None:
    """Say that the task queued under `key` has started: the next call enqueues another."""
    client = redis_client(socket_timeout=1.0)
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.delete(key)


def enqueue_once_hold(key: str, ttl_seconds: float) -> None:
    """Say that the task queued under `key` is running and calls may still ride along on it.

    For a task that loops until its work is done (a channel's drain): the key stays set, for
    `ttl_seconds` after the last hold, so a burst of calls starts one task rather than one more
    each time the previous one started. The task calls `enqueue_once_release` when it finds no
    work left, then looks once more for work that arrived in between.
    """
    client = redis_client(socket_timeout=1.0)
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.set(key, b"1", px=max(int(ttl_seconds * 1000), 1))


def enqueue_once_release(key: str) -> None:
    """Say that the task holding `key` is done: the next call enqueues another."""
    enqueue_once_started(key)


def enqueue_once_later(
    task: str, *args: Any, key: str, countdown: float, ttl_seconds: float, what: str = ""
) -> bool:
    """Enqueue `task` to run in `countdown` seconds, and let calls meanwhile ride along on it."""
    client = redis_client(socket_timeout=1.0)
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.set(key, b"1", px=max(int((countdown + ttl_seconds) * 1000), 1))
    return enqueue(task, *args, countdown=countdown, what=what)
