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
