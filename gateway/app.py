"""The ASGI application: /graphql (with GraphiQL's assets and examples), /healthz, /readyz,
/metrics, and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from importlib.resources import files
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from adapters.sql import keep_session
from gateway import graphiql
from gateway import metrics as metrics_module
from gateway import rrn as rrns
from gateway import runtime as runtime_module
from gateway.agencies import Agencies
from gateway.audit import AuditKeys, AuditLog
from gateway.audit_chain import Conn, ensure_head
from gateway.breaker import State
from gateway.certificate_pages import certificate_routes
from gateway.certificate_store import CertificateStore
from gateway.config import Config
from gateway.consent import Consents
from gateway.errors import BadRequest, CacheUnavailableError, Forbidden, GatewayError
from gateway.examples import examples_by_role
from gateway.graphql_schema import GatewaySchema, schema_for
from gateway.inputs import load_json
from gateway.listener import ChangeListener
from gateway.persisted import PersistedDocuments
from gateway.view import GatewayView, error_response

log = logging.getLogger(__name__)

STORE_SQL = (files("gateway") / "store.sql").read_text()
PURGE_EVERY_S = 3600
GC_THRESHOLD = 10_000  # allocations between young-generation collections (default 700)


async def _ensure_tables(conn: Conn) -> None:
    """Run store.sql unless this very version of it already ran. Its `alter table`s take
    exclusive locks even when there is nothing to change: run while another replica is
    writing audit rows, they deadlock with its writer (one of the two transactions fails)."""
    version = hashlib.sha256(STORE_SQL.encode()).hexdigest()
    exists = await conn.fetchval("select to_regclass('gateway.store_version')") is not None
    if exists and await conn.fetchval("select version from gateway.store_version") == version:
        return
    async with conn.transaction():
        await conn.execute(STORE_SQL)
        await conn.execute(
            "create table if not exists gateway.store_version (version text not null)"
        )
        await conn.execute("delete from gateway.store_version")
        await conn.execute("insert into gateway.store_version values ($1)", version)


async def open_store(url: str, keys: AuditKeys, statement_cache_size: int = 100) -> asyncpg.Pool:
    """The gateway's own database, with its tables in place."""
    pool = await asyncpg.create_pool(
        url,
        min_size=1,
        max_size=8,
        statement_cache_size=statement_cache_size,
        # asyncpg's reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is a round trip
        # per release, once per audit commit and consent look-up, for session state the
        # gateway never leaves on a pooled connection (no SET, LISTEN or cursors; the
        # start-up advisory lock is released in place). A transaction left open is still
        # rolled back: asyncpg does that before any reset.
        reset=keep_session,
    )
    try:
        async with pool.acquire() as conn:
            # Serialise concurrent start-ups (several workers) running the same DDL.
            await conn.execute("select pg_advisory_lock(727001)")
            try:
                try:
                    await _ensure_tables(conn)
                except asyncpg.InsufficientPrivilegeError:
                    # A least-privilege role (docs/deployment.md): the store's owner applied it.
                    await _check_store(conn)
                problem = await ensure_head(conn, keys)
            finally:
                await conn.execute("select pg_advisory_unlock(727001)")
    except BaseException:
        # A store the gateway cannot use: no pool left behind (it would keep reconnecting).
        await pool.close()
        raise
    if problem is not None:
        # Not sealed here, ever: the writer refuses, resident data is withheld and /readyz
        # says why, until an operator runs `gateway audit repair`.
        log.error("audit store: %s; resident data is withheld until `gateway audit repair`",
                  problem)  # fmt: skip
    return pool


#: What the gateway needs of a store it may not create (columns added since the first version).
STORE_COLUMNS = {
    "consents": ("id", "revoked_at"),
    "audit_log": ("seq", "hash", "note"),
    "audit_head": ("last_seq", "anchor_hash", "mac"),
    "certificates": ("id", "revoked_at"),
}


async def _check_store(conn: Conn) -> None:
    """The store is in place (this role may not create or change it), else one clear error."""
    rows = await conn.fetch(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'gateway'"
    )
    found = {(r["table_name"], r["column_name"]) for r in rows}
    missing = [f"{t}.{c}" for t, cs in STORE_COLUMNS.items() for c in cs if (t, c) not in found]
    if missing:
        user = await conn.fetchval("select current_user")
        what = ", ".join(missing) if found else "its tables (schema gateway)"
        raise RuntimeError(
            f"the gateway's store lacks {what} (or role {user} may not read them), "
            f"and role {user} may not create it: apply gateway/store.sql as the schema's owner "
            "and grant the gateway's role its privileges (docs/deployment.md)"
        )


def create_app(
    config: Config,
    schema: GatewaySchema | None = None,
    *,
    demo_roles: Sequence[graphiql.DemoRole] | None = None,
    sample_rrn: str | None = None,
) -> Starlette:
    """The gateway. ``schema`` replaces the one it would build (tests and benchmarks compare
    variants of the schema this way). ``demo_roles`` (the embedded demo only: ``gateway
    serve`` without a config) puts those roles' tokens on the GraphiQL page; ``sample_rrn``
    fills the page's example operations."""
    schema = schema or schema_for(config)
    rt = runtime_module.build(config, schema)
    view = GatewayView(schema, runtime=rt, graphql_ide="graphiql")
    title = graphiql.TITLE + (" (demo)" if demo_roles is not None else "")
    view.ide_html = graphiql.page_html(title, demo_roles)
    view.persisted = PersistedDocuments.from_config(config, schema)
    metrics_module.read_token(config.metrics)  # refuse to start with an unusable token file

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(rt.agencies)
            stack.push_async_callback(view.close_safety)
            if rt.agencies.cache is not None:
                stack.push_async_callback(rt.agencies.cache.close)
            rt.db = await open_store(
                config.database.url, rt.keys, config.database.statement_cache_size
            )
            stack.push_async_callback(rt.db.close)
            rt.audit = AuditLog(
                rt.db, rt.keys, config.audit.write_timeout_ms / 1000, config.audit.head_file
            )
            await rt.audit.start()
            stack.push_async_callback(rt.audit.close)
            if config.audit.head_file and (problem := await rt.audit.head_problem()):
                # The head recorded outside is no longer in the chain (or the head is not
                # sealed): the writer refuses on every write until `gateway audit repair`.
                log.error("audit store: %s; resident data is withheld until"
                          " `gateway audit repair`", problem)  # fmt: skip
            rt.consents = Consents(rt.db, rt.policy.consent_agencies)
            rt.certificates.store = CertificateStore(rt.db)
            for listener in change_listeners(config, rt.agencies):
                await listener.start()
                stack.push_async_callback(listener.close)
            purger = asyncio.create_task(_purge_forever(rt.audit, config.audit.retention_days))
            stack.callback(purger.cancel)
            # Observability: spans flushed and a worker's live gauges dropped on the way out.
            stack.callback(metrics_module.worker_exited, os.getpid())
            stack.callback(view.observer.shutdown)
            view.observer.declare(rt.agencies)
            circuits = asyncio.create_task(view.observer.refresh_forever(rt.agencies))
            stack.callback(circuits.cancel)
            # Everything built so far lives as long as the process: keep it out of the
            # collector's way, and collect young objects less often (fewer pauses per request).
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    readiness: dict[str, Any] = {"task": None}

    async def readyz(request: Request) -> Response:
        """Open to anyone, so states only: ready or not, and up or down per agency (and the
        audit store's state). Counters, circuits, cache ratios and error texts are in /metrics
        and Query.agencies. Concurrent callers share one check: a flood of /readyz is not a
        flood of database queries and agency pings (one check in flight at a time)."""
        task = readiness["task"]
        if task is None or task.done():
            task = readiness["task"] = asyncio.ensure_future(_readiness())
        body, status = await asyncio.shield(task)
        return JSONResponse(body, status_code=status)

    async def _readiness() -> tuple[dict[str, Any], int]:
        reachable = False
        audit: dict[str, Any] = {"ok": False}
        if rt.db is not None and rt.audit is not None:
            try:
                async with asyncio.timeout(1):
                    problem = await rt.audit.head_problem()
                reachable = True
                # A sealed head, yet every recent commit failed (a row forged at the chain's
                # next place, say): requests are withheld, so the replica is not ready.
                problem = problem or rt.audit.failing
                audit = {"ok": problem is None} | ({"reason": problem} if problem else {})
            except Exception as exc:
                log.warning(
                    "readiness: the gateway database did not answer: %s", type(exc).__name__
                )
        ready = reachable and audit["ok"]
        members = list(rt.agencies.by_code.values())
        problems = await asyncio.gather(*(agency.ping() for agency in members))
        cache = rt.agencies.cache
        body = {
            "status": "ready" if ready else "not ready",
            "database": "up" if reachable else "down",
            # The audit store: resident data is withheld while its chain head is not sealed.
            "audit": audit,
            "cache": "off" if cache is None else ("up" if cache.healthy else "down"),
            "agencies": {
                agency.code: "up"
                if problem is None and agency.breaker.state is not State.OPEN
                else "down"
                for agency, problem in zip(members, problems, strict=True)
            },
        }
        return body, 200 if ready else 503

    async def metrics(request: Request) -> Response:
        """For Prometheus with ``[metrics] token_file``'s bearer token, or for a token of a
        role that may read agency status (docs/operations.md)."""
        authorization = request.headers.get("authorization")
        if not metrics_module.token_matches(config.metrics, authorization):
            try:
                principal = await rt.authenticate(authorization)
                if not rt.policy.allows_operation(principal.roles, "Query.agencies"):
                    raise Forbidden("Metrics are for roles that may read agency status.")
            except GatewayError as exc:
                return error_response(exc)
        view.observer.refresh_circuits(rt.agencies)
        return Response(metrics_module.render(), media_type=metrics_module.CONTENT_TYPE)

    async def invalidate(request: Request) -> Response:
        """An agency tells us records changed: drop our cached copies."""
        try:
            principal = await rt.authenticate(request.headers.get("authorization"))
            if not rt.policy.allows_operation(principal.roles, "Events.invalidate"):
                raise Forbidden("Only an agency's own system may invalidate its records.")
            body = await _json_object(request, config.limits.max_body_bytes)
            agency, keys = body.get("agency"), body.get("keys")
            datasets = body.get("datasets")
            if not isinstance(agency, str) or agency not in rt.agencies.by_code:
                raise BadRequest(f"agency must be one of {', '.join(rt.agencies.by_code)}")
            if principal.agency != agency:
                raise Forbidden(f"Your token is for {principal.agency}; it may not touch {agency}.")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                raise BadRequest("keys must be a list of strings (RRNs or household ids)")
            if len(keys) > config.limits.max_batch * 10:
                raise BadRequest(f"At most {config.limits.max_batch * 10} keys per event.")
            valid = rt.agencies.datasets_of(agency)
            if datasets is not None and (
                not isinstance(datasets, list)
                or not all(isinstance(d, str) for d in datasets)
                or not set(datasets) <= set(valid)
            ):
                raise BadRequest(f"datasets of {agency}: {', '.join(valid)}")
        except GatewayError as exc:
            return error_response(exc)
        keys = [_canonical_key(k) for k in keys]
        try:
            dropped = await rt.agencies.invalidate(agency, keys, datasets)
        except CacheUnavailableError as exc:
            # Not acknowledged (503): the agency sends the event again, rather than the
            # gateway serving the old record once the cache is back.
            return error_response(exc)
        log.info("invalidation from %s: %d keys, %d cache entries dropped", agency, len(keys),
                 dropped)  # fmt: skip
        return JSONResponse({"agency": agency, "keys": len(keys), "dropped": dropped}, 202)

    # Certificates without a signing key are FORBIDDEN to all: no example offers them.
    unavailable = () if rt.certificates.enabled else ("Query.myCertificates",)
    examples = examples_by_role(schema._schema, rt.policy, sample_rrn, unavailable)
    app = Starlette(
        routes=[
            Route("/events/invalidate", invalidate, methods=["POST"]),
            Route("/graphql", view, methods=["GET", "POST"]),
            Mount("/graphiql/assets", app=graphiql.assets()),
            Route(
                "/graphiql/examples",
                graphiql.examples_endpoint(view, examples),
            ),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *certificate_routes(rt.certificates, config.limits.max_body_bytes),
        ],
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.runtime = rt
    app.state.agencies = rt.agencies
    app.state.view = view
    if demo_roles is not None:
        # The page carries the demo's tokens: answer only requests addressed to this machine,
        # so a page elsewhere cannot read them by rebinding its DNS name to 127.0.0.1.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
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
    from gateway import logs

    config = config_module.load(config_module.find_file())
    logs.configure(config.log)  # each worker process sets up its own (masked) logging
    return create_app(config)


def change_listeners(config: Config, agencies: Agencies) -> list[ChangeListener]:
    """One LISTEN connection per distinct DSN of the SQL agencies that ask for it."""
    by_dsn: dict[str, set[str]] = {}
    for code, agency in config.agencies.items():
        if agency.kind == "sql" and agency.cache and agency.settings.get("listen", True):
            by_dsn.setdefault(agency.dsn, set()).add(code)
    listeners = []
    for dsn, codes in by_dsn.items():

        async def handle(dataset: str, keys: list[str], codes: set[str] = codes) -> None:
            owner = agencies.sources.get(dataset)
            if owner in codes:
                try:
                    await agencies.invalidate(owner, keys, [dataset])
                except CacheUnavailableError as exc:
                    log.error("a change notification for %s could not be applied: %s", owner, exc)

        async def flush(codes: set[str] = codes) -> None:
            for code in codes:
                await agencies.forget(code)

        listeners.append(
            ChangeListener(dsn, handle, name="+".join(sorted(codes)), on_reconnect=flush)
        )
    return listeners


async def _json_object(request: Request, limit: int) -> dict[str, Any]:
    body = await request.body()
    if len(body) > limit:
        raise BadRequest(f"The request body is over the {limit}-byte limit.")
    data = load_json(body, "The request body")
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def _canonical_key(key: str) -> str:
    try:
        return rrns.parse(key).value
    except rrns.InvalidRRN:
        return key  # a household id, or another agency key
