"""The ASGI application: /graphql, /healthz, /readyz, /metrics, and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway import runtime as runtime_module
from gateway.audit import AuditLog
from gateway.config import Config
from gateway.consent import Consents
from gateway.errors import Forbidden, GatewayError
from gateway.graphql_schema import build_schema
from gateway.metrics import render_metrics
from gateway.view import GatewayView, error_response

log = logging.getLogger(__name__)

STORE_SQL = (files("gateway") / "store.sql").read_text()
PURGE_EVERY_S = 3600


async def open_store(url: str) -> asyncpg.Pool:
    """The gateway's own database, with its tables in place."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=8)
    async with pool.acquire() as conn:
        # Serialise concurrent start-ups (several workers) running the same DDL.
        await conn.execute("select pg_advisory_lock(727001)")
        try:
            await conn.execute(STORE_SQL)
        finally:
            await conn.execute("select pg_advisory_unlock(727001)")
    return pool


def create_app(config: Config) -> Starlette:
    rt = runtime_module.build(config)
    schema = build_schema(config.limits)
    view = GatewayView(schema, runtime=rt, graphql_ide="graphiql")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(rt.agencies)
            if rt.agencies.cache is not None:
                stack.push_async_callback(rt.agencies.cache.close)
            rt.db = await open_store(config.database.url)
            stack.push_async_callback(rt.db.close)
            rt.audit = AuditLog(rt.db, rt.keys)
            await rt.audit.start()
            stack.push_async_callback(rt.audit.close)
            rt.consents = Consents(rt.db)
            purger = asyncio.create_task(_purge_forever(rt.audit, config.audit.retention_days))
            stack.callback(purger.cancel)
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        database: dict[str, Any] = {"reachable": False}
        if rt.db is not None:
            try:
                async with asyncio.timeout(1):
                    await rt.db.fetchval("select 1")
                database["reachable"] = True
            except Exception as exc:
                database["error"] = type(exc).__name__
        members = list(rt.agencies.by_code.values())
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
        try:
            principal = await rt.authenticator.authenticate(request.headers.get("authorization"))
            if not rt.policy.allows_operation(principal.roles, "Query.agencies"):
                raise Forbidden("Metrics are for roles that may read agency status.")
        except GatewayError as exc:
            return error_response(exc)
        return PlainTextResponse(
            render_metrics(rt.agencies, rt.audit), media_type="text/plain; version=0.0.4"
        )

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
    app.state.runtime = rt
    app.state.agencies = rt.agencies
    return app


async def _purge_forever(audit: AuditLog, retention_days: int) -> None:
    while True:
        try:
            purged = await audit.purge(retention_days)
            if purged:
                log.info("audit retention: purged %d records older than %d days", purged,
                         retention_days)  # fmt: skip
        except Exception as exc:
            log.warning("audit retention purge failed: %s", exc)
        await asyncio.sleep(PURGE_EVERY_S)


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` with several workers: config from $GATEWAY_CONFIG."""
    from gateway import config as config_module

    return create_app(config_module.load(config_module.find_file()))
