"""Rate limits per principal: at and past the boundary, Retry-After, cost, the memory backend,
and two gateways sharing one limit through Redis, atomically under concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.config import CacheConfig, Config, LimitsConfig
from gateway.errors import RateLimited
from gateway.ratelimit import RateLimiter
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.resilience.conftest import cache_of, drop_namespace

QUERY = {"query": "{ agencies { code } }"}


def limited(config: Config, cache: CacheConfig | None = None, **limits: Any) -> Config:
    return dataclasses.replace(
        config,
        limits=dataclasses.replace(config.limits, **limits),
        cache=cache or cache_of("memory"),
    )


@pytest.fixture
async def redis_ns(machine_redis: aioredis.Redis) -> AsyncIterator[CacheConfig]:
    cache = cache_of("redis")
    yield cache
    await drop_namespace(machine_redis, cache.namespace)


def assert_limited(response: httpx.Response, window_s: int) -> int:
    assert response.status_code == 429, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= window_s
    assert error["extensions"]["retryAfter"] == retry_after
    return retry_after


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_at_and_past_the_boundary(
    config: Config, machine_redis: aioredis.Redis, backend: str
) -> None:
    cache = cache_of(backend)
    try:
        async with gateway_client(limited(config, cache, rate_requests=3)) as gw:
            for _ in range(3):
                assert (await gw.post(QUERY)).status_code == 200
            assert_limited(await gw.post(QUERY), 60)
            assert_limited(await gw.post(QUERY), 60)  # refused requests count too
            # Another principal has a budget of its own.
            other = gw.as_(token("tester", sub="someone-else"))
            assert (await other.post(QUERY)).status_code == 200
    finally:
        await drop_namespace(machine_redis, cache.namespace)


async def test_retry_after_frees_the_window(config: Config) -> None:
    async with gateway_client(limited(config, rate_requests=2, rate_window_s=1)) as gw:
        assert (await gw.post(QUERY)).status_code == 200
        assert (await gw.post(QUERY)).status_code == 200
        retry_after = assert_limited(await gw.post(QUERY), 1)
        assert retry_after == 1
        await asyncio.sleep(retry_after + 0.05)
        assert (await gw.post(QUERY)).status_code == 200


async def test_retry_after_counts_down(redis_ns: CacheConfig) -> None:
    limiter = RateLimiter(LimitsConfig(rate_requests=1, rate_window_s=30), redis_ns)
    try:
        await limiter.admit("sub:x")
        with pytest.raises(RateLimited) as refused:
            await limiter.admit("sub:x")
        assert refused.value.headers == {"Retry-After": "30"}
    finally:
        await limiter.close()


async def test_cost_per_window(config: Config) -> None:
    """Each request is charged the cost the analysis measured (gateway.limits)."""
    async with gateway_client(config) as gw:
        cost = (await gw.post({**QUERY, "extensions": {"cost": True}})).json()["extensions"]
    each = cost["cost"]["requested"]
    assert each > 1
    async with gateway_client(limited(config, rate_requests=0, rate_cost=3 * each)) as gw:
        for _ in range(3):
            assert (await gw.post(QUERY)).status_code == 200
        assert_limited(await gw.post(QUERY), 60)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_charge_takes_a_cost(machine_redis: aioredis.Redis, backend: str) -> None:
    cache = cache_of(backend)
    limiter = RateLimiter(LimitsConfig(rate_requests=10, rate_cost=100), cache)
    try:
        usage = await limiter.charge("sub:y", requests=1, cost=60)
        assert usage is not None
        assert (usage.requests, usage.cost) == (1, 60)
        usage = await limiter.charge("sub:y", requests=0, cost=40)
        assert usage is not None
        assert not limiter.over(usage)  # exactly the budget: still within it
        usage = await limiter.charge("sub:y", requests=0, cost=1)
        assert usage is not None
        assert limiter.over(usage)
    finally:
        await limiter.close()
        await drop_namespace(machine_redis, cache.namespace)


async def test_zero_turns_limits_off(config: Config) -> None:
    async with gateway_client(limited(config, rate_requests=0, rate_cost=0)) as gw:
        assert gw.app.state.runtime is not None
        for _ in range(5):
            assert (await gw.post(QUERY)).status_code == 200


async def test_bad_tokens_are_limited_by_address(config: Config) -> None:
    async with gateway_client(limited(config, rate_requests=2)) as gw:
        bad = gw.as_("not-a-token")
        assert (await bad.post(QUERY)).status_code == 401
        assert (await bad.post(QUERY)).status_code == 401
        assert_limited(await bad.post(QUERY), 60)


async def test_two_gateways_share_one_limit_atomically(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], redis_ns: CacheConfig
) -> None:
    """50 concurrent requests, split over two gateways, against a limit of 20: exactly 20 run."""
    shared = make_config(
        agency_db.dsn,
        http_agencies,
        cache=redis_ns,
        limits=LimitsConfig(rate_requests=20, rate_cost=0),
    )
    async with gateway_client(shared) as one, gateway_client(shared) as two:
        responses = await asyncio.gather(*(gw.post(QUERY) for gw in [one, two] * 25))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 30


async def test_cost_is_charged_on_arrival_so_concurrency_cannot_overshoot(config: Config) -> None:
    """Review finding: cost charged after execution let 20 concurrent requests all pass a
    budget none had been charged against yet (95,420 against 10,000)."""
    async with gateway_client(config) as gw:
        each = (await gw.post({**QUERY, "extensions": {"cost": True}})).json()["extensions"]
    cost = each["cost"]["requested"]
    budget = 5 * cost
    async with gateway_client(limited(config, rate_requests=0, rate_cost=budget)) as gw:
        responses = await asyncio.gather(*(gw.post(QUERY) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 15


async def test_requests_refused_before_authentication_count_by_address(config: Config) -> None:
    """Review finding: malformed bodies (refused before the token is read) were never
    counted; now they are, by address, and answered 429 once it is over."""
    async with gateway_client(limited(config, rate_requests=2)) as gw:
        malformed = [
            await gw.http.post(
                "/graphql", content=b"{not json", headers={"content-type": "application/json"}
            )
            for _ in range(4)
        ]
    assert [r.status_code for r in malformed[:2]] == [400, 400]
    for response in malformed[2:]:
        assert_limited(response, 60)
