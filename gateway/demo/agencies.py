"""Demo agencies served over HTTP (nts and mma): small Starlette apps over their own tables.

They speak the protocol of ``adapters.http`` and read PostgreSQL through ``adapters.sql``.
Run one with ``gateway demo-agency --agency nts --dsn ...``; it prints
``READY http://127.0.0.1:PORT`` once it listens. It answers only requests whose
``Authorization`` header is the value of ``$GATEWAY_DEMO_AGENCY_AUTH`` (``Bearer ...``): 401
to anyone else on the machine. ``gateway.demo.processes`` makes that credential and hands it
to both the agency processes and the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.aggregates import DIMENSIONS, MAX_DIMENSIONS, AggregateQuery
from adapters.records import DATASETS, record_to_json
from adapters.sql import SQLAdapter

SERVED: dict[str, tuple[str, ...]] = {"nts": ("taxes",), "mma": ("military_service",)}


FAULTS = ("ok", "error", "garbage")
AUTH_ENV = "GATEWAY_DEMO_AGENCY_AUTH"  # gateway.demo.processes.DEMO_AUTH_ENV


def create_agency_app(
    agency: str, dsn: str, delay_ms: int = 0, fault: str = "ok", *, credential: str
) -> Starlette:
    """Every route answers 401 unless the request's ``Authorization`` is ``credential``.

    ``fault`` (and ``delay_ms``) make the agency misbehave on purpose, for tests and
    drills: ``error`` answers HTTP 500, ``garbage`` answers 200 with a body that is not a
    batch. ``POST /fault {"fault": ..., "delay_ms": ...}`` changes both while it runs."""
    if not credential:
        raise ValueError("a demo agency needs a credential: it answers only the gateway")
    datasets = SERVED[agency]
    store = SQLAdapter(agency, {"dsn": dsn, "max_concurrency": 8})
    stats = {"calls": 0, "keys": 0}
    behaviour: dict[str, Any] = {"fault": fault, "delay_ms": delay_ms}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store:
            yield

    async def batch(request: Request) -> Response:
        name = request.path_params["dataset"]
        if name not in datasets:
            return JSONResponse({"error": f"{agency} does not serve {name}"}, status_code=404)
        try:
            body = await request.json()
            keys = body["keys"]
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"keys": ["...", ...]}'}, status_code=400)
        stats["calls"] += 1
        stats["keys"] += len(keys)
        if behaviour["delay_ms"]:
            await asyncio.sleep(behaviour["delay_ms"] / 1000)
        if behaviour["fault"] == "error":
            return JSONResponse({"error": "simulated failure"}, status_code=500)
        if behaviour["fault"] == "garbage":
            return Response(b"<html>maintenance</html>", media_type="application/json")
        dataset = DATASETS[name]
        entries = await store.fetch(dataset, keys)
        records: list[Any] = []
        for entry in entries:
            if entry is None:
                records.append(None)
            elif dataset.many:
                records.append([record_to_json(r) for r in entry])
            else:
                records.append(record_to_json(entry))
        return JSONResponse({"records": records})

    async def aggregate(request: Request) -> Response:
        """Counts grouped by up to two dimensions: the table, never the records."""
        name = request.path_params["dataset"]
        if name not in datasets:
            return JSONResponse({"error": f"{agency} does not serve {name}"}, status_code=404)
        try:
            body = await request.json()
            dimensions = body["dimensions"]
            year = body.get("taxYear")
            if (
                not isinstance(dimensions, list)
                or len(dimensions) > MAX_DIMENSIONS
                or len(set(dimensions)) != len(dimensions)
                or not all(d in DIMENSIONS[name] for d in dimensions)
                or not (year is None or (isinstance(year, int) and not isinstance(year, bool)))
            ):
                raise TypeError
        except (ValueError, KeyError, TypeError, AttributeError):
            allowed = ", ".join(DIMENSIONS[name])
            return JSONResponse(
                {"error": f'send {{"dimensions": [at most {MAX_DIMENSIONS} of {allowed}]}}'},
                status_code=400,
            )
        stats["calls"] += 1
        if behaviour["delay_ms"]:
            await asyncio.sleep(behaviour["delay_ms"] / 1000)
        if behaviour["fault"] == "error":
            return JSONResponse({"error": "simulated failure"}, status_code=500)
        if behaviour["fault"] == "garbage":
            return Response(b"<html>maintenance</html>", media_type="application/json")
        counts = await store.aggregate(AggregateQuery(name, tuple(dimensions), year))
        cells = [{"key": list(key), "count": count} for key, count in counts.items()]
        return JSONResponse({"cells": cells})

    async def healthz(request: Request) -> Response:
        await store.ping()
        return JSONResponse({"status": "ok", "agency": agency})

    async def stats_view(request: Request) -> Response:
        return JSONResponse(stats)

    async def set_fault(request: Request) -> Response:
        body = await request.json()
        if body.get("fault", "ok") not in FAULTS:
            return JSONResponse({"error": f"fault is one of {FAULTS}"}, status_code=400)
        behaviour["fault"] = body.get("fault", "ok")
        behaviour["delay_ms"] = int(body.get("delay_ms", 0))
        return JSONResponse(behaviour)

    expected = credential.encode()

    class RequireCredential:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                given = Headers(scope=scope).get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    response = JSONResponse(
                        {"error": "the gateway's credential is required"},
                        status_code=401,
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    return Starlette(
        middleware=[Middleware(RequireCredential)],
        routes=[
            Route("/v1/{dataset}:batch", batch, methods=["POST"]),
            Route("/v1/{dataset}:aggregate", aggregate, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/stats", stats_view),
            Route("/fault", set_fault, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def serve(
    agency: str,
    dsn: str,
    host: str = "127.0.0.1",
    port: int = 0,
    delay_ms: int = 0,
    fault: str = "ok",
) -> None:
    """Serve until interrupted. With port 0 the OS picks one; the READY line names it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it every small response waits for the
    # client's delayed ACK (Nagle), about 40 ms a call.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    bound_port = sock.getsockname()[1]
    credential = os.environ.get(AUTH_ENV, "")
    if not credential:
        sys.exit(f"gateway demo-agency: set {AUTH_ENV} to the credential the gateway sends")
    app = create_agency_app(agency, dsn, delay_ms=delay_ms, fault=fault, credential=credential)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def main() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        print(f"READY http://{host}:{bound_port}", flush=True)
        await task

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.stdout.flush()
