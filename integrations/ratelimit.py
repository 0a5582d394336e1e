"""A per-key, per-second send budget shared by every worker through Redis.

Without Redis (the embedded default) each worker process keeps its own count, which still
bounds the rate per worker. If Redis fails, sending is allowed: a rate limit must not stop
the inbox.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from config.redis import redis_client

logger = logging.getLogger(__name__)
_local: dict[str, tuple[int, int]] = {}
_lock = threading.Lock()


def _client() -> redis.Redis | None:
    return redis_client(socket_timeout=1.0)


def acquire(key: str, per_second: int) -> float:
    """Take one slot of `per_second` for `key`; return 0.0 if taken, else seconds to wait."""
    if per_second <= 0:
        return 0.0
    now = time.time()
    second = int(now)
    client = _client()
    count: int
    if client is not None:
        try:
            bucket = f"switchboard:rate:{key}:{second}"
            pipe = client.pipeline()
            pipe.incr(bucket)
            pipe.expire(bucket, 3)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            logger.warning("rate limit unavailable (%s); sending without it", exc)
            return 0.0
    else:
        with _lock:
            held_second, held = _local.get(key, (second, 0))
            count = held + 1 if held_second == second else 1
            _local[key] = (second, count)
    if count <= per_second:
        return 0.0
    return round(second + 1 - now + 0.01, 3)
