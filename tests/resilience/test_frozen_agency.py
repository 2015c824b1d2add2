"""A frozen agency (its process stopped with SIGSTOP: connections accepted by the kernel,
never answered). The first request answers within the agency's timeout_ms + 10 %, and the
circuit is open within three requests; after that the agency is not asked at all."""

from __future__ import annotations

import os
import signal
import time

from gateway.demo.processes import AgencyProcess
from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN
from tests.resilience.conftest import TAXES, agency_status, codes, http_agency

TIMEOUT_MS = 1000


async def test_a_frozen_agency_times_out_once_and_opens_its_circuit_within_three_requests(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], nts_process: AgencyProcess
) -> None:
    # Defaults, but for the timeout: retries = 1, the default breaker.
    nts = http_agency("nts", nts_process.url, timeout_ms=TIMEOUT_MS, cache=False)
    config = make_config(agency_db.dsn, http_agencies, agencies={"nts": nts})
    assert nts_process.process is not None
    pid = nts_process.process.pid
    async with gateway_client(config) as gateway:
        warm = await gateway.query(TAXES, {"rrn": HEAD_RRN})  # a connection in the pool
        assert codes(warm) == []
        os.kill(pid, signal.SIGSTOP)
        try:
            took = []
            for _ in range(3):
                started = time.monotonic()
                body = await gateway.query(TAXES, {"rrn": HEAD_RRN})
                took.append(time.monotonic() - started)
                assert codes(body) == [(("resident", "taxes"), "AGENCY_TIMEOUT", "nts")]
                assert body["data"]["resident"]["name"] == "Kim Min-jun"  # the rest served
            status = await agency_status(gateway)
            started = time.monotonic()
            refused = await gateway.query(TAXES, {"rrn": HEAD_RRN})
            refused_in = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
    assert took[0] <= TIMEOUT_MS / 1000 * 1.1, took  # one attempt: no retry of a timeout
    assert all(t <= TIMEOUT_MS / 1000 * 1.1 for t in took), took
    assert status["nts"]["circuit"] == "open"
    assert codes(refused) == [(("resident", "taxes"), "AGENCY_UNAVAILABLE", "nts")]
    assert refused_in < 0.5, refused_in
