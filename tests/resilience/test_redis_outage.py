"""Redis stopped while serving: the gateway answers from the agencies, warns once, reports
the cache unhealthy, and uses Redis again once it is back."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import pytest

from gateway.config import CacheConfig
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members
from tests.resilience.conftest import (
    HOUSEHOLD_RRNS,
    TAXES,
    RedisServer,
    changed_income,
    income,
    namespace,
    readyz,
)

NEW_INCOME = 555_000_111

AGENCIES = ("registry", "nhis", "nps", "nts", "mma")
EVERYTHING = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name insurance { monthlyPremium } taxes { year reportedIncome }
    pension { monthsContributed } militaryService { status } } }"""


def calls(gateway: GatewayClient) -> dict[str, int]:
    return {code: gateway.calls(code) for code in AGENCIES}


def cache_warnings(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.cache" and r.levelno == logging.WARNING and word in r.getMessage()
    ]


async def test_the_gateway_serves_through_a_redis_outage(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.cache")
    cache = CacheConfig(backend="redis", url=own_redis.url, namespace=namespace())
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    async with gateway_client(config) as gateway:
        first = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        assert "errors" not in first, first
        cold = calls(gateway)
        assert await gateway.query(EVERYTHING, {"rrn": HEAD_RRN}) == first
        assert calls(gateway) == cold  # served from Redis
        assert (await readyz(gateway))["cache"] == "up"

        own_redis.kill()
        started = time.monotonic()
        during = [await gateway.query(EVERYTHING, {"rrn": HEAD_RRN}) for _ in range(3)]
        elapsed = time.monotonic() - started
        down = calls(gateway)
        ready_down = await readyz(gateway)

        await own_redis.start()  # the same port, empty
        after_restart = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        ready_up = await readyz(gateway)
        refilled = calls(gateway)
        again = await gateway.query(EVERYTHING, {"rrn": HEAD_RRN})
        final = calls(gateway)

    for body in [*during, after_restart, again]:
        assert body == first  # no errors, same data
    # Every agency was asked on each of the three queries without a cache.
    assert {code: down[code] - cold[code] for code in AGENCIES} == dict.fromkeys(AGENCIES, 3)
    assert elapsed < 3, elapsed  # a dead cache is a fast miss, not a stall
    assert len(cache_warnings(caplog, "failed")) == 1, caplog.records
    assert ready_down["status"] == "ready"
    assert ready_down["cache"] == "down"  # /readyz is open: states only

    assert ready_up["cache"] == "up"
    assert len(cache_warnings(caplog, "answering again")) == 1
    assert final == refilled  # Redis holds the records again


async def test_an_invalidation_the_cache_could_not_apply_is_not_acknowledged(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    # Redis keeps its entries across a restart (append-only file). While it is down, nts
    # invalidates a record: either the gateway refuses the event (so nts sends it again)
    # or it makes sure the old record is not served once Redis is back.
    server = RedisServer(data_dir=tmp_path)
    await server.start()
    try:
        cache = CacheConfig(backend="redis", url=server.url, namespace=namespace())
        config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
        async with gateway_client(config) as gateway:
            await gateway.query(TAXES, {"rrn": HEAD_RRN})
            async with changed_income(agency_db.dsn, HEAD_RRN, 2025, NEW_INCOME) as old:
                server.kill()
                response = await gateway.http.post(
                    "/events/invalidate",
                    json={"agency": "nts", "keys": [HEAD_RRN]},
                    headers={"Authorization": f"Bearer {token('agency_system', agency='nts')}"},
                )
                await server.start()
                # other traffic first, which finds Redis answering again
                for _ in range(2):
                    await gateway.query(TAXES, {"rrn": HOUSEHOLD_RRNS[1]})
                after = await gateway.query(TAXES, {"rrn": HEAD_RRN})
    finally:
        server.kill()
    refused = response.status_code >= 500
    assert refused or income(after, 2025) == NEW_INCOME, (
        f"HTTP {response.status_code} {response.text}, then served {income(after, 2025)} "
        f"(old {old}, new {NEW_INCOME})"
    )


NAMES = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name insurance { monthlyPremium } taxes { year } } }"""


async def test_a_hung_redis_slows_answers_but_never_mixes_them_up(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], own_redis: RedisServer
) -> None:
    # SIGSTOP: Redis keeps its sockets open and answers nothing. Every cache operation
    # times out (a miss); once Redis continues, late replies must not answer other lookups.
    assert own_redis.process is not None
    people = {rrn: name for rrn, name, *_ in members()[:6]}
    cache = CacheConfig(backend="redis", url=own_redis.url, namespace=namespace())
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    async with gateway_client(config) as gateway:
        for rrn in people:
            await gateway.query(NAMES, {"rrn": rrn})
        own_redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            hung = await asyncio.gather(*(gateway.query(NAMES, {"rrn": r}) for r in people))
            elapsed = time.monotonic() - started
            ready_hung = await readyz(gateway)
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        after = [await gateway.query(NAMES, {"rrn": r}) for r in [*people, *people]]
        ready_after = await readyz(gateway)
    for rrn, body in zip([*people, *people, *people], [*hung, *after], strict=True):
        assert "errors" not in body, body
        assert body["data"]["resident"]["name"] == people[rrn]
    assert elapsed < 3, elapsed
    assert ready_hung["cache"] == "down"
    assert ready_after["cache"] == "up"
