"""An agency's answer is read within bounds (adapters.bounded): at most max_response_bytes,
and whole within timeout_ms, also after the gateway gave up on it. Real streaming servers on
127.0.0.1 (uvicorn): an endless body, a trickled one, a compressed one, and the same from a
token endpoint and a GraphQL subgraph."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from adapters.base import AgencyFailure
from adapters.bounded import DEFAULT_MAX_RESPONSE_BYTES, AnswerTimeout
from adapters.http import HTTPAdapter
from adapters.records import DATASETS
from adapters.subgraph import SubgraphAdapter
from gateway.config import AgencyConfig
from tests.adapters.tls_servers import serve
from tests.conftest import ScratchDatabase, gateway_client, make_config
from tests.data import HEAD_RRN

TAXES = DATASETS["taxes"]
KEYS = ["900101-1234567"]
MIB = 1 << 20


@dataclass
class Flood:
    """How the server answers (``mode``), and what it sent."""

    #: flood: 1 MiB every 10 ms (128 MiB in all); trickle: a byte every 50 ms (for 15 s)
    mode: str = "flood"
    sent: int = 0
    closed: list[float] = field(default_factory=list)  # when an answer's stream ended

    async def body(self, opening: bytes) -> AsyncIterator[bytes]:
        chunk, pause, count = (b" " * MIB, 0.01, 128)
        if self.mode != "flood":
            chunk, pause, count = (b" ", 0.05, 300)
        try:
            yield opening
            for _ in range(count):
                self.sent += len(chunk)
                yield chunk
                await asyncio.sleep(pause)
        finally:  # the client closed the connection (or the stream ran out)
            self.closed.append(time.monotonic())


def flood_app(flood: Flood) -> Starlette:
    async def batch(request: Request) -> Response:
        if flood.mode == "gzip":
            packed = gzip.compress(json.dumps({"records": [None]}).encode())
            return Response(packed, headers={"content-encoding": "gzip"})
        return StreamingResponse(flood.body(b'{"records": ['), media_type="application/json")

    async def token(request: Request) -> Response:
        if flood.mode == "token-ok":
            return JSONResponse({"access_token": "t" * 40, "expires_in": 3600})
        return StreamingResponse(flood.body(b'{"access_token": "'), media_type="application/json")

    async def graphql(request: Request) -> Response:
        return StreamingResponse(flood.body(b'{"data": {"_entities": ['))

    return Starlette(
        routes=[
            Route("/v1/{dataset}:batch", batch, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/graphql", graphql, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def flood() -> Flood:
    return Flood()


@pytest.fixture(autouse=True)
def _fresh(flood: Flood) -> None:
    flood.mode, flood.sent, flood.closed[:] = "flood", 0, []


@pytest.fixture(scope="module")
def url(flood: Flood) -> Iterator[str]:
    with serve(flood_app(flood)) as base:
        yield base


async def stops_reading(flood: Flood) -> int:
    """What the server had sent once its stream ended (at most 5 s from now)."""
    for _ in range(500):
        if flood.closed:
            return flood.sent
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server is still sending after {flood.sent >> 20} MiB")


async def test_an_endless_answer_fails_at_the_cap_and_is_not_read_further(
    url: str, flood: Flood
) -> None:
    async with HTTPAdapter("nts", {"url": url, "max_response_bytes": 2 * MIB}) as agency:
        with pytest.raises(AgencyFailure, match=r"^nts answered more than 2097152 bytes"):
            await agency.fetch(TAXES, KEYS)
    assert await stops_reading(flood) < 64 * MIB


async def test_the_default_cap_is_16_mib(url: str, flood: Flood) -> None:
    assert DEFAULT_MAX_RESPONSE_BYTES == 16 * MIB
    async with HTTPAdapter("nts", {"url": url, "timeout_ms": 30_000}) as agency:
        with pytest.raises(AgencyFailure, match=r"more than 16777216 bytes \(max_response_bytes\)"):
            await agency.fetch(TAXES, KEYS)
    assert await stops_reading(flood) < 64 * MIB


async def test_a_trickled_answer_fails_at_the_deadline(url: str, flood: Flood) -> None:
    # A byte every 50 ms: never idle for httpx's 300 ms read timeout.
    flood.mode = "trickle"
    started = time.monotonic()
    async with HTTPAdapter("nts", {"url": url, "timeout_ms": 300}) as agency:
        with pytest.raises(AnswerTimeout, match=r"^nts did not answer whole within 300 ms"):
            await agency.fetch(TAXES, KEYS)
    assert time.monotonic() - started < 5  # without the deadline: 15 s
    await stops_reading(flood)


async def test_an_abandoned_request_still_ends_at_its_deadline(url: str, flood: Flood) -> None:
    # The caller gives up after 100 ms; the request (never cancelled by its caller, see
    # HTTPClientAdapter._send) goes on reading, but only until its own deadline.
    flood.mode = "trickle"
    async with HTTPAdapter("nts", {"url": url, "timeout_ms": 500}) as agency:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agency.fetch(TAXES, KEYS), 0.1)
        await stops_reading(flood)
        assert not agency._requests  # nothing left running


async def test_a_compressed_answer_is_refused(url: str, flood: Flood) -> None:
    flood.mode = "gzip"
    async with HTTPAdapter("nts", {"url": url}) as agency:
        with pytest.raises(AgencyFailure, match=r"^nts answered compressed content \(gzip\)"):
            await agency.fetch(TAXES, KEYS)


@pytest.mark.parametrize("mode", ["flood", "trickle"])
async def test_a_token_endpoint_answer_is_bounded_too(
    url: str, flood: Flood, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CLIENT_SECRET", "client-secret-value")
    flood.mode = mode
    settings = {
        "url": url,
        "timeout_ms": 500,
        "oauth2_token_url": f"{url}/token",
        "oauth2_client_id": "gw",
        "oauth2_client_secret": "env:TEST_CLIENT_SECRET",
    }
    expected = {
        "flood": r"^nts: its token endpoint answered more than 65536 bytes$",
        "trickle": r"^nts: its token endpoint did not answer whole within 500 ms",
    }[mode]
    async with HTTPAdapter("nts", settings) as agency:
        with pytest.raises(AgencyFailure, match=expected):
            await agency.fetch(TAXES, KEYS)
    await stops_reading(flood)


async def test_a_subgraph_answer_is_bounded(url: str, flood: Flood) -> None:
    settings = {"url": f"{url}/graphql", "max_response_bytes": MIB}
    async with SubgraphAdapter("vehicle", settings) as agency:
        with pytest.raises(AgencyFailure, match=r"^vehicle answered more than 1048576 bytes"):
            await agency.query("{ __typename }", {})
    assert await stops_reading(flood) < 64 * MIB


async def test_through_the_gateway_the_caller_sees_the_agency_fail(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], url: str, flood: Flood
) -> None:
    agencies = {
        "nts": AgencyConfig(
            code="nts", kind="http", url=url, timeout_ms=500, retries=0, cache=False
        )
    }
    config = make_config(agency_db.dsn, http_agencies, agencies=agencies)
    query = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
        name taxes { year } } }"""
    async with gateway_client(config) as gateway:
        body = await gateway.query(query, {"rrn": HEAD_RRN})
        sent = await stops_reading(flood)
        assert body["data"]["resident"] == {"name": "Kim Min-jun", "taxes": None}
        [error] = body["errors"]
        assert error["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nts"}
    assert sent < 64 * MIB
