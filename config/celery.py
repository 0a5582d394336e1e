"""The Celery application: configured from Django settings (`CELERY_*`), tasks autodiscovered."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_postrun.connect
def _hand_back_database_connections(sender: Any = None, **kwargs: Any) -> None:
    """Return each task's database connection to the pool (and drop an unusable one).

    Celery's Django fixup would otherwise close the whole psycopg pool around every task in a
    prefork worker, so each task opened a new PostgreSQL connection: `make bench` measured a
    webhook event at 37 ms in the worker against 13 ms in-process. CELERY_DB_REUSE_MAX (in the
    settings) stops that; this keeps what the fixup's per-task close was for.
    """
    if sender is not None and getattr(sender.request, "is_eager", False):
        return  # inside the caller's transaction (tests): not ours to close
    from django.db import close_old_connections

    close_old_connections()


@worker_init.connect
def _a_database_connection_for_each_thread(sender: Any = None, **kwargs: Any) -> None:
    """Size a thread-pool worker's database pool to its threads (the platform lane).

    The pool's default (DATABASE_POOL_MAX_SIZE, 8) suits a web process; with 16 threads
    sending at once, half of them waited for a connection (`make bench`: 86 sends/s). Two
    more for the claim-lease heartbeat and the consumer.
    """
    if "thread" not in str(getattr(sender, "pool_cls", "")).lower():
        return
    from django.conf import settings

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    concurrency = getattr(sender, "concurrency", None)
    if isinstance(pool, dict) and isinstance(concurrency, int):
        pool["max_size"] = max(int(pool.get("max_size", 0)), concurrency + 2)
