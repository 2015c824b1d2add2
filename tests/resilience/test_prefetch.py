"""Prefetch: once a resident object is known, every agency dataset its plan selects is
requested in one concurrent wave; a household of N members is still one call per agency."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from gateway.demo.processes import AgencyProcess
from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import HOUSEHOLD_RRNS, Agent, http_agency

HOUSEHOLD = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name household { size members { rrn insurance { insuredType } pension { subscriberType }
      taxes { year } militaryService { status } } } } }"""
DELAY_MS = 1500


@pytest.fixture(scope="module")
def mma_process(agency_db: ScratchDatabase) -> Iterator[AgencyProcess]:
    with AgencyProcess("mma", agency_db.dsn) as process:
        yield process


async def test_a_household_is_one_call_per_agency_and_its_agencies_are_asked_at_once(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent,
    mma_process: AgencyProcess,
) -> None:  # fmt: skip
    mma = Agent(mma_process.url)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={
            code: http_agency(code, agent.url, timeout_ms=5000, retries=0, cache=False)
            for code, agent in (("nts", nts), ("mma", mma))
        },
    )
    n = len(HOUSEHOLD_RRNS)
    assert n >= 10
    async with gateway_client(config) as gateway:
        await gateway.query("{ agencies { code } }")
        before = {code: gateway.calls(code) for code in ("registry", "nhis", "nps", "nts", "mma")}
        agency_before = {"nts": await nts.stats(), "mma": await mma.stats()}
        try:
            for agent in (nts, mma):
                await agent.fault("ok", delay_ms=DELAY_MS)
            started = time.monotonic()
            body = await gateway.query(HOUSEHOLD, {"rrn": HEAD_RRN})
            elapsed = time.monotonic() - started
        finally:
            await mma.fault("ok")
        after = {code: gateway.calls(code) for code in before}
        agency_after = {"nts": await nts.stats(), "mma": await mma.stats()}
    assert "errors" not in body, body
    members = body["data"]["resident"]["household"]["members"]
    assert len(members) == n
    assert all(m["taxes"] is not None for m in members)
    assert any(m["militaryService"] for m in members)
    # registry: the head, the household, then its members (one batch); every other agency
    # once for all N members.
    assert {code: after[code] - before[code] for code in before} == {
        "registry": 3, "nhis": 1, "nps": 1, "nts": 1, "mma": 1,
    }  # fmt: skip
    for code in ("nts", "mma"):
        assert agency_after[code]["calls"] - agency_before[code]["calls"] == 1
        assert agency_after[code]["keys"] - agency_before[code]["keys"] == n
    # Both slow agencies were asked in the same wave: one after the other would take at
    # least 2 x 1.5 s.
    assert DELAY_MS / 1000 <= elapsed < 2 * DELAY_MS / 1000 - 0.4, elapsed
