"""Two gateway processes on one PostgreSQL and one Redis, under concurrent load: the audit
trail stays one verifiable chain with exactly one row per resident disclosed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from gateway.audit import AuditKeys, verify
from gateway.config import CacheConfig
from tests.conftest import TEST_AUDIT_KEY, ScratchDatabase, create_database, drop_database, token
from tests.resilience.conftest import (
    HOUSEHOLD_RRNS,
    MACHINE_REDIS,
    GatewayProcess,
    drop_namespace,
    gateway_toml,
    namespace,
)

QUERY = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name insurance { insuredType } taxes { year } } }"""
PER_REPLICA = 60


@pytest.fixture
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    """A gateway store of their own, new: both replicas create its tables at once."""
    db = await create_database(admin_dsn)
    try:
        yield db
    finally:
        await drop_database(db)


async def test_two_replicas_keep_one_verifiable_trail(
    store: ScratchDatabase,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    machine_redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    cache = CacheConfig(backend="redis", url=MACHINE_REDIS, namespace=namespace())
    config_file = tmp_path / "gateway.toml"
    config_file.write_text(
        gateway_toml(agency_db, http_agencies, cache, store.dsn)
        + "[limits]\nrate_requests = 0\nrate_cost = 0\n"
    )
    replicas = [GatewayProcess(config_file, tmp_path / f"{n}.log") for n in "ab"]
    headers = {"Authorization": f"Bearer {token('tester')}"}
    try:
        for replica in replicas:
            replica.start()
        await asyncio.gather(*(replica.wait_ready(within=60) for replica in replicas))
        async with httpx.AsyncClient(timeout=30) as http:

            async def ask(url: str, n: int) -> Any:
                rrn = HOUSEHOLD_RRNS[n % len(HOUSEHOLD_RRNS)]
                body = {"query": QUERY, "variables": {"rrn": rrn}}
                response = await http.post(f"{url}/graphql", json=body, headers=headers)
                assert response.status_code == 200, response.text
                return response.json()

            results = await asyncio.gather(
                *(ask(r.url, n) for n in range(PER_REPLICA) for r in replicas)
            )
    finally:
        exit_codes = [replica.stop() for replica in replicas]
        await drop_namespace(machine_redis, cache.namespace)
    assert [r["errors"] for r in results if "errors" in r] == []
    assert all(r["data"]["resident"]["name"] for r in results)
    conn = await asyncpg.connect(store.dsn)
    try:
        verdict = await verify(conn, AuditKeys(TEST_AUDIT_KEY))
        rows = await conn.fetchval(
            "select count(*) from gateway.audit_log where purpose = 'WELFARE_ELIGIBILITY'"
        )
    finally:
        await conn.close()
    assert verdict.problems == []
    assert rows == len(results) == 2 * PER_REPLICA  # one row per disclosure, none lost
    assert verdict.checked >= rows
    assert exit_codes == [0, 0], [r.log_path.read_text() for r in replicas]
