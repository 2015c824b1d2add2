"""Caches hold records, never decisions: a consent revoked while the record sits in the
cache stops the next read."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from gateway.config import DatabaseConfig, PolicyConfig
from gateway.runtime import DEMO_POLICY
from tests.conftest import (
    ScratchDatabase,
    create_database,
    drop_database,
    gateway_client,
    make_config,
    token,
)
from tests.data import HEAD_RRN
from tests.resilience.conftest import Agent, cache_of, codes, http_agency

OFFICER_READS = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name taxes { year reportedIncome } } }"""


@pytest.fixture
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    db = await create_database(admin_dsn, prefix="gwresil")
    try:
        yield db
    finally:
        await drop_database(db)


async def test_a_revoked_consent_stops_reads_of_cached_records(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    store: ScratchDatabase,
    nts: Agent,
) -> None:
    config = make_config(
        agency_db.dsn,
        {**http_agencies, "nts": nts.url},
        cached=True,
        cache=cache_of("memory"),
        policy=PolicyConfig(file=str(DEMO_POLICY)),
        agencies={"nts": http_agency("nts", nts.url)},
    )
    config = dataclasses.replace(config, database=DatabaseConfig(url=store.dsn))
    async with gateway_client(config) as gateway:
        citizen = gateway.as_(token("citizen", rrn=HEAD_RRN, sub="citizen-head"))
        officer = gateway.as_(token("welfare_officer", agency="welfare", sub="officer-1"))

        before_consent = await officer.query(OFFICER_READS, {"rrn": HEAD_RRN})
        granted = await citizen.query(
            """mutation { grantConsent(purpose: WELFARE_ELIGIBILITY, agency: "welfare", days: 1)
                 { id active } }"""
        )
        consent = granted["data"]["grantConsent"]
        first = await officer.query(OFFICER_READS, {"rrn": HEAD_RRN})
        nts_before = await nts.calls()
        cached = await officer.query(OFFICER_READS, {"rrn": HEAD_RRN})
        revoked = await citizen.query(
            "mutation($id: ID!) { revokeConsent(id: $id) { active } }", {"id": consent["id"]}
        )
        after = await officer.query(OFFICER_READS, {"rrn": HEAD_RRN})
        nts_after = await nts.calls()

    assert codes(before_consent) == [(("resident", "taxes"), "CONSENT_REQUIRED", None)]
    assert consent["active"] is True
    assert "errors" not in first, first
    assert len(first["data"]["resident"]["taxes"]) == 2
    assert cached == first
    assert nts_after == nts_before  # the record was served from the cache, then not needed
    assert revoked["data"]["revokeConsent"] == {"active": False}
    assert after["data"]["resident"] == {"name": "Kim Min-jun", "taxes": None}
    assert codes(after) == [(("resident", "taxes"), "CONSENT_REQUIRED", None)]
