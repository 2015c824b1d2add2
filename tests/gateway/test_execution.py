"""Batching (one agency call per level) and concurrency (agencies called side by side)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.config import AgencyConfig
from gateway.demo.processes import AgencyProcess, demo_agency_headers
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN

HOUSEHOLD = """
query($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    household { members { name insurance { monthlyPremium } taxes { year arrears } } }
  }
}"""


def agency_stats(url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{url}/stats", headers=demo_agency_headers()).json()
    return stats


async def test_household_of_20_makes_one_call_per_agency(
    client: GatewayClient, http_agencies: dict[str, str]
) -> None:
    before = {a: client.calls(a) for a in ("registry", "nhis", "nts")}
    nts_before = agency_stats(http_agencies["nts"])
    result = await client.query(HOUSEHOLD, {"rrn": HEAD_RRN})
    members = result["data"]["resident"]["household"]["members"]
    assert len(members) == 20
    assert all(m["insurance"] and len(m["taxes"]) == 2 for m in members)
    calls = {a: client.calls(a) - before[a] for a in before}
    # registry: the resident, the household, then all 20 members in one batch.
    assert calls == {"registry": 3, "nhis": 1, "nts": 1}
    # The nts agency itself saw one request carrying all 20 keys.
    nts_after = agency_stats(http_agencies["nts"])
    assert nts_after["calls"] - nts_before["calls"] == 1
    assert nts_after["keys"] - nts_before["keys"] == 20


@pytest.fixture(scope="module")
def slow_http_agencies(agency_db: ScratchDatabase) -> Iterator[dict[str, str]]:
    with (
        AgencyProcess("nts", agency_db.dsn, delay_ms=100) as nts,
        AgencyProcess("mma", agency_db.dsn, delay_ms=100) as mma,
    ):
        yield {"nts": nts.url, "mma": mma.url}


async def test_agencies_of_one_resident_are_called_concurrently(
    agency_db: ScratchDatabase, slow_http_agencies: dict[str, str]
) -> None:
    from adapters.sql import REFERENCE_QUERIES

    def slow_sql(code: str, dataset: str) -> AgencyConfig:
        # Each SQL agency sleeps 100 ms in the database before answering.
        query = REFERENCE_QUERIES[dataset].replace(" from ", ", pg_sleep(0.1) from ", 1)
        return AgencyConfig(
            code=code,
            kind="sql",
            dsn=agency_db.dsn,
            settings={"queries": {dataset: query}},
        )

    config = make_config(
        agency_db.dsn,
        slow_http_agencies,
        agencies={
            "nhis": slow_sql("nhis", "insurance"),
            "nps": slow_sql("nps", "pension"),
            "registry": slow_sql("registry", "household"),
        },
    )
    query = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
        household { size } insurance { insuredType } taxes { year } pension { subscriberType }
        militaryService { status } } }"""
    async with gateway_client(config) as gateway:
        await gateway.query(query, {"rrn": HEAD_RRN})  # warm the connections
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            result = await gateway.query(query, {"rrn": HEAD_RRN})
            timings.append(time.perf_counter() - started)
            assert "errors" not in result
            assert result["data"]["resident"]["household"]["size"] == 20
    # Five agencies (registry household, nhis, nts, nps, mma) each take 100 ms: called one
    # after another that is 500 ms; side by side, a little over 100 ms.
    assert min(timings) < 0.3, timings
