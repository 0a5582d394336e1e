"""Enqueue a Celery task by name, or log and leave the job to the sweeps.

Every job a service enqueues is a stored row first (a queued message, a pending session action,
a stored callback), and a periodic sweep or reaper enqueues again whatever has no task. So when
the broker refuses, a service must not fail: it logs and carries on, and the row waits for the
sweep. This is the one place that says so.

Tasks are named by their dotted path and imported when first enqueued, so a service never
imports the tasks module that imports it (`make test`'s import contracts forbid that cycle).
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.module_loading import import_string

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
