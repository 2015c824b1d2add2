"""The cache layer over the in-memory cache: fresh hits, errors never cached, stale copies
served (and said to be stale) when the agency fails."""

from __future__ import annotations

import time

from adapters.memory import InMemoryAdapter
from gateway.cache import AgencyCache
from gateway.config import AgencyConfig, CacheConfig
from gateway.errors import AgencyError
from gateway.layers import AgencyStats, Sourced
from gateway.layers.cached import CacheLayer
from tests.layers.conftest import PEOPLE
from tests.resilience.conftest import cache_of


def layer(**kw: int) -> CacheLayer:
    config = AgencyConfig(code="nts", kind="memory", **kw)  # type: ignore[arg-type]
    return CacheLayer(config, AgencyCache(CacheConfig(backend="memory")), AgencyStats())


async def test_a_stored_answer_is_a_fresh_hit(agency: InMemoryAdapter) -> None:
    cached = layer()
    found, stale, pending = await cached.lookup(PEOPLE, ["a", "b"])
    assert (found, stale, pending) == ({}, {}, ["a", "b"])
    answers = list(await agency.fetch(PEOPLE, pending))
    await cached.store(PEOPLE, pending, answers, time.time())
    found, stale, pending = await cached.lookup(PEOPLE, ["a", "b", "c"])
    assert {k: v.value for k, v in found.items() if isinstance(v, Sourced)} == {
        "a": "record a",
        "b": "record b",
    }
    assert pending == ["c"]
    assert (cached.stats.cache_hits, cached.stats.cache_misses) == (2, 3)


async def test_an_error_is_never_stored() -> None:
    cached = layer()
    await cached.store(PEOPLE, ["a"], [AgencyError("nts")], time.time())
    _, _, pending = await cached.lookup(PEOPLE, ["a"])
    assert pending == ["a"]


async def test_a_stale_copy_answers_for_a_failing_agency() -> None:
    cached = layer(cache_ttl_s=60, stale_ttl_s=3600)
    await cached.store(PEOPLE, ["a"], ["record a"], time.time() - 120)  # past fresh
    found, stale, pending = await cached.lookup(PEOPLE, ["a"])
    assert (found, pending) == ({}, ["a"])
    served = cached.outcome(AgencyError("nts"), stale["a"], time.time())
    assert isinstance(served, Sourced)
    assert (served.value, served.stale) == ("record a", True)
    assert cached.stats.stale_served == 1
    fresh = cached.outcome("record a2", stale["a"], time.time())
    assert isinstance(fresh, Sourced)
    assert (fresh.value, fresh.stale) == ("record a2", False)


async def test_as_of_is_the_start_of_a_minute_ttl_ago() -> None:
    cached = layer(cache_ttl_s=60)
    now = 1_800_000_030.0
    assert cached.no_older_than(now) == 1_799_999_940.0


async def test_peek_answers_what_lookup_would_find_fresh_and_nothing_else() -> None:
    cached = layer(cache_ttl_s=60, stale_ttl_s=3600)
    assert cached.peek(PEOPLE, "a") is None  # nothing stored
    await cached.store(PEOPLE, ["a"], ["record a"], time.time())
    await cached.store(PEOPLE, ["b"], ["record b"], time.time() - 120)  # stale only
    await cached.store(PEOPLE, ["n"], [None], time.time())  # the agency has no record
    hit = cached.peek(PEOPLE, "a")
    assert isinstance(hit, Sourced)
    assert (hit.value, hit.agency, hit.stale) == ("record a", "nts", False)
    assert hit.as_of == cached.no_older_than(time.time())
    assert cached.peek(PEOPLE, "b") is None  # stale copies are lookup's to serve
    none = cached.peek(PEOPLE, "n")
    assert none is not None
    assert none.value is None
    # Only the answered peeks count, as hits; a miss is counted by the lookup that follows.
    assert (cached.stats.cache_hits, cached.stats.cache_misses) == (2, 0)


async def test_peek_sees_an_invalidation() -> None:
    cached = layer()
    assert cached.cache is not None
    await cached.store(PEOPLE, ["a"], ["record a"], time.time() - 1)
    assert cached.peek(PEOPLE, "a") is not None
    await cached.cache.invalidate("nts", [PEOPLE.name], ["a"], ttl_s=60)
    assert cached.peek(PEOPLE, "a") is None
    found, _, pending = await cached.lookup(PEOPLE, ["a"])
    assert (found, pending) == ({}, ["a"])


async def test_peek_never_answers_from_redis() -> None:
    config = AgencyConfig(code="nts", kind="memory")
    shared = AgencyCache(cache_of("redis"))
    cached = CacheLayer(config, shared, AgencyStats())
    try:
        await cached.store(PEOPLE, ["a"], [None], time.time())  # "no record", JSON-storable
        found, _, _ = await cached.lookup(PEOPLE, ["a"])
        assert "a" in found  # stored and found through the awaited path
        assert cached.peek(PEOPLE, "a") is None  # a round trip is never made in peek
    finally:
        await shared.clear_agency("nts", 60)
        await shared.close()


async def test_clearing_an_agency_leaves_an_agency_whose_code_it_begins() -> None:
    """``forget`` (after missed change notifications) clears one agency's entries: in the
    memory store as in Redis, nts's clear leaves nts2's records."""
    shared = AgencyCache(cache_of("memory"))
    nts = CacheLayer(AgencyConfig(code="nts", kind="memory"), shared, AgencyStats())
    nts2 = CacheLayer(AgencyConfig(code="nts2", kind="memory"), shared, AgencyStats())
    for cached in (nts, nts2):
        await cached.store(PEOPLE, ["a"], ["record a"], time.time() - 1)
    await shared.clear_agency("nts", 60)
    assert nts.peek(PEOPLE, "a") is None
    kept = nts2.peek(PEOPLE, "a")
    assert kept is not None
    assert kept.value == "record a"


async def test_a_read_in_flight_when_an_agency_is_cleared_cannot_write_back() -> None:
    """An answer asked for before the agency's entries were cleared (its change
    notifications were missed meanwhile) is stored when it arrives, but never answered."""
    cached = layer()
    assert cached.cache is not None
    asked_at = time.time()
    await cached.cache.clear_agency("nts", 60)
    await cached.store(PEOPLE, ["a"], ["record a, from before"], asked_at)
    assert cached.peek(PEOPLE, "a") is None
    found, _, pending = await cached.lookup(PEOPLE, ["a"])
    assert (found, pending) == ({}, ["a"])
    await cached.store(PEOPLE, ["a"], ["record a, asked after"], time.time())
    found, _, _ = await cached.lookup(PEOPLE, ["a"])
    assert [v.value for v in found.values() if isinstance(v, Sourced)] == ["record a, asked after"]
    hit = cached.peek(PEOPLE, "a")
    assert hit is not None
    assert hit.value == "record a, asked after"


async def test_a_cleared_agency_write_back_is_refused_in_redis_too() -> None:
    config = AgencyConfig(code="nts", kind="memory")
    shared = AgencyCache(cache_of("redis"))
    cached = CacheLayer(config, shared, AgencyStats())
    try:
        asked_at = time.time()
        await shared.clear_agency("nts", 60)
        await cached.store(PEOPLE, ["a"], [None], asked_at)
        found, _, pending = await cached.lookup(PEOPLE, ["a"])
        assert (found, pending) == ({}, ["a"])
    finally:
        await shared.clear_agency("nts", 60)
        await shared.close()
