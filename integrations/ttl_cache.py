"""A small per-process cache whose entries expire a set number of seconds after they were put.

For rows that every inbound callback reads and that change rarely (an account found by its
callback URL, a channel found by its platform id): a few seconds of staleness save a query per
callback. The time to live is read at each call (a setting, so that a deployment or a test can
change it, and 0 turns the cache off at once), and the number of entries is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    """Map keys to values for `ttl()` seconds each, at most `max_size` of them, in this process."""

    def __init__(
        self,
        ttl: Callable[[], float],
        *,
        max_size: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max_size = max_size
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """Return the value put under `key` if it has not expired (and the cache is on)."""
        if self._ttl() <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key` for the time to live; nothing when the cache is off.

        When full, expired entries go first; if none had expired, every entry goes (a burst of
        new keys costs a query each, as without the cache, and memory stays bounded).
        """
        ttl = self._ttl()
        if ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            if key not in self._entries and len(self._entries) >= self._max_size:
                for stale in [k for k, (expires, _) in self._entries.items() if expires <= now]:
                    del self._entries[stale]
                if len(self._entries) >= self._max_size:
                    self._entries.clear()
            self._entries[key] = (now + ttl, value)

    def discard(self, key: K) -> None:
        """Forget `key` (a row found gone or changed)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
