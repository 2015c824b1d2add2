"""Invalidation: agencies tell the gateway what changed (POST /events/invalidate, or
PostgreSQL NOTIFY), and the next read is fresh."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.sql import REFERENCE_QUERIES
from gateway.config import CacheConfig
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config, token
from tests.data import BIG_HOUSEHOLD, HEAD_RRN
from tests.resilience.conftest import (
    TAXES,
    cache_of,
    changed_income,
    execute,
    fetchval,
    income,
    sql_agency,
    with_app_name,
)

NEW_INCOME = 123_456_789
PREMIUM = """query($rrn: String!) { resident(rrn: $rrn, purpose: HEALTH_INSURANCE) {
    insurance { monthlyPremium } } }"""


async def invalidate(gateway: GatewayClient, body: Any, bearer: str | None) -> httpx.Response:
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        return await gateway.http.post("/events/invalidate", content=body, headers=headers)
    return await gateway.http.post("/events/invalidate", json=body, headers=headers)


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["errors"][0]["extensions"]["code"]
    return code


async def test_invalidation_by_the_agency_makes_the_next_read_fresh(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    nts_system = token("agency_system", agency="nts")
    async with gateway_client(config) as gateway:
        first = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        async with changed_income(agency_db.dsn, HEAD_RRN, 2025, NEW_INCOME) as old:
            cached = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            response = await invalidate(gateway, {"agency": "nts", "keys": [HEAD_RRN]}, nts_system)
            fresh = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        calls = gateway.calls("nts")
    assert income(first, 2025) == old
    assert income(cached, 2025) == old  # the cache still holds the old record
    assert response.status_code == 202, response.text
    assert response.json() == {"agency": "nts", "keys": 1, "dropped": 1}
    assert income(fresh, 2025) == NEW_INCOME
    assert calls == 2


async def test_invalidation_takes_13_digit_rrns_and_datasets(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    nts_system = token("agency_system", agency="nts")
    async with gateway_client(config) as gateway:
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        async with changed_income(agency_db.dsn, HEAD_RRN, 2024, NEW_INCOME):
            response = await invalidate(
                gateway,
                {"agency": "nts", "keys": [HEAD_RRN.replace("-", "")], "datasets": ["taxes"]},
                nts_system,
            )
            fresh = await gateway.query(TAXES, {"rrn": HEAD_RRN})
    assert response.status_code == 202, response.text
    assert response.json()["dropped"] == 1
    assert income(fresh, 2024) == NEW_INCOME


async def test_refused_invalidations_drop_nothing(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache_of("memory"))
    async with gateway_client(config) as gateway:
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        async with changed_income(agency_db.dsn, HEAD_RRN, 2025, NEW_INCOME) as old:
            body = {"agency": "nts", "keys": [HEAD_RRN]}
            other_agency = await invalidate(gateway, body, token("agency_system", agency="nhis"))
            not_a_system = await invalidate(gateway, body, token("tester", agency="nts"))
            anonymous = await invalidate(gateway, body, None)
            after = await gateway.query(TAXES, {"rrn": HEAD_RRN})
    assert error_code(other_agency) == "FORBIDDEN"
    assert "nhis" in other_agency.json()["errors"][0]["message"]
    assert error_code(not_a_system) == "FORBIDDEN"
    assert anonymous.status_code == 401
    assert error_code(anonymous) == "UNAUTHENTICATED"
    assert income(after, 2025) == old  # nothing was dropped


async def test_a_refused_invalidation_is_not_an_http_success(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    # An agency system checks the HTTP status of its call; a refusal must not look like
    # success (the endpoint answers 202 when it worked, 400/401 for other failures).
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache_of("memory"))
    async with gateway_client(config) as gateway:
        body = {"agency": "nts", "keys": [HEAD_RRN]}
        other_agency = await invalidate(gateway, body, token("agency_system", agency="nhis"))
        not_a_system = await invalidate(gateway, body, token("tester", agency="nts"))
    assert error_code(other_agency) == "FORBIDDEN"
    assert (other_agency.status_code, not_a_system.status_code) == (403, 403)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'["nts"]',
        {"agency": "tax office", "keys": [HEAD_RRN]},
        {"keys": [HEAD_RRN]},
        {"agency": "nts", "keys": HEAD_RRN},
        {"agency": "nts", "keys": [1234]},
        {"agency": "nts", "keys": [HEAD_RRN], "datasets": ["insurance"]},
        {"agency": "nts", "keys": [HEAD_RRN], "datasets": "taxes"},
    ],
    ids=[
        "not-json",
        "array",
        "unknown-agency",
        "no-agency",
        "keys-not-a-list",
        "keys-not-strings",
        "dataset-of-another-agency",
        "datasets-not-a-list",
    ],
)
async def test_a_bad_invalidation_body_is_400(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], body: Any
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache_of("memory"))
    async with gateway_client(config) as gateway:
        response = await invalidate(gateway, body, token("agency_system", agency="nts"))
    assert response.status_code == 400, response.text
    assert error_code(response) == "BAD_REQUEST"


# --- LISTEN/NOTIFY --------------------------------------------------------------------------


async def listener_pid(dsn: str, app_name: str, not_pid: int = 0, within: float = 5) -> int:
    """The backend pid of the gateway's LISTEN connection, once it listens."""
    deadline = time.monotonic() + within
    while True:
        pid = await fetchval(
            dsn,
            """select pid from pg_stat_activity
               where application_name = $1 and query ilike 'LISTEN%' and pid <> $2
               and pid <> pg_backend_pid()""",
            app_name,
            not_pid,
        )
        if pid is not None:
            found: int = pid
            return found
        assert time.monotonic() < deadline, "the gateway's LISTEN connection did not show up"
        await asyncio.sleep(0.05)


async def premium_changes_within(
    gateway: GatewayClient, dsn: str, premium: int, within: float = 1.0
) -> float:
    """Set the head's premium in nhis, then poll the gateway until it serves it."""
    await execute(
        dsn, "update nhis.enrolments set monthly_premium = $2 where rrn = $1", HEAD_RRN, premium
    )
    started = time.monotonic()
    while True:
        body = await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
        elapsed = time.monotonic() - started
        if body["data"]["resident"]["insurance"]["monthlyPremium"] == premium:
            return elapsed
        assert elapsed < within, f"still {body} after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


@pytest.fixture
async def restore_premium(agency_db: ScratchDatabase) -> AsyncIterator[int]:
    old: int = await fetchval(
        agency_db.dsn, "select monthly_premium from nhis.enrolments where rrn = $1", HEAD_RRN
    )
    yield old
    await execute(
        agency_db.dsn,
        "update nhis.enrolments set monthly_premium = $2 where rrn = $1",
        HEAD_RRN,
        old,
    )


async def test_a_change_in_the_agency_database_is_served_within_a_second(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], restore_premium: int
) -> None:
    app_name = f"gwres_{secrets.token_hex(4)}"
    dsn = with_app_name(agency_db.dsn, app_name)
    config = make_config(dsn, http_agencies, cached=True, cache=cache_of("memory"))
    async with gateway_client(config) as gateway:
        await listener_pid(agency_db.dsn, app_name)
        cached = await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
        assert cached["data"]["resident"]["insurance"]["monthlyPremium"] == restore_premium
        await premium_changes_within(gateway, agency_db.dsn, restore_premium + 1000)
        # and it is served from the cache again afterwards
        calls = gateway.calls("nhis")
        await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
        assert gateway.calls("nhis") == calls


async def test_the_listener_reconnects_after_its_connection_is_killed(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], restore_premium: int
) -> None:
    app_name = f"gwres_{secrets.token_hex(4)}"
    dsn = with_app_name(agency_db.dsn, app_name)
    config = make_config(dsn, http_agencies, cached=True, cache=cache_of("memory"))
    async with gateway_client(config) as gateway:
        first_pid = await listener_pid(agency_db.dsn, app_name)
        await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
        await premium_changes_within(gateway, agency_db.dsn, restore_premium + 1)
        killed = await fetchval(agency_db.dsn, "select pg_terminate_backend($1::int)", first_pid)
        assert killed is True
        second_pid = await listener_pid(agency_db.dsn, app_name, not_pid=first_pid)
        assert second_pid != first_pid
        await premium_changes_within(gateway, agency_db.dsn, restore_premium + 2)


async def test_a_change_during_an_in_flight_read_is_not_lost(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], restore_premium: int
) -> None:
    # nhis reads its row at once, then takes 0.5 s to answer. The row changes (and NOTIFY
    # invalidates) while that answer is on its way: the old record must not stay cached.
    app_name = f"gwres_{secrets.token_hex(4)}"
    dsn = with_app_name(agency_db.dsn, app_name)
    slow_insurance = REFERENCE_QUERIES["insurance"].replace(" from ", ", pg_sleep(0.5) from ", 1)
    config = make_config(
        dsn,
        http_agencies,
        cached=True,
        cache=cache_of("memory"),
        agencies={
            "nhis": sql_agency("nhis", dsn, settings={"queries": {"insurance": slow_insurance}})
        },
    )
    new_premium = restore_premium + 5000
    async with gateway_client(config) as gateway:
        await listener_pid(agency_db.dsn, app_name)
        in_flight = asyncio.create_task(gateway.query(PREMIUM, {"rrn": HEAD_RRN}))
        await asyncio.sleep(0.2)
        await execute(
            agency_db.dsn,
            "update nhis.enrolments set monthly_premium = $2 where rrn = $1",
            HEAD_RRN,
            new_premium,
        )
        read_before_change = await in_flight
        changed_at = time.monotonic()
        while True:
            body = await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
            served = body["data"]["resident"]["insurance"]["monthlyPremium"]
            if served == new_premium or time.monotonic() - changed_at > 1.5:
                break
            await asyncio.sleep(0.05)
    assert read_before_change["data"]["resident"]["insurance"]["monthlyPremium"] == (
        restore_premium
    )
    assert served == new_premium, "the pre-change record stayed cached after its invalidation"


async def test_a_change_while_the_listener_is_reconnecting_is_not_lost(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], restore_premium: int
) -> None:
    # PostgreSQL does not keep notifications for a listener that is away: whatever changed
    # while the gateway was reconnecting must not stay cached as if nothing had.
    app_name = f"gwres_{secrets.token_hex(4)}"
    dsn = with_app_name(agency_db.dsn, app_name)
    admin = agency_db.admin_dsn
    config = make_config(dsn, http_agencies, cached=True, cache=cache_of("memory"))
    new_premium = restore_premium + 7000
    writer = await asyncpg.connect(agency_db.dsn)
    try:
        async with gateway_client(config) as gateway:
            first_pid = await listener_pid(admin, app_name)
            cached = await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
            assert cached["data"]["resident"]["insurance"]["monthlyPremium"] == restore_premium
            await execute(admin, f'alter database "{agency_db.name}" allow_connections false')
            try:
                await execute(admin, "select pg_terminate_backend($1::int)", first_pid)
                await asyncio.sleep(0.1)  # the listener is away, retrying
                await writer.execute(
                    "update nhis.enrolments set monthly_premium = $2 where rrn = $1",
                    HEAD_RRN,
                    new_premium,
                )
                await asyncio.sleep(0.2)
            finally:
                await execute(admin, f'alter database "{agency_db.name}" allow_connections true')
            await listener_pid(admin, app_name, not_pid=first_pid)
            started = time.monotonic()
            while True:
                body = await gateway.query(PREMIUM, {"rrn": HEAD_RRN})
                served = body["data"]["resident"]["insurance"]["monthlyPremium"]
                if served == new_premium or time.monotonic() - started > 1:
                    break
                await asyncio.sleep(0.05)
    finally:
        await writer.close()
    assert served == new_premium, "a change made while the listener was away stayed cached"


HOUSEHOLD_SIZE = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    household { size members { name } } } }"""


async def test_a_resident_moving_in_is_seen_in_the_household_within_a_second(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    # The registry changes registry.residents (household_id): its trigger NOTIFYs. The
    # household's member list is built from that table, so it must not stay cached.
    app_name = f"gwres_{secrets.token_hex(4)}"
    dsn = with_app_name(agency_db.dsn, app_name)
    config = make_config(dsn, http_agencies, cached=True, cache=cache_of("memory"))
    mover, home = await fetchrow_values(
        agency_db.dsn,
        """select rrn, household_id from registry.residents
           where household_id <> $1 and relationship <> 'HEAD' order by rrn limit 1""",
        BIG_HOUSEHOLD,
    )
    try:
        async with gateway_client(config) as gateway:
            await listener_pid(agency_db.dsn, app_name)
            before = await gateway.query(HOUSEHOLD_SIZE, {"rrn": HEAD_RRN})
            await execute(
                agency_db.dsn,
                "update registry.residents set household_id = $2 where rrn = $1",
                mover,
                BIG_HOUSEHOLD,
            )
            started = time.monotonic()
            while True:
                body = await gateway.query(HOUSEHOLD_SIZE, {"rrn": HEAD_RRN})
                size = body["data"]["resident"]["household"]["size"]
                if size == 21 or time.monotonic() - started > 1:
                    break
                await asyncio.sleep(0.05)
    finally:
        await execute(
            agency_db.dsn,
            "update registry.residents set household_id = $2 where rrn = $1",
            mover,
            home,
        )
    assert before["data"]["resident"]["household"]["size"] == 20
    assert size == 21, "the household's cached member list ignored the move"


async def fetchrow_values(dsn: str, sql: str, *args: Any) -> tuple[Any, ...]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(sql, *args)
    finally:
        await conn.close()
    assert row is not None
    return tuple(row.values())
