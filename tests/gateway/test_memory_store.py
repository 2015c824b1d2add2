"""The in-process cache backend: bounded by last write, real TTLs (tombstones included),
and a write that costs the same at 200,000 entries as at ten."""

from __future__ import annotations

import time

from adapters.records import RESIDENT
from gateway.cache import AgencyCache, MemoryStore
from gateway.config import CacheConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_past_its_bound_the_oldest_write_goes() -> None:
    store = MemoryStore(max_entries=3)
    await store.multi_set([("a", 1), ("b", 2), ("c", 3)])
    await store.multi_set([("a", 10)])  # rewritten: now the newest
    await store.multi_set([("d", 4)])
    assert await store.multi_get(["a", "b", "c", "d"]) == [10, None, 3, 4]
    assert len(store) == 3


async def test_an_entry_is_gone_after_its_ttl() -> None:
    clock = Clock()
    store = MemoryStore(max_entries=10, clock=clock)
    await store.multi_set([("short", "s")], ttl=5)
    await store.multi_set([("long", "l")], ttl=60)
    clock.now += 4.9
    assert await store.multi_get(["short", "long"]) == ["s", "l"]
    clock.now += 0.2
    assert await store.multi_get(["short", "long"]) == [None, "l"]
    assert len(store) == 1  # dropped, not just hidden


async def test_expired_entries_are_swept_by_later_writes() -> None:
    clock = Clock()
    store = MemoryStore(max_entries=1000, clock=clock)
    await store.multi_set([(f"old{i}", i) for i in range(4)], ttl=1)
    clock.now += 2
    await store.multi_set([("new", 1)], ttl=60)
    assert len(store) == 1


async def test_a_tombstone_expires_with_the_agencys_entries() -> None:
    cache = AgencyCache(CacheConfig(backend="memory"))
    store = cache._cache
    assert isinstance(store, MemoryStore)
    clock = Clock()
    store._clock = clock
    await cache.set_many("nts", RESIDENT, [("k", "v")], ttl_s=10, asked_at=time.time())
    assert await cache.invalidate("nts", ["resident"], ["k"], ttl_s=10) == 1
    assert len(store) == 1  # the tombstone
    clock.now += 11
    assert await cache.get_many("nts", RESIDENT, ["k"], max_age_s=3600) == [None]
    assert len(store) == 0


async def test_clearing_an_agency_keeps_the_others() -> None:
    store = MemoryStore(max_entries=10)
    await store.multi_set([("gw:v1:nts:taxes:a", 1), ("gw:v1:nhis:insurance:a", 2)])
    await store.clear(namespace="gw:v1:nts")
    assert await store.multi_get(["gw:v1:nts:taxes:a", "gw:v1:nhis:insurance:a"]) == [None, 2]


async def test_a_write_at_the_bound_does_not_walk_the_whole_cache() -> None:
    cache = AgencyCache(CacheConfig(backend="memory"), max_entries=200_000)
    now = time.time()
    for start in range(0, 200_000, 5000):
        await cache.set_many(
            "nts", RESIDENT, [(f"k{i}", "v") for i in range(start, start + 5000)], 60, now
        )
    started = time.process_time()
    for i in range(1000):
        await cache.set_many("nts", RESIDENT, [(f"new{i}", "v")], 60, now)
    took = time.process_time() - started
    # Copying every key per write took about 1.9 s for these 1,000 writes; O(1) takes ~5 ms.
    assert took < 0.3, took
    assert len(cache._cache) == 200_000
