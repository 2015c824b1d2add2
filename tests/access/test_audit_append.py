"""The audit writer's one-statement commit (``AuditLog._write_appending``): taken while the
head row is the one this process last left, never when anything else moved it; what it
writes verifies as what the locked path writes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from gateway.app import open_store
from gateway.audit import APPEND_MAX_RECORDS, LOCKED_AFTER_MISS, AuditLog, AuditRecord
from gateway.audit_admin import purge_verified, repair, verify
from gateway.audit_chain import insert_row
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
            assert one.mark is not None
            assert one.mark[0] == 3
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


def awkward(i: int) -> AuditRecord:
    """What text, arrays and times can hold that a JSON or array round trip might change."""
    texts = [
        'q"uote', "back\\slash", "tab\tnew\nline\r", "\x01\x1f\x7f", "한국어 주민", "emoji 🧾",
        "", " lead and trail ", "{a,b}", "NULL", "null", "\u2028\u2029", "'single'", "é",
    ]  # fmt: skip
    zones = [dt.UTC, dt.timezone(dt.timedelta(hours=9)), dt.timezone(dt.timedelta(hours=-5))]
    at = dt.datetime(2026, 3, 1, 12, 0, 0, i % 1_000_000, tzinfo=zones[i % 3])
    if i % 97 == 0:
        at = dt.datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC)  # before the epoch
    pick = texts[i % len(texts)]
    return dataclasses.replace(
        recent(f"aw{i}"),
        at=at,
        principal=pick,
        roles=texts[(i + 1) % len(texts)],
        agency=None if i % 2 else pick,
        purpose=texts[(i + 2) % len(texts)],
        subject=texts[(i + 3) % len(texts)],
        disclosed=() if i % 5 == 0 else (pick, "NULL", "", "a,b", '"x"', "{}"),
        denied=(pick,) * (i % 4),
        note=None if i % 3 else pick,
    )


async def test_the_one_statement_commit_writes_what_the_locked_one_writes(
    admin_dsn: str,
) -> None:
    """The same records (escapes, control characters, non-ASCII, NULLs, empty and odd array
    elements, zones, a time before the epoch, a group past MAX_BATCH) through each path: the
    rows are equal column for column and both chains verify."""
    batches = [[awkward(i)] for i in range(3)] + [[awkward(i) for i in range(3, 540)]]
    tables = []
    for fast in (True, False):
        async with scratch_store(admin_dsn) as db:
            async with writers(db, 1) as (audit,):
                for batch in batches:
                    if not fast:
                        audit._locked_only = 10**6
                    await audit.record(batch)
                assert (audit.fast_commits > 0) is fast
            assert await intact(db) == 540
            rows = await fetch(db.dsn, "select * from gateway.audit_log order by seq")
            tables.append([tuple(r) for r in rows])
    assert tables[0] == tables[1]


async def test_a_row_forged_at_the_next_place_fails_the_statement_whole(
    admin_dsn: str,
) -> None:
    """A DBA inserts a row at the seq the writer takes next: the one statement fails on the
    unique seq and moves nothing (the head update and the inserts are one statement); the
    request is refused, and once the row is gone the writer goes on, the chain intact."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            [before] = await fetch(db.dsn, "select * from gateway.audit_head")
            await dba(
                db,
                "insert into gateway.audit_log select 3, at, 'forged', principal, roles, agency,"
                " purpose, subject, disclosed, denied, hash, hash, note from gateway.audit_log"
                " where seq = 2",
            )
            with pytest.raises(AuditUnavailable):
                await audit.record([recent("third"), recent("third-b")])
            [after] = await fetch(db.dsn, "select * from gateway.audit_head")
            assert dict(after) == dict(before)
            await dba(db, "delete from gateway.audit_log where seq = 3")
            await audit.record([recent("fourth")])
        assert await intact(db) == 3
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["first", "second", "fourth"]


async def test_a_head_held_and_moved_by_another_writer_is_a_miss_then_checked(
    admin_dsn: str,
) -> None:
    """Another writer holds the head row's lock and moves it (a sealed, genuine head: one
    more row): the one statement does not wait for the row (SKIP LOCKED) and writes nothing;
    the commit goes the locked way, waits there, and appends after the other's row."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (one,):
            await one.record([recent("one-1")])
            await one.record([recent("one-2")])
            other = await asyncpg.connect(db.dsn)
            try:
                tx = other.transaction()
                await tx.start()
                await other.execute("select * from gateway.audit_head for update")
                pending = asyncio.ensure_future(one.record([recent("one-3")]))
                assert await waiting_for_the_head(db.dsn)  # the locked path, behind us
                # What a second worker's locked commit does under that lock: one row, and
                # the head moved and sealed.
                head = await other.fetchrow("select * from gateway.audit_head")
                assert head is not None
                seq, record = head["last_seq"] + 1, recent("two-1")
                digest = KEYS.chain(seq, record, head["last_hash"])
                await insert_row(other, seq, record, head["last_hash"], digest)
                await other.execute(
                    "update gateway.audit_head set last_seq = $1, last_hash = $2, mac = $3",
                    seq, digest, KEYS.head(seq, digest, head["anchor_seq"], head["anchor_hash"]),
                )  # fmt: skip
                await tx.commit()
            finally:
                await other.close()
            await pending
            assert one.fast_commits == 1
            assert one._locked_only == LOCKED_AFTER_MISS - 1
        assert await intact(db) == 4
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["one-1", "one-2", "two-1", "one-3"]


async def waiting_for_the_head(dsn: str) -> int:
    """The backend pid of the writer once it waits on the head row's lock (the locked path:
    the one statement never waits for it). Asked on a connection of its own, outside any
    transaction: within one, pg_stat_activity keeps its first snapshot."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(200):
            pid = await conn.fetchval(
                "select pid from pg_stat_activity where datname = current_database()"
                " and wait_event_type = 'Lock'"
                " and query like '%audit_head where id = 1 for update%'"
            )
            if pid:
                return int(pid)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    raise AssertionError("the writer never waited on the head row")


async def test_a_connection_dropped_while_the_writer_waits_writes_nothing_twice(
    admin_dsn: str,
) -> None:
    """The fast path is on when the head row is held; the writer's backend is terminated
    while it waits for the lock (a DBA, a restarting server): no record is written twice, a
    request told its access was not recorded has no row, one answered has its row, and the
    chain verifies."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            assert audit.fast_commits == 1
            other = await asyncpg.connect(db.dsn)
            try:
                async with other.transaction():
                    await other.execute("select * from gateway.audit_head for update")
                    pending = asyncio.gather(
                        audit.record([recent("lost-a")]), audit.record([recent("lost-b")]),
                        return_exceptions=True,
                    )  # fmt: skip
                    pid = await waiting_for_the_head(db.dsn)
                    assert await other.fetchval("select pg_terminate_backend($1)", pid)
                    await asyncio.sleep(0.1)
                results = await pending
            finally:
                await other.close()
            await audit.record([recent("third")])
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        ids = [r["request_id"] for r in rows]
        assert len(ids) == len(set(ids)), ids
        for label, result in zip(("lost-a", "lost-b"), results, strict=True):
            assert isinstance(result, AuditUnavailable | None), result
            assert (label in ids) == (result is None), (label, result, ids)
        assert await intact(db) == len(ids)


async def test_a_purge_between_commits_sends_the_next_the_locked_way(admin_dsn: str) -> None:
    """Retention (``gateway audit purge``, another process) moves the head and its anchor:
    the next commit misses, is checked under the lock, and the chain verifies from the new
    anchor."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            old = dataclasses.replace(recent("old"), at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            await audit.record([old])
            await audit.record([old, recent("kept")])
            pool = await asyncpg.create_pool(db.dsn, min_size=1, max_size=1)
            try:
                result = await purge_verified(pool, KEYS, 30)
            finally:
                await pool.close()
            assert result.deleted == 2
            await audit.record([recent("after")])
            assert audit.fast_commits == 1
            assert audit._locked_only == LOCKED_AFTER_MISS - 1
        assert await intact(db) == 3  # kept, the purge row, after


async def test_the_least_privilege_role_commits_in_one_statement(admin_dsn: str) -> None:
    """docs/deployment.md's gateway_app (INSERT and SELECT on audit_log; SELECT, INSERT,
    UPDATE on audit_head) is enough for the one statement."""
    from tests.gateway.test_db_roles import as_role, role_store

    async with role_store(admin_dsn) as (db, names):
        pool = await open_store(as_role(db.dsn, names["gateway_app"]), KEYS)
        audit = AuditLog(pool, KEYS)
        await audit.start()
        try:
            for i in range(4):
                await audit.record([noted(f"n{i}"), recent(f"r{i}")])
            assert audit.fast_commits == 3
        finally:
            await audit.close()
            await pool.close()
        assert await intact(db) == 8


async def test_rows_the_store_silently_drops_are_not_written_twice(admin_dsn: str) -> None:
    """A trigger (a DBA's) drops some of the rows the statement inserts: the head has moved
    and the other rows are in, so the commit is no "miss" to be written again the locked way
    (every record a second time); the requests are refused, and verify names the gap."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            await dba(
                db,
                """create function gateway.drop_some() returns trigger language plpgsql as
                   $$ begin if new.request_id like 'drop%' then return null; end if;
                      return new; end $$""",
                "create trigger drop_some before insert on gateway.audit_log"
                " for each row execute function gateway.drop_some()",
            )
            with pytest.raises(AuditUnavailable):
                await audit.record([recent("kept"), recent("drop-me")])
            audit._locked_only = 10**6  # the locked path: rolled back, retried one by one
            with pytest.raises(AuditUnavailable):
                await audit.record([recent("drop-too")])
            await audit.record([recent("kept-too")])
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["first", "second", "kept", "kept-too"]


async def test_a_request_that_gave_up_while_the_head_was_locked_is_left_out(
    admin_dsn: str,
) -> None:
    """The head row is locked (a DBA, another worker's stuck transaction) past the request's
    deadline: the locked path claims only after it holds the lock, so the refused request's
    records are never written (the module's contract). The one statement claims first, but
    does not wait for the lock (SKIP LOCKED) and gives its claim back when it misses."""
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        audit = AuditLog(pool, KEYS, write_timeout_s=0.2)
        await audit.start()
        try:
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            other = await asyncpg.connect(db.dsn)
            try:
                async with other.transaction():
                    await other.execute("select * from gateway.audit_head for update")
                    with pytest.raises(AuditUnavailable):
                        await audit.record([recent("gave-up")])  # nothing released
            finally:
                await other.close()
            await audit.record([recent("third")])
        finally:
            await audit.close()
            await pool.close()
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["first", "second", "third"]


async def test_writers_racing_on_one_chain_lose_and_repeat_nothing(admin_dsn: str) -> None:
    """Three writers (as workers or replicas) commit concurrently, each taking the one
    statement when it can and the lock when it misses, with /readyz's head checks between:
    every record is in the chain exactly once and the chain verifies."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 3) as logs:

            async def requests(i: int, audit: AuditLog) -> None:
                for j in range(40):
                    audit._locked_only = 0  # no rest after a miss: try the statement always
                    await audit.record([recent(f"w{i}-{j}"), recent(f"w{i}-{j}-b")])
                    if j % 7 == 0:
                        assert await audit.head_problem() is None

            # How many commits go through in one statement depends on the race (a head
            # another writer holds is skipped, never waited for): what must hold is below.
            await asyncio.gather(*(requests(i, log) for i, log in enumerate(logs)))
        assert await intact(db) == 240
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log")
        assert sorted(r["request_id"] for r in rows) == sorted(
            f"w{i}-{j}{b}" for i in range(3) for j in range(40) for b in ("", "-b")
        )


async def test_a_repair_between_commits_sends_the_next_the_locked_way(admin_dsn: str) -> None:
    """``gateway audit repair`` re-seals the head (here: after a DBA blanked its MAC) and
    appends its row: the next commit misses, is checked under the lock, and goes on after the
    repair row; the chain verifies."""
    async with scratch_store(admin_dsn) as db:
        async with writers(db, 1) as (audit,):
            await audit.record([recent("first")])
            await audit.record([recent("second")])
            await dba(db, "update gateway.audit_head set mac = ''")
            with pytest.raises(AuditUnavailable):
                await audit.record([recent("refused")])
            conn = await asyncpg.connect(db.dsn)
            try:
                assert (await repair(conn, KEYS, "operator")).found
            finally:
                await conn.close()
            await audit.record([recent("after")])
            await audit.record([recent("after-2")])
            assert audit.fast_commits == 1  # second only: the miss rests it for 64 commits
        assert await intact(db) == 5
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"][:6] for r in rows] == [
            "first", "second", "repair", "after", "after-"
        ]  # fmt: skip


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
