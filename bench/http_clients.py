"""CPU per agency call by HTTP client, and per body by JSON codec (issue 10, item 3).

One local agency (``bench.agency_call_cpu``'s HTTP agency, a uvicorn child process) answers
batches of ``--keys`` insurance records. This process makes ``--calls`` sequential calls
with each client and decodes the body; ``time.process_time`` counts this process only, so
the figure is what a call costs the gateway. Median of ``--rounds`` interleaved rounds::

    .venv/bin/python -m bench.http_clients --calls 1000 --keys 20 --rounds 5

Needs ``aiohttp``, ``orjson`` and ``msgspec`` installed (not dependencies of the gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpcore
import httpx
import msgspec
import orjson

from adapters.http import HTTPAdapter
from adapters.records import INSURANCE
from bench.agency_call_cpu import _serve, record

Call = Callable[[], Awaitable[Any]]


async def cpu_per_call(call: Call, calls: int) -> float:
    for _ in range(50):
        await call()
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls * 1e6


async def clients(url: str, keys: list[str], calls: int, rounds: int) -> dict[str, float]:
    body = {"keys": keys}
    raw = orjson.dumps(body)
    path = url + "/v1/insurance:batch"
    headers = {"content-type": "application/json"}
    adapter = HTTPAdapter("nhis", {"url": url})
    plain = httpx.AsyncClient(base_url=url)
    tuned = httpx.AsyncClient(
        base_url=url,
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        headers=headers,
    )
    pool = httpcore.AsyncConnectionPool(max_connections=10)
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=10), headers=headers, skip_auto_headers=["User-Agent"]
    )
    core_headers = [(b"content-type", b"application/json"), (b"host", url[7:].encode())]

    async def adapter_today() -> Any:
        return await adapter.fetch(INSURANCE, keys)

    async def httpx_plain() -> Any:
        return (await plain.post("/v1/insurance:batch", json=body)).json()

    async def httpx_tuned() -> Any:
        response = await tuned.post("/v1/insurance:batch", content=raw)
        return orjson.loads(response.content)

    async def httpcore_direct() -> Any:
        response = await pool.request("POST", path, headers=core_headers, content=raw)
        return orjson.loads(response.content)

    async def aiohttp_client() -> Any:
        async with session.post(path, data=raw) as response:
            return orjson.loads(await response.read())

    variants: dict[str, Call] = {
        "HTTPAdapter today (httpx, stdlib json, records built)": adapter_today,
        "httpx plain (json=, response.json())": httpx_plain,
        "httpx tuned (orjson bytes in and out)": httpx_tuned,
        "httpcore directly (orjson)": httpcore_direct,
        "aiohttp ClientSession (orjson)": aiohttp_client,
    }
    async with adapter:
        got: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(rounds):
            for name, call in variants.items():
                got[name].append(await cpu_per_call(call, calls))
    await plain.aclose()
    await tuned.aclose()
    await pool.aclose()
    await session.close()
    return {name: statistics.median(values) for name, values in got.items()}


def codecs(keys: list[str], rounds: int) -> dict[str, float]:
    agency_body = json.dumps({"records": [record(k) for k in keys]}).encode()
    response = {"data": {"resident": {
        "rrn": "810413-1******", "name": "Kim Min-jun", "birthDate": "1981-04-13",
        "taxes": [{"year": y, "reportedIncome": 51_000_000, "taxAssessed": 4_100_000,
                   "arrears": 0} for y in (2024, 2025)],
        "insurance": {"insuredType": "EMPLOYEE", "monthlyPremium": 182_340, "dependents": 2},
        "household": {"size": 20, "members": [{"name": f"Member {i}", "insurance": {
            "insuredType": "DEPENDENT"}} for i in range(20)]},
    }}}  # fmt: skip
    decoder = msgspec.json.Decoder()
    encoder = msgspec.json.Encoder()
    cases: dict[str, Callable[[], object]] = {
        "decode agency body: json.loads": lambda: json.loads(agency_body),
        "decode agency body: orjson.loads": lambda: orjson.loads(agency_body),
        "decode agency body: msgspec": lambda: decoder.decode(agency_body),
        "encode our response: json.dumps": lambda: json.dumps(response).encode(),
        "encode our response: orjson.dumps": lambda: orjson.dumps(response),
        "encode our response: msgspec": lambda: encoder.encode(response),
    }
    n = 5000
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.process_time()
            for _ in range(n):
                fn()
            out[name].append((time.process_time() - start) / n * 1e6)
    return {name: statistics.median(values) for name, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    keys = [f"900101-1{i:06d}" for i in range(args.keys)]
    process, url = _serve("http_app")
    try:
        by_client = asyncio.run(clients(url, keys, args.calls, args.rounds))
    finally:
        process.terminate()
        process.wait(10)
    print(f"CPU of this process per call, {args.keys} keys a batch (median of {args.rounds}):")
    for name, us in by_client.items():
        print(f"  {us:7.0f} µs  {name}")
    print(f"JSON codecs, µs per body ({args.keys} agency records; a household response):")
    for name, us in codecs(keys, args.rounds).items():
        print(f"  {us:7.1f} µs  {name}")


if __name__ == "__main__":
    main()
