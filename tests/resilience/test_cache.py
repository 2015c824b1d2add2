"""The agency cache, memory and Redis: hits make no agency calls, keys are namespaced, a
household costs one round trip per dataset, ``cache = false`` is honoured, entries lapse,
and the memory cache stays bounded."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.records import DATASETS, Dataset
from gateway.cache import AgencyCache, Entry
from gateway.config import CacheConfig
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import (
    MACHINE_REDIS,
    TAXES,
    Agent,
    agency_status,
    cache_of,
    drop_namespace,
    http_agency,
    namespace,
)

AGENCIES = ("registry", "nhis", "nps", "nts", "mma")

EVERYTHING = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name birthDate sex status address { region postalCode registeredOn }
    insurance { insuredType enrolledOn monthlyPremium dependents insuredBy }
    taxes { year reportedIncome taxAssessed taxPaid arrears }
    pension { subscriberType monthsContributed expectedMonthlyBenefit benefitSince }
    militaryService { status branch enlistedOn dischargedOn } } }"""

HOUSEHOLD_INSURANCE = """query($rrn: String!) {
  resident(rrn: $rrn, purpose: HEALTH_INSURANCE) {
    household { members { name insurance { monthlyPremium } } } } }"""


def calls(gateway: GatewayClient) -> dict[str, int]:
    return {code: gateway.calls(code) for code in AGENCIES}


async def test_a_second_identical_query_makes_no_agency_calls(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    async with gateway_client(config) as gateway:
        first = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        cold = calls(gateway)
        second = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        warm = calls(gateway)
    assert "errors" not in first, first
    assert second == first
    assert cold == {"registry": 1, "nhis": 1, "nps": 1, "nts": 1, "mma": 1}
    assert warm == cold


async def test_redis_keys_are_namespaced_and_expire(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], machine_redis: aioredis.Redis
) -> None:
    cache = cache_of("redis")
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    try:
        async with gateway_client(config) as gateway:
            body = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        assert "errors" not in body, body
        keys = [k.decode() async for k in machine_redis.scan_iter(match=f"{cache.namespace}:*")]
        prefix = f"{cache.namespace}:v1:"
        expected = {
            f"{prefix}registry:resident:{HEAD_RRN}",
            f"{prefix}nhis:insurance:{HEAD_RRN}",
            f"{prefix}nps:pension:{HEAD_RRN}",
            f"{prefix}nts:taxes:{HEAD_RRN}",
            f"{prefix}mma:military_service:{HEAD_RRN}",
        }
        assert {k for k in keys if k.startswith(prefix)} == expected
        # Nothing else (the suite runs without rate limits, whose counters would be here).
        assert set(keys) == expected
        # Entries live in Redis only as long as they may be served (stale_ttl_s, 3600 s).
        for key in keys:
            ttl = await machine_redis.ttl(key)
            assert 0 < ttl <= 3600, (key, ttl)
    finally:
        await drop_namespace(machine_redis, cache.namespace)


async def test_household_of_20_costs_one_round_trip_cold_and_no_call_warm(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    cache: CacheConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    async with gateway_client(config) as gateway:
        shared: AgencyCache = gateway.app.state.agencies.cache
        lookups: list[tuple[str, str, int]] = []
        get_many = shared.get_many

        async def counted(
            agency: str, dataset: Dataset, keys: Any, max_age_s: float
        ) -> list[Entry | None]:
            lookups.append((agency, dataset.name, len(keys)))
            return await get_many(agency, dataset, keys, max_age_s)

        monkeypatch.setattr(shared, "get_many", counted)
        cold = await gateway.query(HOUSEHOLD_INSURANCE, {"rrn": HEAD_RRN})
        cold_calls, cold_lookups = calls(gateway), list(lookups)
        lookups.clear()
        warm = await gateway.query(HOUSEHOLD_INSURANCE, {"rrn": HEAD_RRN})
        warm_calls = calls(gateway)

    members = cold["data"]["resident"]["household"]["members"]
    assert len(members) == 20
    assert all(m["insurance"]["monthlyPremium"] for m in members), members
    assert warm == cold
    # Insurance for 20 members: one cache round trip, one agency call, 20 keys.
    assert [x for x in cold_lookups if x[0] == "nhis"] == [("nhis", "insurance", 20)]
    assert cold_calls["nhis"] == 1
    # registry: the resident, the household, the other 19 members; one lookup each.
    assert [x for x in cold_lookups if x[0] == "registry"] == [
        ("registry", "resident", 1),
        ("registry", "household", 1),
        ("registry", "resident", 19),
    ]
    assert cold_calls["registry"] == 3
    # Warm: no agency calls at all. Redis: the same round trips; memory: none, every key
    # answered at once from the process's own cache (CacheLayer.peek).
    if cache.backend == "redis":
        assert sorted(lookups) == sorted(cold_lookups)
    else:
        assert lookups == []
    assert warm_calls == cold_calls


async def test_an_agency_with_cache_off_is_always_called(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache,
        agencies={"nts": http_agency("nts", http_agencies["nts"], cache=False)},
    )
    async with gateway_client(config) as gateway:
        for _ in range(3):
            body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            assert len(body["data"]["resident"]["taxes"]) == 2
        counted = calls(gateway)
        status = await agency_status(gateway)
    assert counted["nts"] == 3
    assert counted["nhis"] == 1
    assert counted["registry"] == 1
    assert status["nts"]["cache"] == "off"
    assert status["nhis"]["cache"] == cache.backend


async def test_an_entry_is_fetched_again_after_cache_ttl(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig, nts: Agent
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache,
        agencies={"nts": http_agency("nts", nts.url, cache_ttl_s=1)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.calls()
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        within_ttl = await nts.calls() - before
        await asyncio.sleep(1.1)
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        after_ttl = await nts.calls() - before
        # nhis keeps its default 60 s: still one call.
        assert gateway.calls("nhis") == 1
    assert within_ttl == 1
    assert after_ttl == 2


async def test_the_memory_cache_is_bounded() -> None:
    cache = AgencyCache(CacheConfig(), max_entries=100)
    dataset = DATASETS["insurance"]
    keys = [f"key-{i:04d}" for i in range(1000)]
    try:
        for start in range(0, 1000, 50):
            chunk = keys[start : start + 50]
            await cache.set_many(
                "nhis", dataset, [(k, None) for k in chunk], ttl_s=3600, asked_at=time.time()
            )
        found = await cache.get_many("nhis", dataset, keys, max_age_s=3600)
    finally:
        await cache.close()
    kept = [key for key, entry in zip(keys, found, strict=True) if entry is not None]
    assert len(kept) == 100
    assert kept == keys[-100:]  # the most recently written ones


async def test_the_redis_namespace_keeps_deployments_apart(
    machine_redis: aioredis.Redis,
) -> None:
    one = AgencyCache(CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace()))
    two = AgencyCache(CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace()))
    dataset = DATASETS["insurance"]
    try:
        await one.set_many("nhis", dataset, [("k", None)], ttl_s=60, asked_at=time.time())
        [mine] = await one.get_many("nhis", dataset, ["k"], max_age_s=60)
        [theirs] = await two.get_many("nhis", dataset, ["k"], max_age_s=60)
    finally:
        await one.close()
        await two.close()
        await drop_namespace(machine_redis, one.namespace)
    assert mine is not None
    assert theirs is None


async def test_cache_ttl_holds_when_stale_ttl_is_shorter(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    # stale_ttl_s = 0: never serve stale data. Fresh data must still be fresh for cache_ttl_s.
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache_of("memory"),
        agencies={"nts": http_agency("nts", nts.url, cache_ttl_s=60, stale_ttl_s=0)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.calls()
        first = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        await asyncio.sleep(1.1)
        second = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        asked = await nts.calls() - before
    assert second == first
    assert asked == 1, f"the agency was asked {asked} times within cache_ttl_s = 60"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_parts_are_cached_apart_and_invalidated_with_their_dataset(
    backend: str, machine_redis: aioredis.Redis
) -> None:
    # A GraphQL subgraph's records are fetched in parts (the selection a request forwards):
    # each part is its own entry, and an invalidation of the dataset reaches every part.
    config = CacheConfig(backend=backend, url=MACHINE_REDIS, namespace=namespace())
    cache = AgencyCache(config)
    dataset = DATASETS["insurance"]
    narrow, wide = dataset.narrowed("insuredType"), dataset.narrowed("insuredType dependents")
    assert narrow.base == wide.base == "insurance" != narrow.name != wide.name
    record = dataset.record("k", "EMPLOYEE", dt.date(2020, 1, 1), 1, 2, None)
    try:
        await cache.set_many("nhis", narrow, [("k", record)], ttl_s=60, asked_at=time.time())
        [found] = await cache.get_many("nhis", narrow, ["k"], max_age_s=60)
        [other] = await cache.get_many("nhis", wide, ["k"], max_age_s=60)
        await cache.invalidate("nhis", ["insurance"], ["k"], ttl_s=60)
        [after] = await cache.get_many("nhis", narrow, ["k"], max_age_s=60)
    finally:
        await cache.close()
        await drop_namespace(machine_redis, config.namespace)
    assert found is not None
    assert found.value == record
    assert other is None  # the narrow part never answers the wide one
    assert after is None
