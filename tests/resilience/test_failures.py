"""Agencies that die, stall, fail or talk nonsense: coded errors naming the agency, the rest
of the response served, bounded retries, a circuit breaker and a FIFO concurrency limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway.config import LimitsConfig
from gateway.demo.processes import AgencyProcess
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import (
    HOUSEHOLD_RRNS,
    TAXES,
    Agent,
    agency_status,
    codes,
    http_agency,
    readyz,
)


def served_except_taxes(body: dict[str, Any]) -> None:
    person = body["data"]["resident"]
    assert person["name"] == "Kim Min-jun"
    assert person["insurance"] == {"insuredType": "EMPLOYEE"}
    assert person["taxes"] is None


async def test_an_agency_killed_mid_run_is_unavailable_and_the_rest_is_served(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    with AgencyProcess("nts", agency_db.dsn) as doomed:
        config = make_config(agency_db.dsn, {**http_agencies, "nts": doomed.url}, cached=False)
        async with gateway_client(config) as gateway:
            alive = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            doomed.stop()
            dead = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            ready = await readyz(gateway)
            status = await agency_status(gateway)
    assert len(alive["data"]["resident"]["taxes"]) == 2
    assert "errors" not in alive
    served_except_taxes(dead)
    assert codes(dead) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
    assert ready["agencies"]["nts"] == "down"  # /readyz is open: states only
    assert status["nts"]["reachable"] is False
    assert status["nts"]["failures"] >= 1


async def test_a_slow_agency_times_out_within_about_its_timeout(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("ok", delay_ms=2000)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, timeout_ms=300, retries=0, cache=False)},
    )
    async with gateway_client(config) as gateway:
        await gateway.query("{ agencies { code } }")  # warm up the app
        started = time.monotonic()
        body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        elapsed = time.monotonic() - started
    served_except_taxes(body)
    assert codes(body) == [(("resident", "taxes"), "AGENCY_TIMEOUT", "nts")]
    assert "300 ms" in body["errors"][0]["message"]
    assert 0.28 <= elapsed < 1.5, elapsed  # 2 s if the timeout were not applied


@pytest.mark.parametrize("fault", ["error", "garbage"])
async def test_errors_and_garbage_are_unavailable(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent, fault: str
) -> None:
    await nts.fault(fault)
    config = make_config(
        agency_db.dsn, http_agencies, agencies={"nts": http_agency("nts", nts.url, cache=False)}
    )
    async with gateway_client(config) as gateway:
        body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        status = await gateway.query("{ agencies { code lastError } }")
    served_except_taxes(body)
    assert codes(body) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
    [nts_status] = [a for a in status["data"]["agencies"] if a["code"] == "nts"]
    assert nts_status["lastError"]


async def test_a_failing_agency_is_attempted_retries_plus_one_times(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("error")
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, retries=2, cache=False)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.calls()
        body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        attempts = await nts.calls() - before
        status = await gateway.query("{ agencies { code retries calls } }")
    assert codes(body) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
    assert attempts == 3
    [nts_status] = [a for a in status["data"]["agencies"] if a["code"] == "nts"]
    assert nts_status == {"code": "nts", "retries": 2, "calls": 3}


async def test_a_timed_out_attempt_is_not_retried_by_default(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("ok", delay_ms=1500)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, timeout_ms=300, retries=3, cache=False)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.calls()
        started = time.monotonic()
        body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        elapsed = time.monotonic() - started
        status = await gateway.query("{ agencies { code retries calls } }")
    served_except_taxes(body)
    assert codes(body) == [(("resident", "taxes"), "AGENCY_TIMEOUT", "nts")]
    assert elapsed < 0.9, elapsed  # one attempt of 300 ms, not four
    [nts_status] = [a for a in status["data"]["agencies"] if a["code"] == "nts"]
    assert nts_status == {"code": "nts", "retries": 0, "calls": 1}
    assert await nts.calls() - before <= 1


async def test_retries_never_run_past_the_request_deadline(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("ok", delay_ms=2000)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        limits=LimitsConfig(request_timeout_ms=700),
        agencies={
            "nts": http_agency(
                "nts",
                nts.url,
                timeout_ms=300,
                retries=20,
                cache=False,
                # retries end by the deadline alone (timeouts are retried only on request)
                settings={"breaker_threshold": 100, "retry_timeouts": True},
            )
        },
    )
    async with gateway_client(config) as gateway:
        await gateway.query("{ agencies { code } }")
        started = time.monotonic()
        body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        elapsed = time.monotonic() - started
    served_except_taxes(body)
    assert codes(body) == [(("resident", "taxes"), "AGENCY_TIMEOUT", "nts")]
    # 21 attempts of 300 ms would take over 6 s; the request's deadline is 700 ms.
    assert 0.55 <= elapsed < 1.6, elapsed


async def test_the_circuit_opens_fails_fast_half_opens_and_closes(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("error")
    breaker = {"breaker_threshold": 3, "breaker_reset_s": 1}
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, retries=0, cache=False, settings=breaker)},
    )
    async with gateway_client(config) as gateway:
        before = await nts.calls()
        for _ in range(3):
            failed = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            assert codes(failed) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
        assert await nts.calls() - before == 3
        assert (await agency_status(gateway))["nts"]["circuit"] == "open"

        opened = await nts.calls()
        started = time.monotonic()
        refused = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        refused_in = time.monotonic() - started
        served_except_taxes(refused)
        assert codes(refused) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
        assert await nts.calls() == opened  # not asked at all
        assert refused_in < 0.5, refused_in
        status = await gateway.query("{ agencies { code circuit } }")
        assert {"code": "nts", "circuit": "open"} in status["data"]["agencies"]

        await asyncio.sleep(1.05)
        assert (await agency_status(gateway))["nts"]["circuit"] == "half-open"
        await nts.fault("ok")
        probed = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert "errors" not in probed, probed
        assert len(probed["data"]["resident"]["taxes"]) == 2
        assert await nts.calls() == opened + 1
        assert (await agency_status(gateway))["nts"]["circuit"] == "closed"


async def test_a_failed_probe_opens_the_circuit_again(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("error")
    breaker = {"breaker_threshold": 2, "breaker_reset_s": 0.6}
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={"nts": http_agency("nts", nts.url, retries=0, cache=False, settings=breaker)},
    )
    async with gateway_client(config) as gateway:
        for _ in range(2):
            await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert (await agency_status(gateway))["nts"]["circuit"] == "open"
        await asyncio.sleep(0.65)
        before = await nts.calls()
        probe = await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert codes(probe) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
        assert await nts.calls() == before + 1  # one probe, no retry storm
        assert (await agency_status(gateway))["nts"]["circuit"] == "open"
        await gateway.query(TAXES, {"rrn": HEAD_RRN})
        assert await nts.calls() == before + 1


async def timed(gateway: GatewayClient, rrn: str, started: float) -> tuple[float, Any]:
    body = await gateway.query(TAXES, {"rrn": rrn})
    return time.monotonic() - started, body


async def test_at_most_max_concurrency_batches_are_in_flight(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    await nts.fault("ok", delay_ms=600)
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={
            "nts": http_agency(
                "nts", nts.url, max_concurrency=2, timeout_ms=8000, retries=0, cache=False
            )
        },
    )
    rrns = HOUSEHOLD_RRNS[:6]  # six residents: no single flight between them
    async with gateway_client(config) as gateway:
        await gateway.query("{ agencies { code } }")
        before = await nts.stats()
        started = time.monotonic()
        results = await asyncio.gather(*(timed(gateway, rrn, started) for rrn in rrns))
        after = await nts.stats()
    assert all("errors" not in body for _, body in results), results
    # Two batches go at once; the four requests that find both slots busy wait together
    # and go as one merged batch when a slot frees: three calls carrying six keys.
    assert after["calls"] - before["calls"] == 3
    assert after["keys"] - before["keys"] == 6
    done = sorted(elapsed for elapsed, _ in results)
    # 600 ms a call, two at a time: two done after about 0.6 s, the merged four after 1.2 s.
    # Six at a time would finish all together after about 0.6 s. The gap between the second
    # and the third answer is one call's delay, however slow the (shared, noisy) machine is.
    assert done[2] - done[1] >= 0.4, done
    assert done[-1] >= 1.1, done


async def test_waiting_for_the_concurrency_limit_does_not_open_the_circuit(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts: Agent
) -> None:
    # nts answers every call in 200 ms, well within its 500 ms timeout. A burst of six
    # requests queues behind max_concurrency = 1 in the gateway; time spent in the
    # gateway's own queue is not the agency failing, and must not open its circuit.
    await nts.fault("ok", delay_ms=200)
    breaker = {"breaker_threshold": 2, "breaker_reset_s": 30}
    config = make_config(
        agency_db.dsn,
        http_agencies,
        agencies={
            "nts": http_agency(
                "nts",
                nts.url,
                max_concurrency=1,
                timeout_ms=500,
                retries=0,
                cache=False,
                settings=breaker,
            )
        },
    )
    async with gateway_client(config) as gateway:
        await gateway.query("{ agencies { code } }")
        burst = await asyncio.gather(
            *(gateway.query(TAXES, {"rrn": rrn}) for rrn in HOUSEHOLD_RRNS[:6])
        )
        ready = await agency_status(gateway)
        later = await gateway.query(TAXES, {"rrn": HEAD_RRN})
    served = sum(body["data"]["resident"]["taxes"] is not None for body in burst)
    assert served >= 2, burst  # the first ones were answered
    assert ready["nts"]["circuit"] == "closed", ready["nts"]
    assert codes(later) == [], later["errors"]
