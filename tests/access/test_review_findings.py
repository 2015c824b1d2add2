"""Regressions for a security review: audit bypasses that once let data or existence out."""

from __future__ import annotations

import asyncpg

from gateway.audit import AuditKeys
from tests.access.conftest import demo_gateway, error_codes, fetch, scratch_store
from tests.conftest import TEST_AUDIT_KEY, ScratchDatabase, token
from tests.data import HEAD_RRN

KEYS = AuditKeys(TEST_AUDIT_KEY)
WELFARE = token("welfare_officer", agency="welfare")


async def test_every_alias_of_a_resident_is_withheld_when_the_audit_store_is_down(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    query = """query($r: String!) {
        a: resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) { rrn }
        b: resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) { name address { street } }
        c: residents(rrns: [$r], purpose: WELFARE_ELIGIBILITY) { birthDate } }"""
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        officer = gateway.as_(WELFARE)
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'alter database "{db.name}" allow_connections false')
            await admin.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
                db.name,
            )
            body = await officer.query(query, {"r": HEAD_RRN})
        finally:
            await admin.execute(f'alter database "{db.name}" allow_connections true')
            await admin.close()
    assert body["data"] == {"a": None, "b": None, "c": None}
    assert error_codes(body) == {
        ("a",): "AUDIT_UNAVAILABLE",
        ("b",): "AUDIT_UNAVAILABLE",
        ("c",): "AUDIT_UNAVAILABLE",
    }
    assert "Kim" not in str(body)
    assert "Teheran" not in str(body)


async def test_existence_is_audited_when_every_field_is_skipped(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        body = await gateway.as_(WELFARE).query(
            """query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) {
                 name @skip(if: true) household { members { name @include(if: false) } } } }""",
            {"r": HEAD_RRN},
        )
        rows = await fetch(db.dsn, "select subject, disclosed from gateway.audit_log")
    assert body["data"]["resident"]["household"]["members"] == [{}] * 20
    subjects = {row["subject"] for row in rows}
    # The head, and every member the response showed to exist: 20 residents in all.
    assert KEYS.subject(HEAD_RRN) in subjects
    assert len(subjects) == 20


async def test_insured_by_names_another_resident_in_their_own_access_log(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    conn = await asyncpg.connect(agency_db.dsn)
    try:
        row = await conn.fetchrow(
            "select rrn, insured_by from nhis.enrolments where insured_by is not null limit 1"
        )
        assert row is not None, "the seeded data has dependents"
        dependent, insured = row["rrn"], row["insured_by"]
    finally:
        await conn.close()
    async with (
        scratch_store(admin_dsn) as db,
        demo_gateway(agency_db, http_agencies, db) as gateway,
    ):
        officer = gateway.as_(token("health_insurance_officer", agency="nhis"))
        body = await officer.query(
            """query($r: String!) { resident(rrn: $r, purpose: HEALTH_INSURANCE) {
                 insurance { insuredBy } } }""",
            {"r": dependent},
        )
        rows = await fetch(
            db.dsn,
            "select disclosed from gateway.audit_log where subject = $1",
            KEYS.subject(insured),
        )
    assert body["data"]["resident"]["insurance"]["insuredBy"] == f"{insured[:8]}******"
    assert [list(row["disclosed"]) for row in rows] == [["HealthInsurance.insuredBy"]]
