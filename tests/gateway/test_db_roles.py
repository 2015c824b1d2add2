"""The least-privilege database roles of docs/deployment.md, run against the real PostgreSQL:
the serving gateway's role appends audit rows but cannot change or delete them; the admin
role can purge."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from gateway.app import STORE_SQL
from gateway.audit import AuditKeys
from gateway.audit_admin import verify
from gateway.certificate_store import CertificateStore, IssuedCertificate
from gateway.config import DatabaseConfig
from tests.conftest import (
    TEST_AUDIT_KEY,
    ScratchDatabase,
    create_database,
    drop_database,
    gateway_client,
    make_config,
)
from tests.data import HEAD_RRN

DOC = Path(__file__).parents[2] / "docs" / "deployment.md"
QUERY = """query($rrn: String!) {
  resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { name insurance { insuredType } } }"""
ROLES = ("gateway_owner", "gateway_app", "gateway_admin")


def grants_sql(names: dict[str, str]) -> str:
    """The docs' SQL block (the one starting ``-- gateway-roles``), with the roles renamed."""
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)
    [sql] = [str(b) for b in blocks if b.startswith("-- gateway-roles")]
    for role in ROLES:
        sql = re.sub(rf"\b{role}\b", names[role], sql)
    return sql


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def store(admin_dsn: str) -> AsyncIterator[tuple[ScratchDatabase, dict[str, str]]]:
    async with role_store(admin_dsn) as found:
        yield found


@contextlib.asynccontextmanager
async def role_store(admin_dsn: str) -> AsyncIterator[tuple[ScratchDatabase, dict[str, str]]]:
    """A scratch store as its owner applied store.sql and docs/deployment.md's grants, and
    the renamed roles (dropped afterwards)."""
    db = await create_database(admin_dsn)
    suffix = secrets.token_hex(4)
    names = {role: f"gwtest_{role}_{suffix}" for role in ROLES}
    try:
        conn = await asyncpg.connect(db.dsn)
        try:
            await conn.execute(STORE_SQL)  # as the owner would, applying store.sql
            await conn.execute(grants_sql(names))
        finally:
            await conn.close()
        yield db, names
    finally:
        await drop_database(db)
        admin = await asyncpg.connect(admin_dsn)
        try:
            for name in names.values():
                await admin.execute(f'drop role if exists "{name}"')
        finally:
            await admin.close()


async def test_the_gateway_role_appends_but_cannot_change_audit_rows(
    store: tuple[ScratchDatabase, dict[str, str]],
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
) -> None:
    db, names = store
    app_dsn = as_role(db.dsn, names["gateway_app"])
    config = make_config(agency_db.dsn, http_agencies, database=DatabaseConfig(url=app_dsn))
    async with gateway_client(config) as gateway:  # starts as gateway_app: no DDL allowed
        body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
        assert "errors" not in body, body
        assert body["data"]["resident"]["name"]
        conn = await asyncpg.connect(app_dsn)
        try:
            assert await conn.fetchval("select current_user") == names["gateway_app"]
            rows = await conn.fetchval("select count(*) from gateway.audit_log")
            assert rows >= 1
            for statement in (
                "update gateway.audit_log set principal = 'someone else'",
                "delete from gateway.audit_log",
                "truncate gateway.audit_log",
                "alter table gateway.audit_log disable trigger all",
                "drop table gateway.audit_log",
                # The head row moves with every commit (UPDATE), but never goes away.
                "delete from gateway.audit_head",
                "truncate gateway.audit_head",
                "drop table gateway.audit_head",
                "alter table gateway.audit_head drop column mac",
            ):
                with pytest.raises(
                    asyncpg.InsufficientPrivilegeError, match=r"permission denied|must be owner"
                ):
                    await conn.execute(statement)
            # ... while the gateway goes on appending.
            body = await gateway.query(QUERY, {"rrn": HEAD_RRN})
            assert "errors" not in body, body
            assert await conn.fetchval("select count(*) from gateway.audit_log") > rows
        finally:
            await conn.close()

    admin = await asyncpg.connect(as_role(db.dsn, names["gateway_admin"]))
    try:
        # The admin role may delete (retention purge) but not rewrite rows either.
        await admin.execute("delete from gateway.audit_log where at < now() - interval '1000 days'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.execute("update gateway.audit_log set principal = 'someone else'")
        verdict = await verify(admin, AuditKeys(TEST_AUDIT_KEY), None)
        assert verdict.problems == []
        assert verdict.checked >= 2
    finally:
        await admin.close()


async def test_a_store_the_role_may_not_create_is_one_clear_error(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    db = await create_database(admin_dsn)
    role = f"gwtest_bare_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(db.dsn)
    try:
        await conn.execute(f'create role "{role}" login')
        await conn.execute(f'revoke create on schema public from "{role}"')
    finally:
        await conn.close()
    try:
        config = make_config(
            agency_db.dsn, http_agencies, database=DatabaseConfig(url=as_role(db.dsn, role))
        )
        with pytest.raises(RuntimeError, match=f"role {role} may not create it"):
            async with gateway_client(config):
                pass
    finally:
        await drop_database(db)
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'drop role if exists "{role}"')
        finally:
            await admin.close()


async def test_the_gateway_role_may_record_and_revoke_certificates(
    store: tuple[ScratchDatabase, dict[str, str]],
) -> None:
    """The docs' grants cover every table the serving gateway writes: certificates it issues
    are recorded, listed and revoked as ``gateway_app`` (and it may not delete them)."""
    db, names = store
    pool = await asyncpg.create_pool(as_role(db.dsn, names["gateway_app"]), min_size=1)
    try:
        certificates = CertificateStore(pool)
        now = dt.datetime.now(dt.UTC)
        issued = IssuedCertificate(
            uuid.uuid4(), "residence", "a" * 64, "kid-1", now, now + dt.timedelta(days=1), None
        )
        await certificates.add(issued)
        assert [c.id for c in await certificates.of("a" * 64)] == [issued.id]
        revoked = await certificates.revoke("a" * 64, str(issued.id))
        assert revoked.revoked_at is not None
        assert await certificates.revoked() == [str(issued.id)]
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await pool.execute("delete from gateway.certificates")
    finally:
        await pool.close()
