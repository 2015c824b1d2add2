"""Audit commits per second with 1, 2 and 4 writer processes on one hash chain.

Each writer process is a gateway's ``AuditLog`` (its group-committing writer task and pool)
with ``--concurrency`` requests in flight, each recording one resident access and waiting for
its commit, as a request does before its response leaves. Every process appends to the same
chain in one scratch database, so their transactions serialise on the chain's head row.
At the end the whole trail is verified (``gateway audit verify``'s check).

    python -m bench.audit_writers --writers 1 2 4 --seconds 5 --concurrency 64

``--layout separate`` gives each writer process a database (so a chain and a head row) of its
own on the same PostgreSQL server: what chains per writer could reach at best, since nothing is
shared between the writers but the server (its CPU, WAL and fsync).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import secrets
import statistics
import time
from typing import Any

import asyncpg

from gateway.app import open_store
from gateway.audit import AuditKeys, AuditLog, AuditRecord, verify
from gateway.errors import AuditUnavailable

ADMIN_DSN = os.environ.get("GATEWAY_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
KEY = "bench-audit-key-" + "x" * 32


def _dsn(name: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + "/" + name


async def _writer(dsn: str, seconds: float, concurrency: int, out: Any) -> None:
    keys = AuditKeys(KEY)
    pool = await open_store(dsn, keys)
    audit = AuditLog(pool, keys)
    await audit.start()
    latencies: list[float] = []
    failed: list[int] = []
    stop = time.monotonic() + seconds

    async def request(n: int) -> None:
        while time.monotonic() < stop:
            record = AuditRecord(
                at=dt.datetime.now(dt.UTC), request_id=secrets.token_hex(8),
                principal="bench", roles="welfare_officer", agency="mohw",
                purpose="WELFARE_ELIGIBILITY", subject=keys.subject(f"{n:013d}"),
                disclosed=("Resident.name", "Resident.insurance"), denied=(),
            )  # fmt: skip
            started = time.perf_counter()
            try:
                await audit.record([record])
            except AuditUnavailable:
                failed.append(1)
                continue
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(request(n) for n in range(concurrency)))
    out.put((audit.commits, audit.records_written, latencies, len(failed)))
    await audit.close()
    await pool.close()


def _process(dsn: str, seconds: float, concurrency: int, out: Any) -> None:
    asyncio.run(_writer(dsn, seconds, concurrency, out))


async def _database(action: str, name: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(f"{action} database {name}")
    finally:
        await conn.close()


async def _verified(dsn: str) -> tuple[int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        verdict = await verify(conn, AuditKeys(KEY))
        rows = await conn.fetchval("select count(*) from gateway.audit_log")
    finally:
        await conn.close()
    return len(verdict.problems), int(rows)


def run(writers: int, seconds: float, concurrency: int, separate: bool = False) -> dict[str, float]:
    names = [f"gwbench_audit_{secrets.token_hex(4)}" for _ in range(writers if separate else 1)]
    for name in names:
        asyncio.run(_database("create", name))
    try:
        dsns = [_dsn(name) for name in names]
        for dsn in dsns:  # create the store once so the writers do not race on its DDL
            asyncio.run(_prepare(dsn))
        out: Any = mp.get_context("spawn").Queue()
        procs = [
            mp.get_context("spawn").Process(
                target=_process, args=(dsns[n % len(dsns)], seconds, concurrency, out)
            )
            for n in range(writers)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=seconds + 60) for _ in procs]
        for proc in procs:
            proc.join()
        problems, rows = 0, 0
        for dsn in dsns:
            found, counted = asyncio.run(_verified(dsn))
            problems, rows = problems + found, rows + counted
    finally:
        for name in names:
            asyncio.run(_database("drop", name))
    commits = sum(r[0] for r in results)
    records = sum(r[1] for r in results)
    latencies = [x for r in results for x in r[2]]
    return {
        "writers": writers,
        "records_per_s": records / seconds,
        "commits_per_s": commits / seconds,
        "records_per_commit": records / max(commits, 1),
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
        "rows": rows,
        "failed": sum(r[3] for r in results),
        "problems": problems,
    }


async def _prepare(dsn: str) -> None:
    pool = await open_store(dsn, AuditKeys(KEY))
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--layout",
        choices=["one-chain", "separate", "both"],
        default="one-chain",
        help="one chain for all writers, a database (chain) per writer, or both interleaved",
    )
    args = parser.parse_args()
    layouts = ["one-chain", "separate"] if args.layout == "both" else [args.layout]
    print(
        "layout     writers  records/s  commits/s  records/commit  p50 ms  p99 ms  rows"
        "  failed  verify"
    )
    for _ in range(args.rounds):
        for writers in args.writers:
            for layout in layouts:
                r = run(writers, args.seconds, args.concurrency, layout == "separate")
                print(
                    f"{layout:<9}  {writers:>7}  {r['records_per_s']:>9.0f}"
                    f"  {r['commits_per_s']:>9.0f}"
                    f"  {r['records_per_commit']:>14.1f}  {r['p50_ms']:>6.1f}  {r['p99_ms']:>6.1f}"
                    f"  {r['rows']:>4}  {r['failed']:>6}  {r['problems'] or 'ok'}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
