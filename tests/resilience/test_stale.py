"""Stale data, said out loud: served while its agency fails, always listed in
``extensions.provenance`` with ``stale: true``; never served past ``stale_ttl_s``."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from gateway.config import CacheConfig
from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import TAXES, Agent, agency_status, codes, http_agency

EVERY_AGENCY = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    name
    household { size members { name } }
    insurance { monthlyPremium }
    taxes { year reportedIncome }
    pension { monthsContributed }
    militaryService { status } } }"""


def as_of(entry: dict[str, Any]) -> float:
    parsed = dt.datetime.fromisoformat(entry["asOf"])
    assert parsed.tzinfo is not None, entry["asOf"]
    return parsed.timestamp()


async def test_stale_taxes_are_served_and_listed_unasked(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent, cache: CacheConfig
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache,
        agencies={"nts": http_agency("nts", nts.url, cache_ttl_s=1, stale_ttl_s=600, retries=0)},
    )
    async with gateway_client(config) as gateway:
        fetched_from = time.time()
        fresh = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        fetched_until = time.time()
        await asyncio.sleep(1.1)
        await nts.fault("error")
        before = await nts.calls()
        stale = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        asked = await nts.calls() - before
        ready = (await agency_status(gateway))["nts"]
        status = await gateway.query(
            "{ agencies { code circuit cacheHitRatio staleServed lastError } }"
        )

    assert "extensions" not in fresh  # fresh data, provenance not asked for
    assert asked == 1  # the agency was asked (and failed) before the old value was served
    assert "errors" not in stale, stale
    assert stale["data"] == fresh["data"]
    [entry] = stale["extensions"]["provenance"]
    assert {k: v for k, v in entry.items() if k != "asOf"} == {
        "path": ["resident", "taxes"],
        "agency": "nts",
        "stale": True,
    }
    # asOf is a bound ("read from the agency no earlier than"), never the read time itself:
    # the start of the minute stale_ttl_s (600 s) ago.
    assert as_of(entry) <= fetched_from
    assert fetched_from - 660 <= as_of(entry) <= fetched_until + 2 - 600

    assert ready["circuit"] == "closed"
    assert ready["cache"] == cache.backend
    assert ready["cacheHitRatio"] == 0.0  # two lookups, neither fresh
    assert ready["failures"] >= 1
    [nts_status] = [a for a in status["data"]["agencies"] if a["code"] == "nts"]
    assert nts_status["staleServed"] == 1
    assert nts_status["cacheHitRatio"] == 0.0
    assert nts_status["circuit"] == "closed"
    assert "500" in nts_status["lastError"]


async def test_fresh_provenance_lists_every_agency_backed_path(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], cache: CacheConfig
) -> None:
    config = make_config(agency_db.dsn, http_agencies, cached=True, cache=cache)
    async with gateway_client(config) as gateway:
        unasked = await gateway.query(EVERY_AGENCY, {"rrn": HEAD_RRN})
        started = time.time()
        cold = await gateway.query(EVERY_AGENCY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
        warm = await gateway.query(EVERY_AGENCY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
        finished = time.time()
    assert "errors" not in unasked, unasked
    assert "extensions" not in unasked
    members: list[tuple[Any, ...]] = [("resident", "household", "members", i) for i in range(20)]
    expected: dict[tuple[Any, ...], str] = {
        ("resident",): "registry",
        ("resident", "household"): "registry",
        **dict.fromkeys(members, "registry"),
        ("resident", "insurance"): "nhis",
        ("resident", "taxes"): "nts",
        ("resident", "pension"): "nps",
        ("resident", "militaryService"): "mma",
    }
    for body in (cold, warm):
        entries = body["extensions"]["provenance"]
        assert {tuple(e["path"]): e["agency"] for e in entries} == expected
        assert len(entries) == len(expected)
        assert all(e["stale"] is False for e in entries), entries
        # asOf is the same bound for a cache hit and a fresh read (cache_ttl_s ago, to the
        # minute): it never tells when the first, unasked query read the agencies.
        ttl = config.agencies["nts"].cache_ttl_s
        bounds = {(started - ttl) // 60 * 60, (finished - ttl) // 60 * 60}
        assert all(as_of(e) in bounds for e in entries), entries
    assert warm["data"] == cold["data"] == unasked["data"]


async def test_nothing_stale_is_served_past_stale_ttl(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent, cache: CacheConfig
) -> None:
    config = make_config(
        agency_db.dsn,
        http_agencies,
        cached=True,
        cache=cache,
        agencies={"nts": http_agency("nts", nts.url, cache_ttl_s=1, stale_ttl_s=2, retries=0)},
    )
    async with gateway_client(config) as gateway:
        fresh = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        await asyncio.sleep(2.1)
        await nts.fault("error")
        failed = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        status = await gateway.query("{ agencies { code staleServed } }")
    assert len(fresh["data"]["resident"]["taxes"]) == 2
    assert failed["data"]["resident"]["taxes"] is None
    assert codes(failed) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
    assert "extensions" not in failed
    assert {"code": "nts", "staleServed": 0} in status["data"]["agencies"]
