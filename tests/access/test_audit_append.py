"""The audit writer's one-statement commit (``AuditLog._write_appending``): taken while the
head row is the one this process last left, never when anything else moved it; what it
writes verifies as what the locked path writes."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.app import open_store
from gateway.audit import LOCKED_AFTER_MISS, AuditLog, AuditRecord
from gateway.audit_admin import verify
from gateway.errors import AuditUnavailable
from tests.access.conftest import KEYS, fetch, scratch_store
from tests.access.test_audit_integrity import recent
from tests.conftest import ScratchDatabase


@contextlib.asynccontextmanager
async def writers(db: ScratchDatabase, n: int) -> AsyncIterator[list[AuditLog]]:
    """``n`` gateways' audit writers on one store (as workers or replicas are)."""
    pools = [await open_store(db.dsn, KEYS) for _ in range(n)]
    logs = [AuditLog(pool, KEYS) for pool in pools]
    for log in logs:
        await log.start()
    try:
        yield logs
    finally:
        for log in logs:
            await log.close()
        for pool in pools:
            await pool.close()


async def intact(db: ScratchDatabase) -> int:
    conn = await asyncpg.connect(db.dsn)
    try:
        verdict = await verify(conn, KEYS)
    finally:
        await conn.close()
    assert verdict.problems == [], verdict.problems
    return verdict.checked


def noted(label: str) -> AuditRecord:
    """A record with what the canonical form escapes: Hangul, quotes, an empty list, a note."""
    return dataclasses.replace(
        recent(label),
        principal='관리자 "kim"',
        disclosed=("Resident.name", "Resident.household"),
        denied=(),
        note='{"why": "a test"}',
    )


async def test_a_lone_writer_commits_in_one_statement_and_the_chain_verifies(
    admin_dsn: str,
) -> None:
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            for i in range(6):
                await audit.record([recent(f"r{i}"), noted(f"n{i}")])
            assert audit.fast_commits == 5  # the first commit reads the head under its lock
        assert await intact(db) == 12
        rows = await fetch(
            db.dsn, "select principal, disclosed, denied, note from gateway.audit_log"
            " where request_id = 'n5'",
        )  # fmt: skip
        assert [tuple(r) for r in rows] == [
            ('관리자 "kim"', ["Resident.name", "Resident.household"], [], '{"why": "a test"}')
        ]


async def test_another_writer_moving_the_head_sends_a_commit_the_locked_way(
    admin_dsn: str,
) -> None:
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 2) as (one, two):
            await one.record([recent("one-1")])
            await one.record([recent("one-2")])
            assert one.fast_commits == 1
            await two.record([recent("two-1")])  # the head is no longer one's
            await one.record([recent("one-3")])
            assert one.fast_commits == 1  # missed, then written under the lock
            assert one._locked_only == LOCKED_AFTER_MISS - 1
        assert await intact(db) == 4
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["one-1", "one-2", "two-1", "one-3"]


@pytest.mark.parametrize(
    "tampering",
    [
        "update gateway.audit_head set mac = 'forged'",
        "update gateway.audit_head set last_seq = last_seq - 1",
        "delete from gateway.audit_log where seq = (select max(seq) from gateway.audit_log)",
    ],
)
async def test_a_tampered_trail_is_refused_not_appended_to(
    admin_dsn: str, tampering: str
) -> None:
    """Between two commits a DBA rewrites the head or cuts the last row: the next commit may
    not go through in one statement past it (the head it expects is gone, or the chain's end
    no longer matches it) — it is checked under the lock and refused."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            assert audit.fast_commits == 1
            await fetch(db.dsn, tampering)
            if tampering.startswith("delete"):
                # The head row is untouched: the one-statement commit goes through, and
                # verification (which walks the rows, never the head's say-so) finds the cut.
                await audit.record([recent("third")])
                conn = await asyncpg.connect(db.dsn)
                try:
                    verdict = await verify(conn, KEYS)
                finally:
                    await conn.close()
                assert verdict.problems
                return
            with pytest.raises(AuditUnavailable):
                await audit.record([recent("third")])
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["first", "second"]


# --- probes: what the one-statement commit must not do that the locked one refuses ---------


async def dba(db: ScratchDatabase, *statements: str) -> None:
    """Statements run in one transaction, as a DBA (or a restore) would."""
    conn = await asyncpg.connect(db.dsn)
    try:
        async with conn.transaction():
            for statement in statements:
                await conn.execute(statement)
    finally:
        await conn.close()


async def test_a_head_rolled_back_behind_the_mark_is_refused_not_appended_to(
    admin_dsn: str,
) -> None:
    """The writer's mark moves past its own last commit when it sees another worker's head
    (``head_problem``: /readyz, the hourly purge). A DBA (or a failover to a replica that
    lost the tail) then puts back the head this process last left and drops the other
    worker's rows: the locked path refuses ("went back"), so the one-statement commit, whose
    expectation is that very head, must not append past it either."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 2) as (one, two):
            await one.record([recent("one-1")])
            await one.record([recent("one-2")])
            assert one.fast_commits == 1
            [saved] = await fetch(db.dsn, "select * from gateway.audit_head")
            await two.record([recent("two-1")])  # released: its record must stay
            assert await one.head_problem() is None  # /readyz: the mark is now row 3
            assert one.mark is not None and one.mark[0] == 3
            await dba(
                db,
                "delete from gateway.audit_log where seq = 3",
                f"update gateway.audit_head set last_seq = {saved['last_seq']},"
                f" last_hash = '{saved['last_hash']}', mac = '{saved['mac']}'",
            )
            assert await one.head_problem() is not None  # /readyz says so ...
            with pytest.raises(AuditUnavailable):  # ... and the writer agrees
                await one.record([recent("one-3")])
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["one-1", "one-2"]
