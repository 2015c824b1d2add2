"""The audit trail under attack from inside the database and under partial failure: a cut tail
with the head rewritten and its MAC blanked (refused until `gateway audit repair`, which
leaves a trace in the chain), recent rows deleted behind a moved anchor (repair records them
missing), an old genuine head restored (refused by a running gateway and, with head_file,
after a restart), retention that trusts no row's own time, one unwritable record in a group
commit, records of requests that gave up, and anchoring the head outside."""

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

from gateway import audit as audit_module
from gateway import config as config_module
from gateway.app import open_store
from gateway.audit import AuditLog, AuditRecord
from gateway.config import AuditConfig, ConfigError
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
        assert [r["seq"] for r in rows] == [4, 5, 6, 7, 8, 9]  # 9: the purge's own row

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
        assert [r["seq"] for r in rows] == [3, 4, 5]  # 5: the purge's own row
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
        assert [r["seq"] for r in rows] == [2, 3, 4, 5]  # 5: the purge's own row
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "4 records checked, intact")


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


# --- review F1: repair never takes the anchor from the head it cannot trust ----------------

MOVED_ANCHOR = {
    "head-anchor-moved-and-mac-blanked": [
        """update gateway.audit_head set anchor_seq = 4, mac = '',
           anchor_hash = (select hash from gateway.audit_log where seq = 4)""",
        "delete from gateway.audit_log where seq <= 4",
    ],
    "head-deleted": [
        "delete from gateway.audit_head",
        "delete from gateway.audit_log where seq <= 4",
    ],
}


async def access_log_size(gateway: GatewayClient) -> int:
    citizen = gateway.as_(token("citizen", rrn=HEAD_RRN, sub="citizen-head"))
    body = await citizen.query("{ myAccessLog(first: 50) { edges { node { purpose } } } }")
    assert "errors" not in body, body
    return len(body["data"]["myAccessLog"]["edges"])


@pytest.mark.parametrize("case", list(MOVED_ANCHOR))
async def test_rows_deleted_behind_a_moved_anchor_are_recorded_missing_by_repair(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            # Rows 1..8; the head resident's record was read in rows 5 and 7.
            for rrn in [*MEMBERS[1:5], HEAD_RRN, MEMBERS[5], HEAD_RRN, MEMBERS[6]]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        row3 = (await fetch(db.dsn, "select hash from gateway.audit_log where seq = 3"))[0]
        await execute(db.dsn, *MOVED_ANCHOR[case])
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))

        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 1, "rows 1..4 were deleted before this one")
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            assert_withheld(await lookup(gateway))

        code, out = await cli(["audit", "repair", "--by", "ops-lee", "--config", path], capsys)
        check(code, out, 0, "MISSING rows 1..4 (4) before the first row", "recorded as row 9")
        assert "no missing rows counted" not in out
        note = json.loads(
            (await fetch(db.dsn, "select note from gateway.audit_log where seq = 9"))[0]["note"]
        )
        assert note["missing_before"] == [1, 4]
        assert note["chain_anchor"][0] == 0  # genesis: no purge row in this chain

        # Exit 0 (every gap is recorded by a repair row), but never "intact": the gap is named.
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "NOTE row 9: audit repair", "MISSING rows 1..4 (4 rows missing)")
        check(code, out, 0, "5 records checked, no unrecorded problems, but 4 rows MISSING")
        assert "intact" not in out
        # A head recorded outside before the deletion: deleted, not purged.
        expect = f"3:{row3['hash']}"
        code, out = await cli(["audit", "verify", "--expect", expect, "--config", path], capsys)
        check(code, out, 1, "TAMPERED row 3: recorded outside as the head, now missing")
        assert "recorded outside; purged by retention" not in out

        subjects = await fetch(
            db.dsn,
            "select seq from gateway.audit_log where subject = $1 order by seq",
            HEAD_SUBJECT,
        )
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            assert [r["seq"] for r in subjects] == [5, 7]
            assert await access_log_size(gateway) == 2
            assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME


async def test_a_legitimate_purge_then_repair_reports_no_rows_missing(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with scratch_store(admin_dsn) as db:
        await store_with(db, [old_record(905 - i, f"old-{i}") for i in range(3)], [recent("kept")])
        row2 = (await fetch(db.dsn, "select hash from gateway.audit_log where seq = 2"))[0]
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730"))
        code, out = await cli(["audit", "purge", "--config", path], capsys)
        check(code, out, 0, "purged 3 audit records")
        purge = await fetch(db.dsn, "select * from gateway.audit_log where seq = 5")
        assert purge[0]["purpose"] == "AUDIT_PURGE"
        assert json.loads(purge[0]["note"])["anchor"][0] == 3

        expect = f"2:{row2['hash']}"
        code, out = await cli(["audit", "verify", "--expect", expect, "--config", path], capsys)
        check(code, out, 0, "NOTE row 2: recorded outside; purged by retention", "intact")

        await execute(db.dsn, "update gateway.audit_head set mac = ''")
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        check(code, out, 0, "no missing rows counted", "recorded as row 6")
        assert "MISSING" not in out
        code, out = await cli(["audit", "verify", "--expect", expect, "--config", path], capsys)
        check(code, out, 0, "3 records checked, intact", "purged by retention")
        assert "MISSING" not in out


async def test_an_old_purge_row_is_purged_in_turn_and_the_anchor_stays_provable(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with scratch_store(admin_dsn) as db:
        await store_with(db, [old_record(905 - i, f"old-{i}") for i in range(3)])
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730"))
        code, out = await cli(["audit", "purge", "--config", path], capsys)
        check(code, out, 0, "purged 3 audit records")  # row 4: the purge row
        await fetch(db.dsn, "update gateway.audit_log set at = at - interval '800 days'")
        # Re-stamping row 4 breaks its hash: purge stops there, as it should.
        code, out = await cli(["audit", "purge", "--config", path], capsys)
        check(code, out, 1, "STOPPED early: row 4 fails verification")
    async with scratch_store(admin_dsn) as db:
        await store_with(db, [old_record(905 - i, f"old-{i}") for i in range(3)])
        pool = await open_store(db.dsn, KEYS)
        try:
            from gateway.audit_admin import purge_verified

            assert (await purge_verified(pool, KEYS, 730)).deleted == 3  # row 4 states anchor 3
            await store_with(db, [recent("a"), recent("b")])  # rows 5, 6
            assert (await purge_verified(pool, KEYS, 730)).deleted == 0
            # With a retention of 0 days everything up to now is past it, the purge row too.
            assert (await purge_verified(pool, KEYS, -1)).deleted == 3  # rows 4..6
        finally:
            await pool.close()
        rows = await fetch(db.dsn, "select seq, purpose, note from gateway.audit_log")
        assert [(r["seq"], r["purpose"]) for r in rows] == [(7, "AUDIT_PURGE")]
        assert json.loads(rows[0]["note"])["anchor"][0] == 6
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "1 records checked, intact")
        await execute(db.dsn, "update gateway.audit_head set mac = ''")
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        check(code, out, 0, "no missing rows counted", "recorded as row 8")


async def test_a_sealed_head_anchor_no_purge_row_states_is_flagged(
    admin_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A store purged before purge rows existed (or an anchor moved with the key): the head's
    # MAC is right, but the chain does not prove that rows 1..2 went by retention.
    async with scratch_store(admin_dsn) as db:
        await store_with(db, [recent(f"r-{i}") for i in range(4)])
        head = (await fetch(db.dsn, "select * from gateway.audit_head"))[0]
        row2 = (await fetch(db.dsn, "select hash from gateway.audit_log where seq = 2"))[0]
        mac = KEYS.head(head["last_seq"], head["last_hash"], 2, row2["hash"])
        await execute(db.dsn, "delete from gateway.audit_log where seq <= 2")
        await fetch(
            db.dsn,
            "update gateway.audit_head set anchor_seq = 2, anchor_hash = $1, mac = $2",
            row2["hash"],
            mac,
        )
        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 1, "the head's anchor is not recorded in the chain")
        code, out = await cli(["audit", "repair", "--config", path], capsys)
        check(code, out, 0, "MISSING rows 1..2 (2) before the first row")
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "2 rows MISSING")


# --- review F2: an old genuine head restored over cut rows ---------------------------------


async def save_head(dsn: str) -> dict[str, Any]:
    return dict((await fetch(dsn, "select * from gateway.audit_head"))[0])


async def replay(dsn: str, head: dict[str, Any]) -> None:
    """Cut the rows after the saved head and put the saved (genuine) head row back."""
    await fetch(dsn, "delete from gateway.audit_log where seq > $1", head["last_seq"])
    await fetch(
        dsn,
        """update gateway.audit_head set last_seq = $1, last_hash = $2, anchor_seq = $3,
           anchor_hash = $4, mac = $5""",
        head["last_seq"],
        head["last_hash"],
        head["anchor_seq"],
        head["anchor_hash"],
        head["mac"],
    )


async def assert_refused_went_back(gateway: GatewayClient) -> None:
    assert_withheld(await lookup(gateway))
    ready = await gateway.http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert "went back to row 3 from row 6" in ready.json()["audit"]["reason"]


async def test_a_replayed_head_is_refused_by_a_running_gateway_until_repaired(
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
        for rrn in MEMBERS[:3]:
            await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        saved = await save_head(db.dsn)
        for rrn in MEMBERS[3:6]:
            await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        recorded = f"6:{(await save_head(db.dsn))['last_hash']}"
        await replay(db.dsn, saved)

        path = str(write_gateway_toml(tmp_path, database_url=db.dsn))
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "3 records checked, intact")  # undetectable from inside alone
        await assert_refused_went_back(gateway)
        rows = await fetch(db.dsn, "select seq from gateway.audit_log")
        assert len(rows) == 3  # no new row 4 on top of the restored head

        code, out = await cli(["audit", "repair", "--config", path], capsys)
        check(code, out, 0, "nothing to repair")  # the CLI has no memory of row 6...
        code, out = await cli(
            ["audit", "repair", "--expect", recorded, "--config", path], capsys
        )  # ...but the head kept outside does
        check(code, out, 0, "went back to row 3 from row 6", "MISSING rows 4..6 (3) at the end")
        check(code, out, 0, "recorded as row 7")
        assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME
        assert (await gateway.http.get("/readyz")).status_code == 200
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "3 rows MISSING", "NOTE row 7: audit repair")


async def test_a_replayed_head_is_refused_after_a_restart_with_head_file(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    head_file = tmp_path / "outside" / "audit-head"
    head_file.parent.mkdir()
    audit = AuditConfig(key=TEST_AUDIT_KEY, head_file=str(head_file))
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, http_agencies, db, audit=audit) as gateway:
            for rrn in MEMBERS[:3]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
            saved = await save_head(db.dsn)
            for rrn in MEMBERS[3:6]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        head6 = await save_head(db.dsn)
        assert head_file.read_text() == f"6:{head6['last_hash']}\n"  # written on close
        await replay(db.dsn, saved)

        for _ in range(2):  # a restart does not clear it
            async with demo_gateway(agency_db, http_agencies, db, audit=audit) as gateway:
                await assert_refused_went_back(gateway)
        assert len(await fetch(db.dsn, "select seq from gateway.audit_log")) == 3
        assert head_file.read_text() == f"6:{head6['last_hash']}\n"

        path = str(
            write_gateway_toml(tmp_path, database_url=db.dsn, extra=f'head_file = "{head_file}"')
        )
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 1, "recorded outside as the head, but the chain ends at row 3")
        code, out = await cli(["audit", "repair", "--by", "ops-lee", "--config", path], capsys)
        check(code, out, 0, "went back to row 3 from row 6", "MISSING rows 4..6 (3) at the end")
        check(code, out, 0, "recorded as row 7", f"recorded the new head in {head_file}")
        repair = (await fetch(db.dsn, "select * from gateway.audit_log where seq = 7"))[0]
        assert head_file.read_text() == f"7:{repair['hash']}\n"
        assert json.loads(repair["note"])["missing"] == [4, 6]

        async with demo_gateway(agency_db, http_agencies, db, audit=audit) as gateway:
            assert (await lookup(gateway))["data"]["resident"]["name"] == HEAD_NAME
            assert (await gateway.http.get("/readyz")).status_code == 200
        assert head_file.read_text().startswith("8:")
        code, out = await cli(["audit", "verify", "--config", path], capsys)
        check(code, out, 0, "NOTE row 8: matches the head recorded outside", "3 rows MISSING")


async def test_a_head_file_that_is_not_a_head_refuses(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Path
) -> None:
    head_file = tmp_path / "audit-head"
    head_file.write_text("not a head\n")
    audit = AuditConfig(key=TEST_AUDIT_KEY, head_file=str(head_file))
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db, audit=audit) as gateway,
    ):
        assert_withheld(await lookup(gateway))
        ready = await gateway.http.get("/readyz")
        assert "head file cannot be read" in ready.json()["audit"]["reason"]


def test_head_file_is_configured_by_file_or_environment(tmp_path: Path) -> None:
    toml = write_gateway_toml(tmp_path, database_url="postgresql://x/y")
    assert config_module.load(toml, environ={}).audit.head_file == ""
    where = str(tmp_path / "head")
    env = {"GATEWAY__AUDIT__HEAD_FILE": where}
    assert config_module.load(toml, environ=env).audit.head_file == where
    with pytest.raises(ConfigError, match="head_file: directory"):
        config_module.load(toml, environ={"GATEWAY__AUDIT__HEAD_FILE": "/no/such/dir/head"})
    with pytest.raises(ConfigError, match="head_file must be a file"):
        config_module.load(toml, environ={"GATEWAY__AUDIT__HEAD_FILE": str(tmp_path)})


FORGE = """insert into gateway.audit_log (seq, at, request_id, principal, roles, agency,
             purpose, subject, disclosed, denied, prev_hash, hash)
           select $1, now(), 'forged', 'someone', 'police_officer', 'police',
             'WELFARE_ELIGIBILITY', subject, array['Resident.name'], '{}', hash, repeat('0', 64)
           from gateway.audit_log where subject = $2 order by seq desc limit 1"""


async def test_rows_appended_outside_the_chain_are_not_in_a_citizens_access_log(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    """The serving gateway's database role may append rows (docs/deployment.md): whoever has
    its credentials, or a DBA, could append rows naming a resident (its subject is in the
    table) that no request wrote. They fail their hash and lie outside the sealed head's
    range: the citizen's access log shows only the chain's rows, also while the head is
    refused."""
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            for rrn in (HEAD_RRN, MEMBERS[1], HEAD_RRN):
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
            assert await access_log_size(gateway) == 2
            for seq in (10**12, 10**12 + 1, -5, 0):  # past the head, and before the anchor
                await fetch(db.dsn, FORGE, seq, HEAD_SUBJECT)
            assert await access_log_size(gateway) == 2
            citizen = gateway.as_(token("citizen", rrn=HEAD_RRN, sub="citizen-head"))
            body = await citizen.query("{ myAccessLog(first: 1) { edges { node { role } } } }")
            assert body["data"]["myAccessLog"]["edges"] == [{"node": {"role": "welfare_officer"}}]
        await execute(db.dsn, "update gateway.audit_head set mac = ''")
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            assert await access_log_size(gateway) == 2


async def test_workers_sharing_a_head_file_never_move_it_back(
    admin_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``workers = N`` every worker keeps its own mark and writes the same
    ``[audit] head_file``: a worker that saw an older head must not overwrite a newer one
    (after a restart the gateway would then accept a head rolled back to between the two)."""
    monkeypatch.setattr(audit_module, "HEAD_FILE_EVERY_S", 60)  # B's next save waits: close
    head_file = tmp_path / "audit-head"
    async with scratch_store(admin_dsn) as db:
        pool = await open_store(db.dsn, KEYS)
        a = AuditLog(pool, KEYS, head_file=str(head_file))
        b = AuditLog(pool, KEYS, head_file=str(head_file))
        await a.start()
        await b.start()
        try:
            await b.record([recent("b-1")])  # B's mark 1, saved at once
            for _ in range(100):
                if head_file.exists():
                    break
                await asyncio.sleep(0.05)
            await b.record([recent("b-2")])  # B's mark 2: saved on close (next save in 60 s)
            for i in range(3):
                await a.record([recent(f"a-{i}")])  # rows 3..5
        finally:
            await a.close()  # records 5
            await b.close()  # would record 2
            await pool.close()
        last = await fetch(db.dsn, "select last_seq, last_hash from gateway.audit_head")
    assert head_file.read_text().strip() == f"5:{last[0]['last_hash']}"
    assert last[0]["last_seq"] == 5


async def test_a_row_forged_at_the_chains_next_place_takes_the_replica_out_of_its_pool(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    """A row inserted where the next commit must go (the app role may INSERT) makes every
    commit fail: resident data is withheld, and /readyz says not ready (with the failure's
    kind, never a record's text) until the row is gone; then both recover."""
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        assert "Kim" in json.dumps(await lookup(gateway))
        [head] = await fetch(db.dsn, "select last_seq from gateway.audit_head")
        await fetch(db.dsn, FORGE, head["last_seq"] + 1, HEAD_SUBJECT)
        for _ in range(3):
            assert_withheld(await lookup(gateway))
        ready = await gateway.http.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["audit"]["ok"] is False
        assert "audit commits failed (UniqueViolationError)" in ready.json()["audit"]["reason"]
        await execute(db.dsn, "delete from gateway.audit_log where request_id = 'forged'")
        assert "Kim" in json.dumps(await lookup(gateway))
        ready = await gateway.http.get("/readyz")
        assert ready.status_code == 200, ready.text
