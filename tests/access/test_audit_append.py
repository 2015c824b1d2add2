"""The audit writer's one-statement commit (``AuditLog._write_appending``): taken while the
head row is the one this process last left, never when anything else moved it; what it
writes verifies as what the locked path writes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.app import open_store
from gateway.audit import APPEND_MAX_RECORDS, LOCKED_AFTER_MISS, AuditLog, AuditRecord
from gateway.audit_admin import verify
from gateway.errors import AuditUnavailable
from tests.access.conftest import KEYS, fetch, scratch_store
from tests.access.test_audit_integrity import head_locked, recent
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


async def test_a_large_group_is_copied_under_the_lock(admin_dsn: str) -> None:
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            many = [noted(f"many-{i}") for i in range(APPEND_MAX_RECORDS + 1)]
            await audit.record(many)
            assert audit.fast_commits == 0
            await audit.record([recent("after")])
            assert audit.fast_commits == 1
        assert await intact(db) == APPEND_MAX_RECORDS + 3


async def test_a_request_that_gave_up_behind_a_held_head_is_never_written(
    admin_dsn: str,
) -> None:
    """The fast path is on (one commit went through) when another transaction holds the head
    row: the one-statement commit does not wait for it, and the request, which gives up while
    the writer waits for the lock, leaves no record once the lock is released."""
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        audit = AuditLog(pool, KEYS, write_timeout_s=0.3)
        await audit.start()
        try:
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            assert audit.fast_commits == 1
            async with head_locked(db.dsn):
                with pytest.raises(AuditUnavailable):
                    await audit.record([recent("gave-up")])
                await asyncio.sleep(0.2)  # the writer still waits for the lock
            await audit.record([recent("after")])
        finally:
            await audit.close()
            await pool.close()
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["first", "second", "after"]
        assert await intact(db) == 3
