"""Fixtures for the access-control tests: the DEMO policy, and a gateway store database of
each module's own, so audit rows and consents written here are not mixed with other tests'.

Agencies stay on the session's seeded ``agency_db``; only ``[database] url`` (consents, audit)
points at a scratch database created for the module and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.audit import AuditKeys
from gateway.config import Config, DatabaseConfig, PolicyConfig
from gateway.runtime import DEMO_POLICY
from tests.conftest import (
    TEST_AUDIT_KEY,
    TEST_SECRET,
    GatewayClient,
    ScratchDatabase,
    create_database,
    drop_database,
    gateway_client,
    make_config,
)
from tests.data import HEAD_RRN

DEMO = PolicyConfig(file=str(DEMO_POLICY))
KEYS = AuditKeys(TEST_AUDIT_KEY)
HEAD_DIGITS = HEAD_RRN.replace("-", "")
HEAD_SUBJECT = KEYS.subject(HEAD_RRN)


def demo_config(
    agency_db: ScratchDatabase, urls: dict[str, str], store_dsn: str, **overrides: Any
) -> Config:
    """The demo policy, agencies on ``agency_db``, the gateway's own store on ``store_dsn``."""
    overrides.setdefault("policy", DEMO)
    config = make_config(agency_db.dsn, urls, **overrides)
    # make_config(..., database=...) raises TypeError (it passes database= itself), so the
    # store is swapped in afterwards.
    return dataclasses.replace(config, database=DatabaseConfig(url=store_dsn))


@contextlib.asynccontextmanager
async def scratch_store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    db = await create_database(admin_dsn, prefix="gwaccess")
    try:
        yield db
    finally:
        await drop_database(db)


@contextlib.asynccontextmanager
async def demo_gateway(
    agency_db: ScratchDatabase, urls: dict[str, str], store: ScratchDatabase, **overrides: Any
) -> AsyncIterator[GatewayClient]:
    async with gateway_client(demo_config(agency_db, urls, store.dsn, **overrides)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
async def store(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    async with scratch_store(admin_dsn) as db:
        yield db


@pytest.fixture(scope="module")
async def demo(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], store: ScratchDatabase
) -> AsyncIterator[GatewayClient]:
    """The gateway under the demo policy, on this module's own store."""
    async with demo_gateway(agency_db, http_agencies, store) as gateway:
        yield gateway


def write_gateway_toml(
    tmp_path: Path,
    *,
    database_url: str,
    policy: Path = DEMO_POLICY,
    agencies: dict[str, str] | None = None,
    extra: str = "",
) -> Path:
    """A gateway.toml for the command line, with the tests' secret and audit key."""
    lines = [
        "[database]",
        f'url = "{database_url}"',
        "[auth]",
        f'secret = "{TEST_SECRET}"',
        "[audit]",
        f'key = "{TEST_AUDIT_KEY}"',
        extra,
        "[policy]",
        f'file = "{policy}"',
    ]
    for code, dsn in (agencies or {}).items():
        lines += [f"[agencies.{code}]", 'kind = "sql"', f'dsn = "{dsn}"']
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def error_codes(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    """Each error's path -> its code (paths are unique in every test that uses this)."""
    found: dict[tuple[str | int, ...], str] = {}
    for error in body.get("errors", []):
        path = tuple(error.get("path") or ())
        assert path not in found, f"two errors at {path}: {body['errors']}"
        found[path] = error["extensions"]["code"]
    return found


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@contextlib.contextmanager
def served(config: Config) -> Iterator[tuple[str, Starlette]]:
    """The gateway under uvicorn on a real socket (its own thread and event loop).

    Concurrency tests use this rather than ``gateway_client``: asgi_lifespan's
    LifespanManager hands every request the same ``scope["state"]`` dict, where uvicorn gives
    each request its own copy, and the view keeps per-request data in ``request.state``.
    From a coroutine, use :func:`served_async` (this one blocks the caller's thread while
    uvicorn starts).
    """
    server, thread, sock, app = _start(config)
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            _check_starting(thread, deadline)
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


@contextlib.asynccontextmanager
async def served_async(config: Config) -> AsyncIterator[tuple[str, Starlette]]:
    """:func:`served` for a coroutine: waits for uvicorn without blocking the test's event
    loop, where an app of an earlier test may be committing audit records, holding the chain
    head the new app's start-up waits for (both would wait for ever)."""
    server, thread, sock, app = _start(config)
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            _check_starting(thread, deadline)
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 20)
        sock.close()


def _start(config: Config) -> tuple[uvicorn.Server, threading.Thread, socket.socket, Starlette]:
    app = create_app(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, thread, sock, app


def _check_starting(thread: threading.Thread, deadline: float) -> None:
    assert thread.is_alive(), "uvicorn stopped while starting"
    assert time.monotonic() < deadline, "uvicorn did not start"
