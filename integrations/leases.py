"""Claims that renew while work runs: a lease on claimed rows, kept alive by a heartbeat.

A worker claims a row (a callback, a send, a session action) with a conditional UPDATE that
sets its `claimed_at`; that timestamp is also the claim's token. While the work runs, a
heartbeat thread in the same process moves `claimed_at` forward every CLAIM_RENEW_SECONDS,
with an UPDATE conditional on the token it last wrote, so it never renews a claim someone else
has taken over since. A claim whose `claimed_at` is older than CLAIM_LEASE_SECONDS therefore
belongs to a worker that died (killed, out of memory, its machine gone), and the sweeps and
reapers recover it within seconds instead of waiting out the longest possible task.

Work that finishes within CLAIM_RENEW_SECONDS (nearly all of it) costs no renewal at all: one
thread per process renews every due lease with one UPDATE per lease, however many are held.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Model, Q
from django.utils import timezone

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    """Rows of one model claimed together, and the `claimed_at` values written for them."""

    model: type[Model]
    ids: tuple[int, ...]
    tokens: list[datetime]
    still: Q
    renewals: int = 0

    @property
    def token(self) -> datetime:
        """The claim time last written."""
        return self.tokens[-1]


_held: dict[int, Lease] = {}
_lock = threading.Lock()
_wake = threading.Event()
_numbers = itertools.count()
_thread: threading.Thread | None = None
_thread_pid = 0


@contextlib.contextmanager
def lease_held(
    model: type[Model], ids: Iterable[int], token: datetime | None, *, still: Q | None = None
) -> Iterator[Lease]:
    """Keep the claim on `ids` (made with `claimed_at=token`) alive until the block ends.

    `still` narrows the renewal to rows still in their claimed state (e.g. `sending`), so a
    row the work has finished with keeps the time it was last held.
    """
    lease = Lease(
        model=model,
        ids=tuple(ids),
        tokens=[token or timezone.now()],
        still=still if still is not None else Q(),
    )
    number = next(_numbers)
    with _lock:
        _held[number] = lease
    _ensure_heartbeat()
    try:
        yield lease
    finally:
        with _lock:
            _held.pop(number, None)


def leases_renew(now: datetime | None = None) -> int:
    """Renew every held lease last renewed CLAIM_RENEW_SECONDS ago or more; return how many."""
    now = now or timezone.now()
    due = now - timedelta(seconds=settings.CLAIM_RENEW_SECONDS)
    with _lock:
        leases = [lease for lease in _held.values() if lease.token <= due]
    renewed = 0
    for lease in leases:
        # Only rows whose claim time is one this lease wrote: a claim another worker took over
        # since (with its own time) is not ours to extend. Rows locked right now are skipped:
        # their transaction is this worker's own, still at work on them, and waiting for it
        # could deadlock with it.
        rows = lease.model._default_manager.filter(
            lease.still, pk__in=lease.ids, claimed_at__in=lease.tokens
        )
        with transaction.atomic():
            ids = list(
                rows.select_for_update(skip_locked=True).order_by("pk").values_list("pk", flat=True)
            )
            if ids:
                lease.model._default_manager.filter(pk__in=ids).update(claimed_at=now)
        if ids:
            lease.tokens.append(now)
            lease.renewals += 1
            renewed += 1
    return renewed


def _ensure_heartbeat() -> None:
    global _thread, _thread_pid
    pid = os.getpid()
    # A forked child (a prefork pool process) inherits the variable but not the thread.
    if _thread is not None and _thread_pid == pid and _thread.is_alive():
        return
    with _lock:
        if _thread is not None and _thread_pid == pid and _thread.is_alive():
            return
        _thread = threading.Thread(target=_heartbeat, name="claim-leases", daemon=True)
        _thread_pid = pid
        _thread.start()


def _heartbeat() -> None:
    while True:
        _wake.wait(min(max(settings.CLAIM_RENEW_SECONDS / 2, 0.05), 1.0))
        _wake.clear()
        with _lock:
            if not _held:
                continue
        try:
            leases_renew()
        except Exception as exc:
            # The database may be away for a moment; the next beat tries again, and a lease
            # that runs out meanwhile is recovered by the reapers (its work is idempotent).
            logger.warning("could not renew claim leases: %s", exc)
        finally:
            if not connection.in_atomic_block:
                close_old_connections()
                connection.close()


def database_released() -> None:
    """Hand this thread's database connection back before waiting on a platform.

    A platform call may take up to PLATFORM_READ_TIMEOUT; with many calls in flight in one
    thread-pool worker, each holding a pooled connection meanwhile, a slow platform would use
    up the pool and stall every other send. Inside a transaction (tests run tasks eagerly in
    one) the connection stays.
    """
    if not connection.in_atomic_block:
        connection.close()
