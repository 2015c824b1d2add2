"""Start-up through the real `gateway` process: failures are one line on stderr and a
non-zero exit (never a traceback), the banner appears only once the port accepts
connections, and `gateway --version` names the package version."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.conftest import ALLOW_ALL, TEST_AUDIT_KEY, TEST_SECRET, ScratchDatabase
from tests.demo_serve import free_port


def write_config(tmp_path: Path, database_url: str, agency_dsn: str) -> Path:
    path = tmp_path / "gateway.toml"
    agencies = "".join(
        f'[agencies.{code}]\nkind = "sql"\ndsn = "{agency_dsn}"\n'
        for code in ("registry", "nhis", "nps")
    )
    path.write_text(
        f'[database]\nurl = "{database_url}"\n[auth]\nsecret = "{TEST_SECRET}"\n'
        f'[audit]\nkey = "{TEST_AUDIT_KEY}"\n[policy]\nfile = "{ALLOW_ALL}"\n'
        + agencies
        # Never called in these tests: nothing listens there.
        + '[agencies.nts]\nkind = "http"\nurl = "http://127.0.0.1:9"\n'
        + '[agencies.mma]\nkind = "http"\nurl = "http://127.0.0.1:9"\n'
    )
    return path


def run(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=tmp_path,
        env=environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"gateway {version('resident-gateway')}"


def test_a_bad_dsn_is_one_line(tmp_path: Path, agency_db: ScratchDatabase) -> None:
    path = write_config(tmp_path, "postgress://postgres@127.0.0.1/gw", agency_db.dsn)
    result = run(tmp_path, "serve", "--config", str(path), "--port", str(free_port()))
    assert result.returncode == 2
    assert one_line(result) == (
        "gateway: configuration error: [database] url scheme postgress:// is not one of "
        "postgresql://, postgres:// (did you mean postgres?)"
    )
    assert "Resident Gateway on" not in result.stdout


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("postgresql://postgres@127.0.0.1:1/gw", "(postgresql://127.0.0.1:1/gw) is unreachable"),
        ("NO_SUCH_DB", 'database "gwtest_no_such_database" does not exist'),
    ],
)
def test_an_unreachable_database_is_one_line(
    tmp_path: Path, agency_db: ScratchDatabase, database: str, reason: str
) -> None:
    if database == "NO_SUCH_DB":
        from gateway.demo.embedded import with_database

        database = with_database(agency_db.dsn, "gwtest_no_such_database")
    path = write_config(tmp_path, database, agency_db.dsn)
    result = run(tmp_path, "serve", "--config", str(path), "--port", str(free_port()))
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("gateway: cannot start: the database at [database] url"), line
    assert reason in line
    assert "Resident Gateway on" not in result.stdout


def test_a_port_in_use_is_one_line_and_no_banner(
    tmp_path: Path, agency_db: ScratchDatabase
) -> None:
    path = write_config(tmp_path, agency_db.dsn, agency_db.dsn)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            tmp_path, "serve", "--config", str(path), env={"GATEWAY__SERVER__PORT": str(port)}
        )
    assert result.returncode == 1
    assert one_line(result) == (
        f"gateway: cannot start: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert result.stdout == ""


def test_the_banner_comes_once_the_port_is_bound(
    tmp_path: Path, agency_db: ScratchDatabase
) -> None:
    path = write_config(tmp_path, agency_db.dsn, agency_db.dsn)
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY")}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(path)],
        cwd=tmp_path,
        env=environ | {"GATEWAY__SERVER__PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner == f"Resident Gateway on http://127.0.0.1:{port}/graphql\n"
        # The socket listens as soon as the banner is out: a connection is accepted (queued
        # by the kernel) even before the application has finished starting.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("the gateway never answered /healthz")
    finally:
        process.terminate()
        process.communicate(timeout=30)


async def test_a_failing_application_start_up_is_one_line(
    tmp_path: Path, admin_dsn: str, agency_db: ScratchDatabase
) -> None:
    """Past the database check, the application's own start-up fails (here: a role that may
    neither create the gateway's store nor find it): one line, exit 1, no traceback."""
    import asyncio
    import secrets

    import asyncpg

    from tests.conftest import create_database, drop_database
    from tests.gateway.test_db_roles import as_role

    db = await create_database(admin_dsn)
    role = f"gwtest_bare_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(db.dsn)
    await conn.execute(f'create role "{role}" login')
    await conn.close()
    try:
        path = write_config(tmp_path, as_role(db.dsn, role), agency_db.dsn)
        result = await asyncio.to_thread(
            run, tmp_path, "serve", "--config", str(path), "--port", str(free_port())
        )
        assert result.returncode == 1, result.stderr
        line = one_line(result)
        assert line.startswith("gateway: cannot start: the gateway's store lacks "), line
        assert f"role {role} may not create it" in line
    finally:
        await drop_database(db)
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'drop role if exists "{role}"')
        await admin.close()
