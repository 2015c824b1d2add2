"""Per-request overhead, measured in this process: token check, the memory cache at its
bound, audit records. CPU time per operation (``time.process_time``), median of 5 rounds.

    .venv/bin/python -m bench.overhead [--entries 200000]

No database, Redis or agency is needed: these are the gateway's own costs (issue 10, item 4).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import time
from collections.abc import Awaitable, Callable

from adapters.records import RESIDENT
from gateway.audit_chain import AuditKeys, AuditRecord
from gateway.auth import Authenticator, issue_token
from gateway.cache import AgencyCache
from gateway.config import AuthConfig, CacheConfig

SECRET = "bench-secret-bench-secret-bench-secret-0123"
RRN = "810413-1009948"


async def cpu_us(make: Callable[[int], Awaitable[object]], n: int, rounds: int = 5) -> float:
    took = []
    for _ in range(rounds):
        start = time.process_time()
        for i in range(n):
            await make(i)
        took.append((time.process_time() - start) / n * 1e6)
    return statistics.median(took)


def cpu_us_sync(fn: Callable[[int], object], n: int, rounds: int = 5) -> float:
    took = []
    for _ in range(rounds):
        start = time.process_time()
        for i in range(n):
            fn(i)
        took.append((time.process_time() - start) / n * 1e6)
    return statistics.median(took)


async def main(entries: int) -> dict[str, float]:
    out: dict[str, float] = {}
    auth_config = AuthConfig(secret=SECRET)
    auth = Authenticator(auth_config)
    header = "Bearer " + issue_token(auth_config, sub="bench", roles=["tax_officer"])
    out["token check, same token again (µs)"] = await cpu_us(
        lambda _: auth.authenticate(header), 2000
    )

    cache = AgencyCache(CacheConfig(backend="memory"), max_entries=entries)
    keys = [f"k{i:07d}" for i in range(entries)]
    now = time.time()
    for start in range(0, entries, 1000):
        chunk = [(k, "v") for k in keys[start : start + 1000]]
        await cache.set_many("nts", RESIDENT, chunk, 60, now)
    fresh = iter(range(10**9))
    out[f"cache write, 1 key at {entries:,} entries (µs)"] = await cpu_us(
        lambda _: cache.set_many("nts", RESIDENT, [(f"n{next(fresh)}", "v")], 60, now), 500
    )
    out[f"cache read, 1 key at {entries:,} entries (µs)"] = await cpu_us(
        lambda i: cache.get_many("nts", RESIDENT, [keys[-1 - i]], 3600), 2000
    )
    some = keys[-20:]
    out["cache read, 20 keys (µs)"] = await cpu_us(
        lambda _: cache.get_many("nts", RESIDENT, some, 3600), 1000
    )
    await cache.close()

    audit_keys = AuditKeys("bench-audit-key")
    at = dt.datetime.now(dt.UTC)

    def record(_: int) -> AuditRecord:
        return AuditRecord(
            at=at, request_id="r1", principal="bench", roles="tax_officer", agency=None,
            purpose="TAX_ADMINISTRATION", subject=audit_keys.subject(RRN),
            disclosed=("Resident.name", "Resident.taxes"), denied=(),
        )  # fmt: skip

    out["audit record built, subject hashed (µs)"] = cpu_us_sync(record, 20000)
    sample = record(0)
    out["audit chain hash per record (µs)"] = cpu_us_sync(
        lambda i: audit_keys.chain(i, sample, "0" * 64), 20000
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=200_000)
    result = asyncio.run(main(parser.parse_args().entries))
    print(json.dumps({k: round(v, 2) for k, v in result.items()}, indent=1, ensure_ascii=False))
