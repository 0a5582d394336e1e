"""The one Redis client per process for the app's own keys (live events, rate limits, kicks).

Celery talks to its broker on its own; this is for what the app reads and writes itself. None
when REDIS_URL is not set (the embedded default): callers then fall back to what works without.
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings


@cache
def redis_client(socket_timeout: float = 2.0) -> redis.Redis | None:
    """Return a shared client for REDIS_URL (None without one); calls fail within the timeout."""
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=socket_timeout)
