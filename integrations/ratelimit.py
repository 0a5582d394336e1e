"""A per-key, per-second send budget shared by every worker through Redis.

Without Redis (the embedded default) each worker process keeps its own count, which still
bounds the rate per worker. If Redis fails, sending is allowed: a rate limit must not stop
the inbox.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import redis

from config.redis import redis_client

logger = logging.getLogger(__name__)
_local: dict[str, tuple[int, int]] = {}
_lock = threading.Lock()


def _client() -> redis.Redis | None:
    return redis_client(socket_timeout=1.0)


def acquire(key: str, per_second: int) -> float:
    """Take one slot of `per_second` for `key`; return 0.0 if taken, else seconds to wait."""
    grant = take(key, per_second, 1)
    return 0.0 if grant.slots else grant.wait


@dataclass(frozen=True)
class Grant:
    """Slots taken from one second's budget; `wait`: seconds until the next second's."""

    slots: int
    wait: float
    second: int


def take(key: str, per_second: int, wanted: int) -> Grant:
    """Take up to `wanted` slots of this second's `per_second` for `key`.

    Fewer than wanted when the budget runs short (`wait` then says until when). Slots taken
    but not used go back with `give_back`.
    """
    if per_second <= 0 or wanted <= 0:
        return Grant(slots=max(wanted, 0), wait=0.0, second=0)
    now = time.time()
    second = int(now)
    client = _client()
    count: int
    if client is not None:
        try:
            bucket = f"switchboard:rate:{key}:{second}"
            pipe = client.pipeline()
            pipe.incrby(bucket, wanted)
            pipe.expire(bucket, 3)
            count = int(pipe.execute()[0])
            over = min(max(count - per_second, 0), wanted)
            if over:
                client.decrby(bucket, over)  # what was not granted is not spent
        except redis.RedisError as exc:
            logger.warning("rate limit unavailable (%s); sending without it", exc)
            return Grant(slots=wanted, wait=0.0, second=0)
    else:
        with _lock:
            held_second, held = _local.get(key, (second, 0))
            count = (held if held_second == second else 0) + wanted
            over = min(max(count - per_second, 0), wanted)
            _local[key] = (second, count - over)
    wait = 0.0 if not over else round(second + 1 - now + 0.01, 3)
    return Grant(slots=wanted - over, wait=wait, second=second)


def give_back(key: str, grant: Grant, unused: int) -> None:
    """Return slots of `grant` that were not used, while their second lasts (best effort)."""
    second = grant.second
    if unused <= 0 or not second or int(time.time()) != second:
        return
    client = _client()
    if client is not None:
        with contextlib.suppress(redis.RedisError):
            client.decrby(f"switchboard:rate:{key}:{second}", unused)
        return
    with _lock:
        held_second, held = _local.get(key, (second, 0))
        if held_second == second:
            _local[key] = (second, max(held - unused, 0))
