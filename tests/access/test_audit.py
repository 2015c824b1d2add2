"""The audit trail: one row per resident per request, committed before the response, no plain
RRNs, tamper evidence checked by `gateway audit verify`, withholding when the store is down,
group commit and retention."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway import audit as audit_module
from gateway.audit import AuditKeys, AuditRecord
from gateway.cli import main
from gateway.demo.embedded import with_database
from tests.access.conftest import (
    HEAD_SUBJECT,
    KEYS,
    demo_config,
    demo_gateway,
    error_codes,
    fetch,
    scratch_store,
    served_async,
    write_gateway_toml,
)
from tests.conftest import TEST_AUDIT_KEY, GatewayClient, ScratchDatabase, drop_database, token
from tests.data import HEAD_RRN, members

MEMBERS = [rrn for rrn, *_ in members()]
HEAD_NAME = "Kim Min-jun"
OFFICER_SUB = "officer-park-0042"

LOOKUP = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
  name militaryService { status } taxes { year } } }"""


def officer_token() -> str:
    return token("welfare_officer", agency="welfare", sub=OFFICER_SUB)


async def post(
    gateway: GatewayClient,
    bearer: str,
    query: str,
    variables: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    response = await gateway.http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    if request_id:
        # The gateway names every request itself (the client's id comes back beside it).
        assert response.headers["x-client-request-id"] == request_id
        GATEWAY_IDS[request_id] = response.headers["x-request-id"]
    return response


#: The tests' own request labels -> the ids the gateway gave those requests.
GATEWAY_IDS: dict[str, str] = {}


async def rows_of(dsn: str, request_id: str) -> list[asyncpg.Record]:
    return await fetch(
        dsn,
        "select * from gateway.audit_log where request_id = $1 order by seq",
        GATEWAY_IDS.get(request_id, request_id),
    )


def rid(label: str) -> str:
    return f"{label}-{secrets.token_hex(4)}"


async def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the command line in a thread (it calls asyncio.run) and capture its output."""
    code = await asyncio.to_thread(main, args)
    return code, capsys.readouterr().out


# --- one row per resident per request -----------------------------------------------------


async def test_a_lookup_leaves_one_row_committed_before_the_response(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("one")
    written = demo.app.state.runtime.audit.records_written
    response = await post(demo, officer_token(), LOOKUP, {"rrn": HEAD_RRN}, request_id)
    answered = dt.datetime.now(dt.UTC)
    # Read at once, from another connection: the row was committed before the response.
    rows = await rows_of(store.dsn, request_id)
    assert response.json()["data"]["resident"]["name"] == HEAD_NAME
    assert len(rows) == 1
    row = rows[0]
    assert row["subject"] == HEAD_SUBJECT
    assert row["purpose"] == "WELFARE_ELIGIBILITY"
    assert row["roles"] == "welfare_officer"
    assert row["agency"] == "welfare"
    assert row["principal"] == OFFICER_SUB
    assert list(row["disclosed"]) == ["Resident.name"]
    assert list(row["denied"]) == ["Resident.militaryService", "Resident.taxes"]
    assert row["at"] <= answered
    assert demo.app.state.runtime.audit.records_written == written + 1


async def test_a_household_lookup_leaves_one_row_per_member(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("household")
    await post(
        demo,
        officer_token(),
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name household { size members { name militaryService { status } } } } }""",
        {"rrn": HEAD_RRN},
        request_id,
    )
    rows = await rows_of(store.dsn, request_id)
    assert len(rows) == 20
    assert {r["subject"] for r in rows} == {KEYS.subject(m) for m in MEMBERS}
    by_subject = {r["subject"]: r for r in rows}
    head = by_subject[HEAD_SUBJECT]
    assert set(head["disclosed"]) >= {"Resident.name", "Resident.household", "Household.members"}
    for member in MEMBERS[1:]:
        row = by_subject[KEYS.subject(member)]
        assert list(row["disclosed"]) == ["Resident.name"]
        assert list(row["denied"]) == ["Resident.militaryService"]
        assert row["purpose"] == "WELFARE_ELIGIBILITY"


async def test_a_batch_leaves_one_row_per_resident_even_when_repeated(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("batch")
    await post(
        demo,
        token("tax_officer", agency="nts", sub="tax-1"),
        """query($rrns: [String!]!) { residents(rrns: $rrns, purpose: TAX_ADMINISTRATION) {
             name taxes { year } } }""",
        {"rrns": [HEAD_RRN, MEMBERS[1], HEAD_RRN.replace("-", ""), MEMBERS[2]]},
        request_id,
    )
    rows = await rows_of(store.dsn, request_id)
    assert sorted(r["subject"] for r in rows) == sorted(
        KEYS.subject(r) for r in (HEAD_RRN, MEMBERS[1], MEMBERS[2])
    )
    read = {"Resident.name", "Resident.taxes", "TaxRecord.year"}
    assert all(set(r["disclosed"]) == read for r in rows)
    who = {(r["roles"], r["agency"], r["principal"]) for r in rows}
    assert who == {("tax_officer", "nts", "tax-1")}


async def test_a_refused_only_lookup_is_recorded_as_denied(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("denied")
    await post(
        demo,
        officer_token(),
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             militaryService { status } } }""",
        {"rrn": MEMBERS[3]},
        request_id,
    )
    rows = await rows_of(store.dsn, request_id)
    assert [(list(r["disclosed"]), list(r["denied"])) for r in rows] == [
        ([], ["Resident.militaryService"])
    ]


async def test_a_citizens_own_lookups_are_recorded_per_view(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("self")
    bearer = token("citizen", rrn=MEMBERS[4], sub="citizen-4")
    await post(demo, bearer, "{ me { name household { members { name } } } }", None, request_id)
    rows = await rows_of(store.dsn, request_id)
    views = {(r["subject"], r["purpose"]) for r in rows}
    assert (KEYS.subject(MEMBERS[4]), "SELF") in views
    others = {s for s, p in views if p == "SELF_HOUSEHOLD"}
    assert others == {KEYS.subject(m) for m in MEMBERS if m != MEMBERS[4]}
    assert len(rows) == 20
    assert {r["agency"] for r in rows} == {None}


async def test_requests_without_resident_data_leave_no_rows(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    request_id = rid("status")
    await post(demo, token("operator"), "{ agencies { code } }", None, request_id)
    assert await rows_of(store.dsn, request_id) == []


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param("rrn", id="rrn-only"),
        pytest.param("__typename", id="existence-only"),
    ],
)
async def test_a_lookup_that_returns_only_the_rrn_is_still_audited(
    demo: GatewayClient, store: ScratchDatabase, selection: str
) -> None:
    # The tax officer's view shows the RRN whole: the answer is resident data (and it says
    # that the resident exists), so it must be on the record like any other disclosure.
    request_id = rid("rrn-only")
    response = await post(
        demo,
        token("tax_officer", agency="nts", sub="tax-2"),
        "query($rrn: String!) { resident(rrn: $rrn, purpose: TAX_ADMINISTRATION) { %s } }".replace(
            "%s", selection
        ),
        {"rrn": HEAD_RRN.replace("-", "")},
        request_id,
    )
    assert response.json()["data"]["resident"] is not None  # disclosed, so it must be recorded
    rows = await rows_of(store.dsn, request_id)
    assert len(rows) == 1, "a resident lookup was answered without an audit record"


async def test_no_plain_rrn_in_any_audit_or_consent_row(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    citizen = demo.as_(token("citizen", rrn=HEAD_RRN, sub="citizen-head"))
    granted = await citizen.query(
        'mutation { grantConsent(purpose: WELFARE_ELIGIBILITY, agency: "welfare") { id } }'
    )
    assert "errors" not in granted
    await citizen.query("{ me { rrn name household { members { rrn name } } } }")
    await post(demo, officer_token(), LOOKUP, {"rrn": HEAD_RRN})
    await post(
        demo,
        token("tax_officer", agency="nts"),
        """query($rrns: [String!]!) { residents(rrns: $rrns, purpose: TAX_ADMINISTRATION) {
             rrn name } }""",
        {"rrns": MEMBERS},
    )
    texts = [
        r["t"]
        for table in ("audit_log", "consents", "audit_head")
        for r in await fetch(store.dsn, f"select t::text as t from gateway.{table} t")
    ]
    assert len(texts) > 40
    everything = "\n".join(texts)
    assert HEAD_SUBJECT in everything  # the keyed hash is there instead
    for rrn in MEMBERS:
        assert rrn not in everything
        assert rrn.replace("-", "") not in everything


# --- tamper evidence ----------------------------------------------------------------------


@pytest.fixture(scope="module")
async def chain(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> AsyncIterator[ScratchDatabase]:
    """A store holding a chain of six rows made by six requests, the gateway stopped."""
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            for rrn in MEMBERS[:6]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn})
        rows = await fetch(db.dsn, "select seq from gateway.audit_log order by seq")
        assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5, 6]
        yield db


@contextlib.asynccontextmanager
async def copy_of(db: ScratchDatabase) -> AsyncIterator[ScratchDatabase]:
    name = f"gwaccess_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        await conn.execute(f'create database "{name}" template "{db.name}"')
    finally:
        await conn.close()
    copy = ScratchDatabase(db.admin_dsn, with_database(db.admin_dsn, name), name)
    try:
        yield copy
    finally:
        await drop_database(copy)


FORGE = """insert into gateway.audit_log
  select 7, now(), 'forged', 'nobody', 'welfare_officer', 'welfare', 'WELFARE_ELIGIBILITY',
         subject, array['Resident.name'], array[]::text[], hash, repeat('a', 64)
  from gateway.audit_log where seq = 6"""
TAMPERING = {
    "changed-disclosed": (
        # What was read is made to look like nothing was.
        ["update gateway.audit_log set disclosed = array[]::text[] where seq = 3"],
        ["row 3", "changed"],
    ),
    "changed-principal": (
        ["update gateway.audit_log set principal = 'someone-else' where seq = 2"],
        ["row 2", "changed"],
    ),
    "deleted-middle": (
        ["delete from gateway.audit_log where seq = 3"],
        ["row 4", "rows 3..3 were deleted"],
    ),
    "deleted-first": (
        ["delete from gateway.audit_log where seq = 1"],
        ["row 2", "rows 1..1 were deleted"],
    ),
    "deleted-last": (
        ["delete from gateway.audit_log where seq = 6"],
        ["row 6", "deleted"],
    ),
    "forged-appended": ([FORGE], ["row 7", "inserted"]),
    "forged-with-head-moved": (
        [FORGE, "update gateway.audit_head set last_seq = 7, last_hash = repeat('a', 64)"],
        ["row 7", "changed"],
    ),
    "rehashed-without-the-key": (
        [
            "update gateway.audit_log set disclosed = array[]::text[],"
            " hash = md5(hash) || md5(hash) where seq = 5",
        ],
        ["row 5"],
    ),
}


async def verify_after(
    chain: ScratchDatabase,
    statements: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    async with copy_of(chain) as copy:
        for statement in statements:
            await fetch(copy.dsn, statement)
        path = write_gateway_toml(tmp_path, database_url=copy.dsn)
        return await cli(["audit", "verify", "--config", str(path)], capsys)


async def test_an_untouched_chain_verifies(
    chain: ScratchDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = await verify_after(chain, [], tmp_path, capsys)
    assert code == 0, out
    assert "intact" in out
    assert "6 records checked" in out
    assert "TAMPERED" not in out


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_tampering_is_named_by_verify(
    chain: ScratchDatabase, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    statements, fragments = TAMPERING[case]
    code, out = await verify_after(chain, statements, tmp_path, capsys)
    assert code == 1, out
    assert "intact" not in out
    for fragment in fragments:
        assert fragment in out, out


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param(
            [
                "delete from gateway.audit_log where seq = 6",
                """update gateway.audit_head set last_seq = 5,
                   last_hash = (select hash from gateway.audit_log where seq = 5)""",
            ],
            id="newest-row-deleted-and-head-rolled-back",
        ),
        pytest.param(
            [
                """update gateway.audit_head set anchor_seq = 3,
                   anchor_hash = (select hash from gateway.audit_log where seq = 3)""",
                "delete from gateway.audit_log where seq <= 3",
            ],
            id="recent-rows-deleted-and-anchor-moved",
        ),
    ],
)
async def test_deleting_recent_rows_is_detected_even_with_the_head_rewritten(
    chain: ScratchDatabase,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    statements: list[str],
) -> None:
    # Whoever can delete rows can also update gateway.audit_head: no key is needed for
    # either. The rows deleted here are minutes old, far inside the retention period.
    code, out = await verify_after(chain, statements, tmp_path, capsys)
    assert code == 1, f"rows deleted without a trace: {out}"


# --- the audit store down -----------------------------------------------------------------


async def test_nothing_is_disclosed_while_the_audit_store_is_down(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    query = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
      rrn name birthDate address { street } household { members { name } }
      insurance { insuredType } militaryService { status } } }"""
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        officer = gateway.as_(officer_token())
        citizen = gateway.as_(token("citizen", rrn=HEAD_RRN))
        before = await officer.query(query, {"rrn": HEAD_RRN})
        assert before["data"]["resident"]["name"] == HEAD_NAME  # the control

        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'alter database "{db.name}" allow_connections false')
            await admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
                db.name,
            )
            body = await officer.query(query, {"rrn": HEAD_RRN})
            mine = await citizen.query("{ me { rrn name taxes { year } } }")
            status = await gateway.as_(token("operator")).query("{ agencies { code } }")
        finally:
            await admin.execute(f'alter database "{db.name}" allow_connections true')
            await admin.close()

        assert body["data"] == {"resident": None}
        assert error_codes(body) == {("resident",): "AUDIT_UNAVAILABLE"}
        assert mine["data"] == {"me": None}
        assert error_codes(mine) == {("me",): "AUDIT_UNAVAILABLE"}
        for text in (str(body), str(mine)):
            assert "Kim" not in text
            assert HEAD_RRN[:6] not in text
            assert "Teheran" not in text
            assert "EMPLOYEE" not in text
        # Agency status carries no resident data and is still served.
        assert "errors" not in status, status
        assert len(status["data"]["agencies"]) == 5

        # Back up: served and recorded again.
        after = await officer.query(query, {"rrn": HEAD_RRN})
        assert after["data"]["resident"]["name"] == HEAD_NAME
        rows = await fetch(db.dsn, "select count(*) as n from gateway.audit_log")
        assert rows[0]["n"] >= 2


# --- group commit ---------------------------------------------------------------------------


async def test_concurrent_requests_share_commits(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    # Over real sockets under uvicorn: see ``served`` for why not in-process.
    async with (
        scratch_store(admin_dsn) as db,
        served_async(demo_config(agency_db, http_agencies, db.dsn)) as (url, app),
    ):
        audit = app.state.runtime.audit
        prefix = rid("burst")
        headers = {"Authorization": f"Bearer {officer_token()}"}
        query = 'query { resident(rrn: "%s", purpose: WELFARE_ELIGIBILITY) { name } }'
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await http.post("/graphql", json={"query": query % HEAD_RRN}, headers=headers)
            commits, written = audit.commits, audit.records_written
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/graphql",
                        json={"query": query % MEMBERS[i % 20]},
                        headers={**headers, "X-Request-ID": f"{prefix}-{i}"},
                    )
                    for i in range(50)
                )
            )
        names = [r.json()["data"]["resident"]["name"] for r in responses]
        assert names == [n for i in range(50) for n in [members()[i % 20][1]]]
        ours = [r.headers["x-request-id"] for r in responses]
        assert [r.headers["x-client-request-id"] for r in responses] == [
            f"{prefix}-{i}" for i in range(50)
        ]
        rows = await fetch(
            db.dsn,
            "select request_id, subject from gateway.audit_log"
            " where request_id = any($1::text[])",
            ours,
        )
        assert sorted((r["request_id"], r["subject"]) for r in rows) == sorted(
            (ours[i], KEYS.subject(MEMBERS[i % 20])) for i in range(50)
        )
        assert audit.records_written - written == 50
        assert 1 <= audit.commits - commits < 50, audit.commits - commits


# --- retention --------------------------------------------------------------------------------


def old_record(days_ago: int, label: str) -> AuditRecord:
    return AuditRecord(
        at=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
        request_id=label,
        principal="officer-long-gone",
        roles="welfare_officer",
        agency="welfare",
        purpose="WELFARE_ELIGIBILITY",
        subject=HEAD_SUBJECT,
        disclosed=("Resident.name",),
        denied=(),
    )


async def test_retention_purges_old_records_and_the_chain_stays_valid(
    admin_dsn: str,
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with scratch_store(admin_dsn) as db:
        async with demo_gateway(agency_db, http_agencies, db) as gateway:
            audit = gateway.app.state.runtime.audit
            await audit.record([old_record(902 - i, f"old-{i}") for i in range(3)])
            await audit.record([old_record(700, "kept-700-days")])  # inside 730 days
            for rrn in MEMBERS[:2]:
                await post(gateway, officer_token(), LOOKUP, {"rrn": rrn}, rid("new"))
        path = write_gateway_toml(tmp_path, database_url=db.dsn, extra="retention_days = 730")

        code, out = await cli(["audit", "purge", "--config", str(path)], capsys)
        assert code == 0
        assert "purged 3 audit records older than 730 days" in out
        rows = await fetch(
            db.dsn, "select seq, request_id, purpose, note from gateway.audit_log order by seq"
        )
        # Rows 4..6 kept, and row 7 records the purge (and the anchor it moved to) in the chain.
        assert [r["seq"] for r in rows] == [4, 5, 6, 7]
        assert rows[0]["request_id"] == "kept-700-days"
        assert all(not r["request_id"].startswith("old-") for r in rows)
        assert rows[3]["purpose"] == "AUDIT_PURGE"
        note = json.loads(rows[3]["note"])
        assert note["anchor"][0] == 3
        assert note["deleted"] == 3

        code, out = await cli(["audit", "verify", "--config", str(path)], capsys)
        assert (code, "4 records checked, intact" in out) == (0, True), out

        pool = await asyncpg.create_pool(db.dsn, min_size=1, max_size=1)
        try:
            assert (
                await audit_module.purge(pool, AuditKeys(TEST_AUDIT_KEY), 730) == 0
            )  # nothing more is that old
            assert (
                await audit_module.purge(pool, AuditKeys(TEST_AUDIT_KEY), 365) == 1
            )  # the 700-day record
        finally:
            await pool.close()
        code, out = await cli(["audit", "verify", "--config", str(path)], capsys)
        assert (code, "4 records checked, intact" in out) == (0, True), out
