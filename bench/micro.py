"""Micro-measurements of the pieces of one gateway request, taken in the bench process.

Run by ``python -m bench.run --micro`` once the stack is up (no load running). Each line is
CPU time per operation in *this* process (``time.process_time``), so the agency and database
on the other end of a call do not count: what is left is what the gateway itself would pay.
They are evidence for the optimisation suggestions in BENCHMARKS.md, not part of the
gateway/ceiling comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import strawberry
from graphql import parse, specified_rules, validate
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from adapters.http import HTTPAdapter
from adapters.records import TAXES
from adapters.sql import SQLAdapter
from bench import ceiling
from bench.patches import StreamPool
from bench.scenarios import FULL_QUERY
from gateway.auth import Authenticator
from gateway.config import AuthConfig, LimitsConfig
from gateway.demo.processes import demo_agency_auth, demo_agency_settings


@dataclass
class Measurement:
    name: str
    value: float
    note: str = ""
    unit: str = "µs/op"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "note": self.note}


async def run_all(
    dsn: str, nts_url: str, rrns: Sequence[str], secret: str, token: str
) -> list[Measurement]:
    """Every measurement below, in order."""
    return [
        *await graphql_measurements(rrns[0]),
        *await ceiling_measurements(dsn, rrns[0]),
        *await auth_measurements(secret, token),
        *await agency_measurements(dsn, nts_url, rrns),
        *await commit_measurements(dsn),
    ]


def cpu_us(fn: Callable[[], object], n: int) -> float:
    fn()  # warm
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


async def cpu_us_async(make: Callable[[int], Awaitable[object]], n: int, concurrency: int) -> float:
    """Process CPU per call with ``concurrency`` calls in flight (like a loaded gateway)."""
    await asyncio.gather(*(make(i) for i in range(concurrency)))  # warm connections
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await make(i)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - started) / n * 1e6


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The gateway logs each failed in-process execution; these are expected here."""
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


async def _validation_cache_misses(schema: strawberry.Schema, variables: dict[str, Any]) -> int:
    """How many of 5 identical executions missed strawberry's ValidationCache."""
    from strawberry.extensions.validation_cache import _get_validate_cache

    cache: Any = _get_validate_cache(256)
    before = cache.cache_info().misses
    with _quiet():
        for _ in range(5):
            # No context: execution fails at the first resolver, after validation.
            await schema.execute(FULL_QUERY, variable_values=variables)
    return int(cache.cache_info().misses - before)


async def graphql_measurements(rrn: str) -> list[Measurement]:
    from gateway.graphql_schema import GatewaySchema, build_schema
    from schema import Mutation, Query
    from schema.scalars import SCALARS

    limits = LimitsConfig()
    gateway_schema = build_schema(limits)
    document = parse(FULL_QUERY)
    rules = (
        *specified_rules,
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    )
    graphql_schema = gateway_schema._schema
    out = [
        Measurement("graphql-core parse(full query)", cpu_us(lambda: parse(FULL_QUERY), 300)),
        Measurement(
            "graphql-core validate(full query), gateway's rules",
            cpu_us(lambda: validate(graphql_schema, document, rules), 300),
            "what each request pays when strawberry's ValidationCache misses",
        ),
    ]
    variables = {"rrn": rrn}
    misses = await _validation_cache_misses(gateway_schema, variables)
    out.append(
        Measurement(
            "ValidationCache misses in 5 identical requests: gateway build_schema()",
            float(misses),
            "5 = never cached (a limiter built per request makes new rule classes); 1 = cached",
            unit="misses",
        )
    )
    # The same extensions, but the two limiter rule classes made once, at schema build time.
    stable = (
        *QueryDepthLimiter(max_depth=limits.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=limits.max_aliases).validation_rules,
    )
    from gateway.plans import Planned

    fixed = GatewaySchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            lambda: ParserCache(maxsize=256),
            lambda: ValidationCache(maxsize=256),
            lambda: AddValidationRules(list(stable)),
            lambda: MaxTokensLimiter(max_token_count=limits.max_tokens),
            Planned,
        ],
        config=StrawberryConfig(scalar_map=SCALARS),
    )
    misses = await _validation_cache_misses(fixed, variables)
    out.append(
        Measurement(
            "ValidationCache misses in 5 identical requests: limiter rules built once",
            float(misses),
            "AddValidationRules with the two rule classes created once in build_schema",
            unit="misses",
        )
    )
    return out


class NoopResolve(SchemaExtension):
    """A per-field ``resolve`` hook that does nothing (what Authorize costs before its logic)."""

    def resolve(
        self, _next: Callable[..., Any], root: Any, info: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return _next(root, info, *args, **kwargs)


async def ceiling_measurements(dsn: str, rrn: str) -> list[Measurement]:
    """Strawberry's own execution cost for the full query over in-memory data."""
    if not ceiling.STORE.residents:
        await ceiling.load(dsn, ceiling.STORE)
    plain = ceiling.build_schema()
    hooked = strawberry.Schema(
        query=ceiling.Query,
        extensions=[lambda: ParserCache(maxsize=256), lambda: ValidationCache(maxsize=256),
                    NoopResolve],
        config=StrawberryConfig(scalar_map=ceiling.SCALARS),
    )  # fmt: skip
    variables = {"rrn": rrn}

    async def run(schema: strawberry.Schema, n: int) -> float:
        result = await schema.execute(FULL_QUERY, variable_values=variables)
        assert not result.errors, result.errors
        started = time.process_time()
        for _ in range(n):
            await schema.execute(FULL_QUERY, variable_values=variables)
        return (time.process_time() - started) / n * 1e6

    # Alternate, and keep each one's best: this process shares the machine.
    base = with_hook = float("inf")
    for _ in range(3):
        base = min(base, await run(plain, 500))
        with_hook = min(with_hook, await run(hooked, 500))
    return [
        Measurement("strawberry execute(full query), in-memory (the ceiling's schema)", base),
        Measurement(
            "same + a no-op SchemaExtension.resolve on every field",
            with_hook,
            f"+{with_hook - base:.0f} µs/request before any authorization logic",
        ),
    ]


async def agency_measurements(
    dsn: str, nts_url: str, rrns: Sequence[str], calls: int = 3000, concurrency: int = 16
) -> list[Measurement]:
    """CPU per batch call of one key, the way the gateway calls an agency."""
    keys = [[rrn] for rrn in rrns]
    trust = demo_agency_settings()  # the demo agencies answer only their credential
    http = HTTPAdapter("nts", {"url": nts_url, "max_concurrency": 16, "timeout_ms": 5000, **trust})
    sql = SQLAdapter("nts", {"dsn": dsn, "max_concurrency": 16})
    parts = urlsplit(nts_url)
    credential = f"Authorization: {demo_agency_auth()}\r\n"
    raw = StreamPool(
        parts.hostname or "127.0.0.1", parts.port or 80, concurrency, headers=credential
    )

    async def raw_fetch(i: int) -> object:
        body = json.dumps({"keys": keys[i % len(keys)]}).encode()
        _, data = await raw.request("POST", "/v1/taxes:batch", body)
        return json.loads(data)

    out = []
    httpx_logger = logging.getLogger("httpx")
    async with http, sql:
        level = httpx_logger.level
        httpx_logger.setLevel(logging.WARNING)  # as if its per-request INFO line were off
        try:
            us = await cpu_us_async(
                lambda i: http.fetch(TAXES, keys[i % len(keys)]), calls, concurrency
            )
        finally:
            httpx_logger.setLevel(level)
        out.append(
            Measurement(
                "HTTPAdapter.fetch (httpx) to the nts agency, 1 key",
                us,
                f"{concurrency} in flight, httpx pool of 16",
            )
        )
        us = await cpu_us_async(raw_fetch, calls, concurrency)
        raw.close()
        out.append(
            Measurement(
                "bench.patches.StreamPool (asyncio streams), same request",
                us,
                "keep-alive, Content-Length parsing, json.loads",
            )
        )
        us = await cpu_us_async(lambda i: sql.fetch(TAXES, keys[i % len(keys)]), calls, concurrency)
        out.append(
            Measurement("SQLAdapter.fetch (asyncpg) of the same rows, 1 key", us, "pool of 16")
        )
        # The same adapter on a pool that skips asyncpg's reset query on every release.
        default_pool = sql._pool
        sql._pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=16, command_timeout=30, reset=_no_reset
        )
        try:
            us = await cpu_us_async(
                lambda i: sql.fetch(TAXES, keys[i % len(keys)]), calls, concurrency
            )
        finally:
            await sql._pool.close()
            sql._pool = default_pool
        out.append(
            Measurement(
                "same, asyncpg pool with reset=<no-op>",
                us,
                "no 'RESET ALL; UNLISTEN *; ...' round trip on each release",
            )
        )
    return out


async def _no_reset(conn: asyncpg.Connection) -> None:
    """A pool ``reset`` that sends nothing (the agency pools never change session state)."""


async def auth_measurements(secret: str, token: str) -> list[Measurement]:
    authenticator = Authenticator(AuthConfig(secret=secret))
    header = f"Bearer {token}"

    async def many(n: int) -> float:
        await authenticator.authenticate(header)
        started = time.process_time()
        for _ in range(n):
            await authenticator.authenticate(header)
        return (time.process_time() - started) / n * 1e6

    return [Measurement("JWT HS256 authenticate (joserfc), per request", await many(2000))]


async def commit_measurements(dsn: str, commits: int = 100) -> list[Measurement]:
    """Wall time of one small audit-like transaction (lock a head row, insert, update, commit)
    on this PostgreSQL: with synchronous_commit on, every commit waits for a WAL flush."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """create table if not exists public.bench_commit_head (id int primary key, n bigint);
               create table if not exists public.bench_commit_log (n bigint, payload text);
               insert into public.bench_commit_head values (1, 0) on conflict do nothing"""
        )
        out = []
        for setting in ("on", "off"):
            await conn.execute(f"set synchronous_commit = {setting}")
            times = []
            for _ in range(commits):
                started = time.perf_counter()
                async with conn.transaction():
                    n = await conn.fetchval(
                        "select n from public.bench_commit_head where id = 1 for update"
                    )
                    await conn.execute(
                        "insert into public.bench_commit_log values ($1, $2)", n + 1, "x" * 200
                    )
                    await conn.execute(
                        "update public.bench_commit_head set n = $1 where id = 1", n + 1
                    )
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            out.append(
                Measurement(
                    f"audit-like transaction, synchronous_commit={setting} (median wall)",
                    times[len(times) // 2],
                    f"p90 {times[int(len(times) * 0.9)]:.2f} ms; one connection, 4 round trips",
                    unit="ms",
                )
            )
        return out
    finally:
        await conn.close()
