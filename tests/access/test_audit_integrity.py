"""The audit trail under attack from inside the database and under partial failure: a cut tail
with the head rewritten and its MAC blanked (refused until `gateway audit repair`, which
leaves a trace in the chain), retention that trusts no row's own time, one unwritable record
in a group commit, records of requests that gave up, and anchoring the head outside."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.app import open_store
from gateway.audit import AuditLog, AuditRecord
from gateway.config import AuditConfig
from gateway.errors import AuditUnavailable
from tests.access.conftest import (
    HEAD_SUBJECT,
    KEYS,
    demo_gateway,
    error_codes,
    fetch,
    scratch_store,
    write_gateway_toml,
)
from tests.access.test_audit import (
    HEAD_NAME,
    LOOKUP,
    MEMBERS,
    cli,
    copy_of,
    officer_token,
    old_record,
    post,
    rid,
)
from tests.conftest import TEST_AUDIT_KEY, GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN

CUT_TAIL = [
    "delete from gateway.audit_log where seq > 3",
    """update gateway.audit_head set last_seq = 3, mac = '',
       last_hash = (select hash from gateway.audit_log where seq = 3)""",
]


def check(code: int, out: str, expected: int, *fragments: str) -> None:
    """A command's exit status and what its output must say."""
    assert code == expected, out
    for fragment in fragments:
        assert fragment in out, out


async def lookup(gateway: GatewayClient) -> dict[str, Any]:
    body: dict[str, Any] = await gateway.as_(officer_token()).query(LOOKUP, {"rrn": HEAD_RRN})
    return body


def assert_withheld(body: dict[str, Any]) -> None:
    assert body["data"] == {"resident": None}, body
    assert error_codes(body) == {("resident",): "AUDIT_UNAVAILABLE"}
    assert HEAD_NAME not in json.dumps(body)


async def assert_not_ready(gateway: GatewayClient) -> None:
    ready = await gateway.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "not ready"
    assert ready.json()["audit"]["ok"] is False
    assert "MAC" in ready.json()["audit"]["reason"]
    assert ready.json()["database"] == "up"


async def execute(dsn: str, *statements: str) -> None:
    for statement in statements:
        await fetch(dsn, statement)


@contextlib.asynccontextmanager
async def chain_of(
    admin_dsn: str, agency_db: ScratchDatabase, urls: dict[str, str], lookups: int
) -> AsyncIterator[ScratchDatabase]:
    """A store with ``lookups`` rows written by the gateway, which is stopped again."""
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, urls, db) as gateway:
            for rrn in (MEMBERS * 2)[:lookups]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        yield db


# --- finding 2: a cut tail with the head rewritten does not survive a restart --------------


async def test_a_cut_tail_with_a_blanked_head_is_withheld_across_restarts_until_repaired(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with chain_of(admin_dsn, agency_db, http_agencies, 6) as db:
        await execute(db.dsn, *CUT_TAIL)
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))

        for _ in range(2):  # a restart does not clear it
            async with demo_gateway(agency_db, http_agencies, db) as gateway:
                assert_withheld(await lookup(gateway))
                await assert_not_ready(gateway)
            code, out = await cli(["audit", "verify", "--config", path], capsys)
            assert code == 1, out
            assert "TAMPERED row 3: the chain head has no MAC" in out
        assert await fetch(db.dsn, "select mac from gateway.audit_head where mac = ''")
        code, out = await cli(["audit", "head", "--config", path], capsys)
        check(code, out, 1, "gateway audit repair")

        code, out = await cli(["audit", "repair", "--by", "ops-lee", "--config", path], capsys)
        assert code == 0, out
        assert "FOUND row 3: the chain head has no MAC" in out
        assert "last verifiable row 3" in out
        assert "recorded as row 4" in out

        repair = await fetch(
            db.dsn, "select * from gateway.audit_log where purpose = 'AUDIT_REPAIR'"
        )
        assert [(r["seq"], r["principal"]) for r in repair] == [(4, "ops-lee")]
        note = json.loads(repair[0]["note"])
        assert note["found_head"]["last_seq"] == 3
        assert note["found_head"]["mac"] == ""
        assert note["last_verified_seq"] == 3

        # Intact again, but never pristine: the repair is listed on every verify.
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        assert code == 0, out
        assert "4 records checked, intact" in out
        assert "NOTE row 4: audit repair recorded" in out
        assert "ops-lee" in out
        assert "1 recorded repair" in out

        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME
            assert (await gateway.http.get("/readyz")).status_code == 200
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "5 records checked, intact", "NOTE row 4")


async def test_a_running_gateway_stops_at_a_blanked_head_and_resumes_after_repair(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME
        await execute(db.dsn, "update gateway.audit_head set mac = ''")
        assert_withheld(await lookup(gateway))
        await assert_not_ready(gateway)
        rows = await fetch(db.dsn, "select seq from gateway.audit_log")
        assert len(rows) == 1  # nothing was written on top of the blanked head

        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        assert code == 0, out
        assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME
        assert (await gateway.http.get("/readyz")).status_code == 200
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "3 records checked, intact", "NOTE row 2")


async def test_a_deleted_head_row_is_not_recreated_over_existing_rows(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with chain_of(admin_dsn, agency_db, http_agencies, 3) as db:
        await execute(db.dsn, "delete from gateway.audit_head")
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            assert_withheld(await lookup(gateway))
            ready = await gateway.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["audit"]["reason"] == "the chain head row is missing"
        assert await fetch(db.dsn, "select * from gateway.audit_head") == []
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        check(code, out, 0, "recorded as row 4")
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "4 records checked, intact", "NOTE row 4")


# --- finding 3: retention walks the verified chain, not the rows' own times ---------------


def recent(label: str) -> AuditRecord:
    return dataclasses.replace(old_record(0, label), at=dt.datetime.now(dt.UTC))


async def store_with(
    db: ScratchDatabase, *batches: list[AuditRecord], timeout_s: float = 5.0
) -> None:
    pool = await open_store(db.dsn, KEYS)
    audit = AuditLog(pool, KEYS, timeout_s)
    await audit.start()
    try:
        for batch in batches:
            await audit.record(batch)
    finally:
        await audit.close()
        await pool.close()


async def test_a_recent_row_stamped_old_does_not_make_purge_delete_recent_rows(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with scratch_store(admin_dsn) as db:
        # Rows 1..3 past retention, rows 4..8 recent accesses to the head resident's record
        # (written without a gateway running: its hourly purge would run at start-up).
        await store_with(
            db,
            [old_record(902 - i, f"old-{i}") for i in range(3)],
            [recent(f"recent-{i}") for i in range(5)],
        )
        three_years_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3 * 365)
        await fetch(db.dsn, "update gateway.audit_log set at = $1 where seq = 7", three_years_ago)
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730"))

        code, out = await cli(["audit", "purge", "--config", path], capsys)
        assert code == 0, out
        assert "purged 3 audit records" in out
        rows = await fetch(db.dsn, "select seq from gateway.audit_log order by seq")
        assert [r["seq"] for r in rows] == [4, 5, 6, 7, 8]

        code, out = await cli(["audit", "verify", "--config", path], capsys)
        assert code == 1
        assert "TAMPERED row 7: changed" in out

        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            citizen = gateway.as_(token("citizen", rrn=HEAD_RRN, sub="citizen-head"))
            body = await citizen.query("{ myAccessLog(first: 50) { edges { node { purpose } } } }")
        assert "errors" not in body, body
        assert len(body["data"]["myAccessLog"]["edges"]) == 5


async def test_purge_stops_at_a_changed_row_among_old_ones_and_says_so(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with scratch_store(admin_dsn) as db:
        await store_with(db, [old_record(905 - i, f"old-{i}") for i in range(4)])
        await fetch(db.dsn, "update gateway.audit_log set principal = 'x' where seq = 3")
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730"))
        code, out = await cli(["audit", "purge", "--config", path], capsys)
        assert code == 1, out
        assert "purged 2 audit records" in out
        assert "STOPPED early: row 3 fails verification" in out
        rows = await fetch(db.dsn, "select seq from gateway.audit_log order by seq")
        assert [r["seq"] for r in rows] == [3, 4]
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 1, "TAMPERED row 3: changed")


async def test_purge_stops_where_times_run_backwards(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Row 2 was written (with the key: a writer with a wrong clock) stamped years before
    # row 1: it is no evidence of its age, so purge keeps it and everything after it.
    async with scratch_store(admin_dsn) as db:
        stamps = [900, 3000, 850, 0]
        await store_with(db, [old_record(days, f"r-{days}") for days in stamps])
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730"))
        code, out = await cli(["audit", "purge", "--config", path], capsys)
        assert code == 1, out
        assert "purged 1 audit records" in out
        assert "row 2 is stamped earlier than the rows before it" in out
        rows = await fetch(db.dsn, "select seq from gateway.audit_log order by seq")
        assert [r["seq"] for r in rows] == [2, 3, 4]
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "3 records checked, intact")


# --- finding 5: one unwritable record fails only its own request --------------------------


@pytest.mark.parametrize("bad", ["nul\x00byte", "lone\ud800surrogate"])
async def test_one_unwritable_record_fails_only_its_own_request(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        audit = AuditLog(pool, KEYS)
        await audit.start()
        try:
            labels = [f"good-{i}" for i in range(6)]
            batches = [[recent(label)] for label in labels]
            batches.insert(3, [dataclasses.replace(recent("bad"), principal=bad)])
            results = await asyncio.gather(
                *(audit.record(b) for b in batches), return_exceptions=True
            )
        finally:
            await audit.close()
            await pool.close()
        assert [type(r).__name__ for r in results] == ["NoneType"] * 3 + ["AuditUnavailable"] + [
            "NoneType"
        ] * 3
        rows = await fetch(db.dsn, "select request_id, subject from gateway.audit_log")
        assert sorted(r["request_id"] for r in rows) == labels
        assert {r["subject"] for r in rows} == {HEAD_SUBJECT}
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "6 records checked, intact")


# --- finding 7: no record for a response that was withheld --------------------------------


@contextlib.asynccontextmanager
async def head_locked(dsn: str) -> AsyncIterator[None]:
    """Another connection holds the chain head row: the writer waits behind it."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("select * from gateway.audit_head for update")
            yield
    finally:
        await conn.close()


async def test_records_of_a_request_that_gave_up_are_not_committed(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        audit = AuditLog(pool, KEYS, write_timeout_s=0.3)
        await audit.start()
        try:
            async with head_locked(db.dsn):
                with pytest.raises(AuditUnavailable):
                    await audit.record([recent("gave-up")])
                await asyncio.sleep(0.2)  # the writer is still waiting for the lock
            await audit.record([recent("after")])  # the writer has handled the stalled group
        finally:
            await audit.close()
            await pool.close()
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log order by seq")
        assert [r["request_id"] for r in rows] == ["after"]
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "1 records checked, intact")


async def test_a_withheld_response_leaves_no_record(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    audit = AuditConfig(key=TEST_AUDIT_KEY, write_timeout_ms=300)
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db, audit=audit) as gateway,
    ):
        async with head_locked(db.dsn):
            withheld = await post(gateway, officer_token(), LOOKUP, {"rrn": HEAD_RRN}, rid("w"))
            await asyncio.sleep(0.2)
        assert_withheld(withheld.json())
        served = await post(gateway, officer_token(), LOOKUP, {"rrn": HEAD_RRN}, rid("s"))
        assert served.json()["data"]["resident"]["name"] == HEAD_NAME
        rows = await fetch(db.dsn, "select request_id from gateway.audit_log")
        assert [r["request_id"] for r in rows] == [served.headers["x-request-id"]]


# --- anchoring the head outside the database ---------------------------------------------


async def test_a_head_recorded_outside_catches_a_rollback_and_a_repaired_cut(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with chain_of(admin_dsn, agency_db, http_agencies, 3) as db, copy_of(db) as older:
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            for rrn in MEMBERS[3:6]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "head", "--config", path], capsys)
        assert code == 0, out
        recorded = out.splitlines()[0]
        assert recorded.startswith("6:")
        assert len(recorded) == 2 + 64
        assert out.splitlines()[1].startswith("mac ")

        code, out = await cli(["audit", "verify", "--expect", recorded, "--config", path], capsys)
        check(code, out, 0, "NOTE row 6: matches the head recorded outside")

        # The database rolled back to its copy from three rows ago: intact on its own.
        (tmp_path / "older").mkdir()
        older_path = str(write_gateway_toml(tmp_path / "older", database_url=older.dsn))
        code, out = await cli(["audit", "verify", "--config", older_path], capsys)
        assert code == 0, out
        code, out = await cli(
            ["audit", "verify", "--expect", recorded, "--config", older_path], capsys
        )
        check(code, out, 1, "rolled back")

        # Rows 5 and 6 cut, the head blanked, then repaired: intact, but not the head we kept.
        await execute(
            db.dsn,
            "delete from gateway.audit_log where seq > 4",
            """update gateway.audit_head set last_seq = 4, mac = '',
               last_hash = (select hash from gateway.audit_log where seq = 4)""",
        )
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        assert code == 0, out
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        assert code == 0, out
        code, out = await cli(["audit", "verify", "--expect", recorded, "--config", path], capsys)
        assert code == 1, out
        assert "TAMPERED row 6: recorded outside as the head, but the chain ends at row 5" in out
