"""The ASGI application: /graphql, /healthz, /readyz, /metrics, and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.agencies import Agencies
from gateway.config import Config
from gateway.graphql_schema import build_schema
from gateway.metrics import render_metrics
from gateway.view import GatewayView

log = logging.getLogger(__name__)


def create_app(config: Config) -> Starlette:
    agencies = Agencies(config.agencies)
    schema = build_schema(config.limits)
    view = GatewayView(schema, agencies=agencies, limits=config.limits, graphql_ide="graphiql")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(agencies)
            app.state.db = None
            if config.database.url:
                app.state.db = await asyncpg.create_pool(
                    config.database.url, min_size=0, max_size=4
                )
                stack.push_async_callback(app.state.db.close)
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        db = request.app.state.db
        database: dict[str, Any] = {"configured": db is not None, "reachable": False}
        if db is not None:
            try:
                async with asyncio.timeout(1):
                    await db.fetchval("select 1")
                database["reachable"] = True
            except Exception as exc:
                database["error"] = type(exc).__name__
        members = list(agencies.by_code.values())
        problems = await asyncio.gather(*(agency.ping() for agency in members))
        body = {
            "status": "ready" if database["reachable"] else "not ready",
            "database": database,
            "agencies": {
                agency.code: {"kind": agency.config.kind, "reachable": problem is None}
                | ({"error": problem} if problem else {})
                for agency, problem in zip(members, problems, strict=True)
            },
        }
        return JSONResponse(body, status_code=200 if database["reachable"] else 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(render_metrics(agencies), media_type="text/plain; version=0.0.4")

    app = Starlette(
        routes=[
            Route("/graphql", view, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.agencies = agencies
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` with several workers: config from $GATEWAY_CONFIG."""
    from gateway import config as config_module

    return create_app(config_module.load(config_module.find_file()))
