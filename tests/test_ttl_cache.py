"""The one per-process TTL cache: entries expire, the setting turns it off, its size is bounded."""

from __future__ import annotations

from integrations.ttl_cache import TTLCache


class Clock:
    """A clock the test moves by hand (no waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(ttl: float = 5.0, *, max_size: int = 100) -> tuple[TTLCache[str, int], Clock, list[float]]:
    clock, setting = Clock(), [ttl]
    return TTLCache(lambda: setting[0], max_size=max_size, clock=clock), clock, setting


def test_a_value_is_served_until_its_time_to_live_has_passed():
    cache, clock, _ = make(ttl=5.0)
    cache.put("a", 1)

    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.1
    assert cache.get("a") is None


def test_putting_again_starts_the_time_to_live_again():
    cache, clock, _ = make(ttl=5.0)
    cache.put("a", 1)
    clock.now += 4
    cache.put("a", 2)
    clock.now += 4

    assert cache.get("a") == 2


def test_a_time_to_live_of_zero_turns_the_cache_off_at_once_even_for_kept_entries():
    cache, _, setting = make(ttl=5.0)
    cache.put("a", 1)

    setting[0] = 0.0
    cache.put("b", 2)

    assert cache.get("a") is None
    assert cache.get("b") is None
    assert len(cache) == 1  # nothing new was kept while off


def test_the_time_to_live_is_read_at_each_put():
    cache, clock, setting = make(ttl=5.0)
    setting[0] = 60.0
    cache.put("a", 1)
    clock.now += 30

    assert cache.get("a") == 1


def test_discard_and_clear_forget_entries():
    cache, _, _ = make()
    cache.put("a", 1)
    cache.put("b", 2)

    cache.discard("a")
    cache.discard("missing")
    assert cache.get("a") is None
    assert cache.get("b") == 2
    cache.clear()
    assert cache.get("b") is None
    assert len(cache) == 0


def test_a_full_cache_drops_expired_entries_first():
    cache, clock, _ = make(ttl=5.0, max_size=3)
    cache.put("old", 0)
    clock.now += 10
    cache.put("b", 2)
    cache.put("c", 3)

    cache.put("d", 4)

    assert len(cache) == 3
    assert [cache.get(k) for k in ("b", "c", "d")] == [2, 3, 4]


def test_a_full_cache_of_fresh_entries_starts_over_so_its_size_stays_bounded():
    cache, _, _ = make(ttl=5.0, max_size=3)
    for number, key in enumerate("abc"):
        cache.put(key, number)

    cache.put("d", 4)
    cache.put("a", 5)

    assert len(cache) == 2
    assert cache.get("d") == 4
    assert cache.get("a") == 5
    assert cache.get("b") is None


def test_putting_a_kept_key_into_a_full_cache_keeps_the_others():
    cache, _, _ = make(ttl=5.0, max_size=2)
    cache.put("a", 1)
    cache.put("b", 2)

    cache.put("a", 3)

    assert (cache.get("a"), cache.get("b")) == (3, 2)
