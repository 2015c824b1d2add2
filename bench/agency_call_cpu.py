"""CPU per agency call: the GraphQL subgraph source against the HTTP source.

Two local agencies serve the same records (an insurance enrolment per key, five fields), each
in a uvicorn child process: one speaks our JSON batch protocol (``adapters.http``), the other
is an Apollo Federation v2 subgraph (strawberry) read through ``_entities``
(``adapters.subgraph``), asked for the whole record and, as a request selecting two of the
five fields forwards, for those two (``graphql-2``). The gateway side (this process) makes
``--calls`` batched fetches of ``--keys`` keys through each adapter; ``time.process_time``
counts this process's CPU only (the agencies run elsewhere), so the figure is what one call
costs the gateway: request encoding, HTTP, JSON decoding and record building. Run::

    .venv/bin/python -m bench.agency_call_cpu --calls 2000 --keys 20
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.base import Adapter
from adapters.http import HTTPAdapter
from adapters.records import INSURANCE, Dataset
from adapters.subgraph import SubgraphAdapter


def record(rrn: str) -> dict[str, Any]:
    n = sum(map(ord, rrn))
    return {
        "rrn": rrn, "insured_type": "EMPLOYEE", "enrolled_on": "2020-01-01",
        "monthly_premium": 100_000 + n, "dependents": n % 3, "insured_by": None,
    }  # fmt: skip


# -- the HTTP agency ------------------------------------------------------------------


async def batch(request: Request) -> Response:
    keys = (await request.json())["keys"]
    return JSONResponse({"records": [record(k) for k in keys]})


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


http_app = Starlette(
    routes=[Route("/v1/insurance:batch", batch, methods=["POST"]), Route("/healthz", healthz)]
)


# -- the subgraph ---------------------------------------------------------------------


@strawberry.federation.type(description="Enrolment in health insurance.")
class Insurance:
    insured_type: str = strawberry.field(description="Kind of insured.")
    enrolled_on: str = strawberry.field(description="Day of enrolment.")
    monthly_premium: int = strawberry.field(description="Premium, KRW a month.")
    dependents: int = strawberry.field(description="Dependents covered.")
    insured_by: str | None = strawberry.field(description="Who insures them, if not self.")


@strawberry.federation.type(keys=["rrn"], description="A resident.")
class Resident:
    rrn: str = strawberry.field(description="RRN.")
    insurance: Insurance | None = strawberry.field(description="Health insurance.")

    @classmethod
    def resolve_reference(cls, rrn: str) -> Resident:
        r = record(rrn)
        del r["rrn"]
        return cls(rrn=rrn, insurance=Insurance(**r))


@strawberry.type(description="Queries.")
class Query:
    name: str = strawberry.field(description="Name.", default="bench")


SCHEMA = strawberry.federation.Schema(query=Query, types=[Resident])


async def graphql(request: Request) -> Response:
    body = await request.json()
    result = await SCHEMA.execute(body["query"], variable_values=body.get("variables"))
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [e.formatted for e in result.errors]
    return JSONResponse(out)


subgraph_app = Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


# -- the measurement ------------------------------------------------------------------


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(app: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", f"bench.agency_call_cpu:{app}", "--port", str(port),
         "--log-level", "warning", "--no-access-log"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=0.5)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{app} did not start")


async def measure(adapter: Adapter, dataset: Dataset, calls: int, keys: int) -> float:
    """CPU seconds per call of this process, after a warm-up."""
    batch = [f"900101-1{i:06d}" for i in range(keys)]
    async with adapter:
        for _ in range(50):
            await adapter.fetch(dataset, batch)
        start = time.process_time()
        for _ in range(calls):
            answer = await adapter.fetch(dataset, batch)
            if len(answer) != keys or any(a is None or isinstance(a, Exception) for a in answer):
                raise RuntimeError(f"{type(adapter).__name__} did not answer every key")
        return (time.process_time() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--keys", type=int, default=20, help="keys per batched call")
    args = parser.parse_args()
    from gateway.subgraph import from_sdl

    http, http_url = _serve("http_app")
    sub, sub_url = _serve("subgraph_app")
    try:
        sdl = httpx.post(sub_url + "/graphql", json={"query": "{ _service { sdl } }"}).json()
        dataset = from_sdl("nhis", sdl["data"]["_service"]["sdl"], "bench").dataset
        assert dataclasses.is_dataclass(dataset.record)
        results = {
            "http": asyncio.run(
                measure(HTTPAdapter("nhis", {"url": http_url}), INSURANCE, args.calls, args.keys)
            ),
            "graphql": asyncio.run(
                measure(
                    SubgraphAdapter("nhis", {"url": sub_url + "/graphql"}),
                    dataset,
                    args.calls,
                    args.keys,
                )
            ),
            # What a request selecting two of the five fields forwards (gateway.forwarding).
            "graphql-2": asyncio.run(
                measure(
                    SubgraphAdapter("nhis", {"url": sub_url + "/graphql"}),
                    dataset.narrowed("insurance { insuredType monthlyPremium }"),
                    args.calls,
                    args.keys,
                )
            ),
        }
    finally:
        for process in (http, sub):
            process.terminate()
            process.wait(10)
    print(f"{args.calls} calls of {args.keys} keys each, CPU of the gateway process per call:")
    for name, seconds in results.items():
        print(f"  {name:8} {seconds * 1e6:8.0f} µs/call  {seconds * 1e6 / args.keys:6.1f} µs/key")
    print(f"  graphql/http: {results['graphql'] / results['http']:.2f}x", end="")
    print(f"  (2 of 5 fields forwarded: {results['graphql-2'] / results['http']:.2f}x)")


if __name__ == "__main__":
    main()
