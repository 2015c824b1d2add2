"""Single flight: concurrent requests for the same record make one agency call."""

from __future__ import annotations

import asyncio

from gateway.config import CacheConfig
from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import TAXES, Agent, http_agency


async def test_20_concurrent_requests_for_one_resident_make_one_agency_call(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent, cache: CacheConfig
) -> None:
    await nts.fault("ok", delay_ms=200)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache,
        agencies={"nts": http_agency("nts", nts.url)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.stats()
        bodies = await asyncio.gather(*(gateway.query(TAXES, {"rrn": HEAD_RRN}) for _ in range(20)))
        after = await nts.stats()
        gateway_calls = gateway.calls("nts")
    assert all(body == bodies[0] for body in bodies)
    assert len(bodies[0]["data"]["resident"]["taxes"]) == 2
    assert after["calls"] - before["calls"] == 1
    assert after["keys"] - before["keys"] == 1
    assert gateway_calls == 1
