"""Two gateway processes (``gateway serve`` in child processes) sharing one Redis: a document
registered through one runs by hash through the other, and one rate limit holds across both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from gateway.config import CacheConfig
from tests.conftest import ScratchDatabase, token
from tests.resilience.conftest import (
    MACHINE_REDIS,
    GatewayProcess,
    drop_namespace,
    gateway_toml,
    namespace,
)
from tests.safety.test_persisted import AGENCIES, AGENCIES_HASH, apq

LIMIT = 10


async def test_two_processes_share_persisted_documents_and_one_rate_limit(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    machine_redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    cache = CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace())
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(
        gateway_toml(agency_db, http_agencies, cache, agency_db.dsn)
        + f'[limits]\nrate_requests = {LIMIT}\nrate_cost = 0\n[persisted]\nmode = "apq"\n'
    )
    a = GatewayProcess(config_file, tmp_path / "a.log")
    b = GatewayProcess(config_file, tmp_path / "b.log")
    headers = {"Authorization": f"Bearer {token('tester')}"}
    try:
        a.start()
        b.start()
        await asyncio.gather(a.wait_ready(), b.wait_ready())
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=10) as via_a,
            httpx.AsyncClient(base_url=b.url, timeout=10) as via_b,
        ):
            unknown = await via_b.post("/graphql", json=apq(AGENCIES_HASH), headers=headers)
            registered = await via_a.post(
                "/graphql", json=apq(AGENCIES_HASH, AGENCIES), headers=headers
            )
            by_hash = await via_b.post("/graphql", json=apq(AGENCIES_HASH), headers=headers)
            # Three requests so far; 20 more at once, split over both processes.
            burst = await asyncio.gather(
                *(
                    http.post("/graphql", json=apq(AGENCIES_HASH), headers=headers)
                    for http in [via_a, via_b] * 10
                )
            )
    finally:
        exit_codes = [a.stop(), b.stop()]
        await drop_namespace(machine_redis, cache.namespace)
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert registered.status_code == 200, registered.text
    assert by_hash.status_code == 200, by_hash.text
    assert by_hash.json()["data"] == registered.json()["data"]
    statuses = [r.status_code for r in burst]
    assert statuses.count(200) == LIMIT - 3
    assert statuses.count(429) == 20 - (LIMIT - 3)
    assert exit_codes == [0, 0], (a.log_path.read_text(), b.log_path.read_text())
