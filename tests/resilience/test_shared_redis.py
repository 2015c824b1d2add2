"""Two gateway processes sharing one Redis: an invalidation through one is seen by the other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from adapters.sql import REFERENCE_QUERIES
from gateway.config import AgencyConfig, CacheConfig
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN
from tests.resilience.conftest import (
    MACHINE_REDIS,
    TAXES,
    GatewayProcess,
    changed_income,
    drop_namespace,
    execute,
    fetchval,
    gateway_toml,
    income,
    namespace,
)

NEW_INCOME = 987_654_321
PREMIUM = """query($rrn: String!) { resident(rrn: $rrn, purpose: HEALTH_INSURANCE) {
    insurance { monthlyPremium } } }"""


async def query(http: httpx.AsyncClient, bearer: str) -> dict[str, Any]:
    response = await http.post(
        "/graphql",
        json={"query": TAXES, "variables": {"rrn": HEAD_RRN}},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def nts_calls(http: httpx.AsyncClient, bearer: str) -> int:
    response = await http.post(
        "/graphql",
        json={"query": "{ agencies { code calls } }"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    [nts] = [a for a in response.json()["data"]["agencies"] if a["code"] == "nts"]
    calls: int = nts["calls"]
    return calls


async def test_an_invalidation_through_one_process_reaches_the_other(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    machine_redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    cache = CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace())
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(gateway_toml(agency_db, http_agencies, cache, agency_db.dsn))
    a = GatewayProcess(config_file, tmp_path / "a.log")
    b = GatewayProcess(config_file, tmp_path / "b.log")
    tester = token("tester")
    nts_system = token("agency_system", agency="nts")
    exit_codes: list[int | None] = []
    try:
        a.start()
        b.start()
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=10) as http_a,
            httpx.AsyncClient(base_url=b.url, timeout=10) as http_b,
        ):
            first = await query(http_b, tester)
            async with changed_income(agency_db.dsn, HEAD_RRN, 2025, NEW_INCOME) as old:
                cached = await query(http_b, tester)
                assert income(cached, 2025) == old  # B serves it from Redis
                via_a = await query(http_a, tester)
                assert income(via_a, 2025) == old  # and A finds B's entry there
                assert await nts_calls(http_a, tester) == 0

                response = await http_a.post(
                    "/events/invalidate",
                    json={"agency": "nts", "keys": [HEAD_RRN]},
                    headers={"Authorization": f"Bearer {nts_system}"},
                )
                assert response.status_code == 202, response.text
                started = time.monotonic()
                while income(latest := await query(http_b, tester), 2025) != NEW_INCOME:
                    assert time.monotonic() - started < 1, latest
                    await asyncio.sleep(0.02)
                assert time.monotonic() - started < 1
            assert await nts_calls(http_b, tester) == 2
        assert income(first, 2025) == old
    finally:
        exit_codes = [a.stop(), b.stop()]
        await drop_namespace(machine_redis, cache.namespace)
    assert exit_codes == [0, 0], (a.log_path.read_text(), b.log_path.read_text())


async def test_an_invalidation_reaches_a_read_in_flight_in_another_replica(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], machine_redis: aioredis.Redis
) -> None:
    # Two replicas share Redis. Replica B reads nhis, which reads the row at once and answers
    # 0.5 s later; meanwhile the row changes and nhis tells replica A (POST; LISTEN is off so
    # only the event says so). B's older answer must not land in the shared cache after A
    # dropped the record.
    slow = REFERENCE_QUERIES["insurance"].replace(" from ", ", pg_sleep(0.5) from ", 1)
    nhis = AgencyConfig(
        code="nhis",
        kind="sql",
        dsn=agency_db.dsn,
        settings={"listen": False, "queries": {"insurance": slow}},
    )
    cache = CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace())
    config = make_config(
        agency_db.dsn, http_agencies, cached=True, cache=cache, agencies={"nhis": nhis}
    )
    old: int = await fetchval(
        agency_db.dsn, "select monthly_premium from nhis.enrolments where rrn = $1", HEAD_RRN
    )
    new = old + 3000
    try:
        async with gateway_client(config) as a, gateway_client(config) as b:
            in_flight = asyncio.create_task(b.query(PREMIUM, {"rrn": HEAD_RRN}))
            await asyncio.sleep(0.2)
            await execute(
                agency_db.dsn,
                "update nhis.enrolments set monthly_premium = $2 where rrn = $1",
                HEAD_RRN,
                new,
            )
            response = await a.http.post(
                "/events/invalidate",
                json={"agency": "nhis", "keys": [HEAD_RRN]},
                headers={"Authorization": f"Bearer {token('agency_system', agency='nhis')}"},
            )
            read_before_change = await in_flight
            started = time.monotonic()
            while True:
                body = await b.query(PREMIUM, {"rrn": HEAD_RRN})
                served = body["data"]["resident"]["insurance"]["monthlyPremium"]
                if served == new or time.monotonic() - started > 1:
                    break
                await asyncio.sleep(0.05)
    finally:
        await execute(
            agency_db.dsn,
            "update nhis.enrolments set monthly_premium = $2 where rrn = $1",
            HEAD_RRN,
            old,
        )
        await drop_namespace(machine_redis, cache.namespace)
    assert response.status_code == 202, response.text
    assert read_before_change["data"]["resident"]["insurance"]["monthlyPremium"] == old
    assert served == new, "replica B cached its pre-change read after replica A's invalidation"
