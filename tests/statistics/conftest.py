"""Fixtures for the statistics tests: the demo policy on a store database of the module's own,
the session's seeded agencies (SQL: registry, nhis, nps; HTTP: nts, mma), and an analyst."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.config import StatisticsConfig
from tests.access.conftest import demo_gateway, scratch_store
from tests.conftest import GatewayClient, ScratchDatabase, token

ANALYST = token("analyst", agency="statistics", sub="analyst-kim")

STATISTICS = """
query Stats($measure: Measure!, $by: [Dimension!]!, $where: StatisticsFilter) {
  statistics(measure: $measure, by: $by, where: $where) {
    measure by threshold
    cells { key count suppressed }
    total { key count suppressed }
  }
}"""


@pytest.fixture(scope="module")
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    async with scratch_store(admin_dsn) as db:
        yield db


@pytest.fixture(scope="module")
async def analyst(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], store: ScratchDatabase
) -> AsyncIterator[GatewayClient]:
    """The gateway under the demo policy ([statistics] k = 10), as the analyst."""
    async with demo_gateway(agency_db, http_agencies, store) as gateway:
        yield gateway.as_(ANALYST)


@pytest.fixture(scope="module")
async def analyst_k1(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], store: ScratchDatabase
) -> AsyncIterator[GatewayClient]:
    """k = 1: only zero counts are small, so nearly every count is shown (for comparing
    with counts taken directly from the agencies' tables)."""
    async with demo_gateway(
        agency_db, http_agencies, store, statistics=StatisticsConfig(k=1)
    ) as gateway:
        yield gateway.as_(ANALYST)


async def statistics(
    client: GatewayClient,
    measure: str,
    by: list[str],
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The statistics table, after checking the response carries no error."""
    body = await client.query(STATISTICS, {"measure": measure, "by": by, "where": where})
    assert "errors" not in body, body
    table: dict[str, Any] = body["data"]["statistics"]
    return table
