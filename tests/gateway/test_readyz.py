"""/readyz is open to anyone (load balancers call it): a flood of it must not become a flood of
database queries and agency pings."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.observability.test_tracing import recording_server
from tests.resilience.conftest import http_agency


async def test_concurrent_readyz_calls_share_one_check(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    pings: list[int] = []

    async def healthz(request: Request) -> Response:
        pings.append(1)
        return JSONResponse({"status": "ok"})

    state: dict[str, Any] = {}
    with recording_server([Route("/healthz", healthz)], state) as url:
        config = make_config(
            agency_db.dsn, http_agencies, agencies={"nts": http_agency("nts", url)}
        )
        async with gateway_client(config) as gateway:
            answers = await asyncio.gather(*(gateway.http.get("/readyz") for _ in range(60)))
            assert {a.status_code for a in answers} == {200}
            assert all(a.json()["agencies"]["nts"] == "up" for a in answers)
            flooded = len(pings)
            again = await gateway.http.get("/readyz")  # a later call checks again
            assert again.json()["status"] == "ready"
    assert flooded <= 10, flooded  # a few checks in flight one after another, not 60
    assert len(pings) > flooded
