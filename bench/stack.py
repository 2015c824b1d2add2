"""Everything a benchmark run stands up, and tears down again.

A scratch database on the local PostgreSQL (seeded with ``gateway.demo.seed`` plus the
20-member household of ``tests.data``), the nts and mma demo agencies, and servers started as
their own processes: the gateway (``python -m gateway serve --config <tmp>``) and the ceiling
(``python -m bench.ceiling``). :class:`BenchStack` is a context manager: leaving it, by return,
exception or Ctrl-C, stops every process it started and drops the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from bench.system import wait_for_workers
from gateway.auth import issue_token
from gateway.config import AuthConfig
from gateway.demo.embedded import with_database
from gateway.demo.processes import AgencyProcess, demo_agency_settings
from gateway.demo.seed import seed
from tests.data import BIG_HOUSEHOLD, insert_fixtures

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SQL_AGENCIES = ("registry", "nhis", "nps")
HTTP_AGENCIES = ("nts", "mma")
PURPOSES = (
    "WELFARE_ELIGIBILITY", "TAX_ADMINISTRATION", "HEALTH_INSURANCE", "PENSION_ADMINISTRATION",
    "MILITARY_ADMINISTRATION", "CIVIL_PETITION",
)  # fmt: skip
BENCH_ROLE = "bench"
ALL_FIELDS = ["Resident.*", "Address.*", "Household.*", "HealthInsurance.*", "TaxRecord.*",
              "Pension.*", "MilitaryService.*"]  # fmt: skip
TOKEN_TTL_S = 7 * 24 * 3600

Say = Callable[[str], None]


class BenchError(Exception):
    """Something the person running the benchmark has to fix; the message says what."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env() -> dict[str, str]:
    """Our environment minus gateway overrides, so only the written config counts."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GATEWAY__") and k != "GATEWAY_CONFIG"
    }


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(
    url: str, body: bytes, token: str = "", timeout: float = 10.0
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------
# TOML


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A nested mapping of str/int/float/bool/list values as TOML (tables for sub-mappings)."""
    lines = [f"{key} = {_toml_value(v)}" for key, v in data.items() if not isinstance(v, Mapping)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        if isinstance(value, Mapping):
            name = f"{prefix}.{key}" if prefix else key
            scalars = any(not isinstance(v, Mapping) for v in value.values())
            body = to_toml(value, name)
            out += (f"\n[{name}]\n" if scalars else "") + body
    return out


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------------------------
# Processes


class ServerProcess:
    """A server in a child process, its output in a log file, ready once /healthz answers."""

    def __init__(
        self, name: str, args: Sequence[str], port: int, log_path: Path, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.args = list(args)
        self.port = port
        self.log_path = log_path
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with code {self.process.returncode} while starting:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(OSError):
                status, _ = http_get(f"{self.url}/healthz", timeout=1.0)
                if status == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise BenchError(
            f"{self.name} did not answer /healthz within {timeout:.0f} s:\n" + self.log_tail()
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully, so a profiler writes its file), then kill."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# The stack


async def _check_postgres(admin_dsn: str) -> str:
    try:
        conn = await asyncpg.connect(admin_dsn, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BenchError(
            f"PostgreSQL is not reachable at {admin_dsn} ({type(exc).__name__}: {exc}).\n"
            "Start it (e.g. `pg_ctlcluster 15 main start`) or pass --admin-dsn."
        ) from None
    try:
        version: str = await conn.fetchval("show server_version")
    finally:
        await conn.close()
    return version


async def _admin(admin_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


#: Households of 20 regrouped from seeded residents, for the rotating household scenario.
BIG_HOUSEHOLDS = 300
BIG_SIZE = 20


async def _prepare(dsn: str, residents: int) -> dict[str, float]:
    summary = await seed(dsn, residents, progress=False)
    await insert_fixtures(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        regrouped = await _regroup(conn)
        await conn.execute("analyze")
    finally:
        await conn.close()
    return {
        "residents": summary.residents + 20,
        "households": summary.households + 1 + regrouped,
        "seconds": round(summary.seconds, 1),
    }


async def _kept(admin_dsn: str, dsn: str, name: str) -> dict[str, Any] | None:
    """What a kept bench database was seeded with (``_remember``), or None when it does not
    exist; BenchError when it exists but is not one."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
    finally:
        await conn.close()
    if not exists:
        return None
    conn = await asyncpg.connect(dsn)
    try:
        text = await conn.fetchval(
            "select obj_description('public.gwbench_seeded'::regclass, 'pg_class')"
        )
    except asyncpg.PostgresError:
        text = None
    finally:
        await conn.close()
    if not text:
        raise BenchError(f"database {name} exists but was not kept by a bench run")
    kept: dict[str, Any] = json.loads(text)
    return kept


async def _remember(dsn: str, seeded: dict[str, Any]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("create table public.gwbench_seeded ()")
        literal = json.dumps(seeded).replace("'", "''")
        await conn.execute(f"comment on table public.gwbench_seeded is '{literal}'")
    finally:
        await conn.close()


async def _regroup(conn: asyncpg.Connection) -> int:
    """Up to BIG_HOUSEHOLDS households of BIG_SIZE (ids R00000000...), regrouped from
    seeded residents taken from the far end of the md5 order the ``sample`` keys start
    from, so the two overlap only when fewer than about 8,000 residents are seeded.
    The households they leave keep their other members."""
    count = min(BIG_HOUSEHOLDS, (await conn.fetchval("select count(*) from registry.residents")
                                 - 2 * 2000) // (2 * BIG_SIZE))  # fmt: skip
    if count <= 0:
        return 0
    async with conn.transaction():
        await conn.execute(
            """with picked as (
                 select rrn, row_number() over (order by md5(rrn) desc) - 1 as i
                 from registry.residents where household_id is distinct from $1
                 order by md5(rrn) desc limit $2)
               update registry.residents r
               set household_id = 'R' || lpad((p.i / $3)::text, 8, '0'),
                   relationship = case when p.i % $3 = 0 then 'HEAD' else 'OTHER' end
               from picked p where r.rrn = p.rrn""",
            BIG_HOUSEHOLD, count * BIG_SIZE, BIG_SIZE,
        )  # fmt: skip
        await conn.execute(
            """insert into registry.households
                 (id, head_rrn, region, city, street, postal_code, registered_on)
               select r.household_id, r.rrn, 'Seoul', 'Jongno-gu', 'Sejong-daero 209',
                      '03171', date '2020-01-01'
               from registry.residents r
               where r.household_id like 'R%' and r.relationship = 'HEAD'"""
        )
    return int(count)


async def _fetch_keys(dsn: str, sample: int) -> tuple[list[str], list[str], list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """select rrn from registry.residents where household_id <> $1
               order by md5(rrn) limit $2""",
            BIG_HOUSEHOLD,
            sample,
        )
        members = await conn.fetch(
            """select rrn from registry.residents where household_id = $1
               order by relationship <> 'HEAD', birth_date, rrn""",
            BIG_HOUSEHOLD,
        )
        # One member per regrouped household, each a different position in it.
        rotating = await conn.fetch(
            """select rrn from (
                 select rrn, household_id,
                        row_number() over (partition by household_id order by rrn) as n,
                        dense_rank() over (order by household_id) as h
                 from registry.residents where household_id like 'R%') m
               where n = 1 + (h % $1) order by md5(household_id)""",
            BIG_SIZE,
        )
    finally:
        await conn.close()
    return [r["rrn"] for r in rows], [r["rrn"] for r in members], [r["rrn"] for r in rotating]


#: Households of 20 made for the rotating-households scenario (the peer's bench has 200).
ROTATING_HOUSEHOLDS = 200
HOUSEHOLD_SIZE = 20


async def _make_households(dsn: str, count: int = ROTATING_HOUSEHOLDS) -> list[str]:
    """Top ``count`` seeded households up to 20 members each, with residents moved in from
    other households (their own records unchanged); the heads of those households, in a
    fixed order. Seeded households hold a few members; the fixture one is left alone."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            picked = await conn.fetch(
                """select h.id, h.head_rrn, count(r.rrn) as size from registry.households h
                   join registry.residents r on r.household_id = h.id
                   where h.id <> $1 group by h.id, h.head_rrn order by md5(h.id) limit $2""",
                BIG_HOUSEHOLD,
                count,
            )
            ids = [row["id"] for row in picked]
            wanted = sum(max(HOUSEHOLD_SIZE - row["size"], 0) for row in picked)
            movers = [
                row["rrn"]
                for row in await conn.fetch(
                    """select rrn from registry.residents
                       where relationship <> 'HEAD' and household_id <> $1
                         and household_id <> all($2::text[])
                       order by md5(rrn) limit $3""",
                    BIG_HOUSEHOLD,
                    ids,
                    wanted,
                )
            ]
            moves: list[tuple[str, str]] = []
            for row in picked:
                for _ in range(max(HOUSEHOLD_SIZE - row["size"], 0)):
                    if movers:
                        moves.append((row["id"], movers.pop()))
            await conn.executemany(
                "update registry.residents set household_id = $1 where rrn = $2", moves
            )
    finally:
        await conn.close()
    return [row["head_rrn"] for row in picked]


class BenchStack:
    """Scratch database, demo agencies, and the servers under test; see the module docstring."""

    def __init__(self, admin_dsn: str, workdir: Path, say: Say) -> None:
        self.admin_dsn = admin_dsn
        self.workdir = workdir
        self.say = say
        self.db_name = f"gwbench_{secrets.token_hex(4)}"
        self._households: list[str] | None = None
        self.dsn = with_database(admin_dsn, self.db_name)
        self.auth_secret = secrets.token_urlsafe(48)
        self.audit_key = secrets.token_urlsafe(48)
        self.policy_path = workdir / "bench-policy.toml"
        self.agency_urls: dict[str, str] = {}
        self.agency_pids: list[int] = []
        self.postgres_version = ""
        self.seeded: dict[str, float] = {}
        self._exit = contextlib.ExitStack()
        self._servers: list[ServerProcess] = []
        self.logs_to: Path | None = None  # copy the servers' logs here on close

    def __enter__(self) -> BenchStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        # Ctrl-C while tearing down must not leave a process or the database behind.
        with _deferred_interrupts():
            for server in reversed(self._servers):
                server.stop()
            if self.logs_to is not None:
                self.logs_to.mkdir(parents=True, exist_ok=True)
                for log in self.workdir.glob("*.log"):
                    shutil.copy(log, self.logs_to / log.name)
                self.say(f"server logs copied to {self.logs_to}")
            self._exit.close()

    def setup(
        self, residents: int, *, agency_nodelay: bool = False, database: str | None = None
    ) -> None:
        """``database``: a named database kept after the run and reused by the next run that
        names it with the same ``residents`` (seeding 10^7 takes a quarter of an hour)."""
        self.policy_path.write_text(to_toml(bench_policy()))
        self.postgres_version = asyncio.run(_check_postgres(self.admin_dsn))
        if database is not None:
            self.db_name, self.dsn = database, with_database(self.admin_dsn, database)
            kept = asyncio.run(_kept(self.admin_dsn, self.dsn, database))
            if kept is not None and kept.get("asked") != residents:
                raise BenchError(
                    f"database {database} was seeded with {kept.get('asked')} residents, not"
                    f" {residents}: name another, or drop it"
                )
            if kept is not None:
                self.seeded = {k: v for k, v in kept.items() if k != "asked"} | {"reused": 1}
                # The gateway's store (its audit chain sealed with the last run's key) starts
                # afresh: this run's key would rightly refuse that chain.
                asyncio.run(_admin(self.dsn, "drop schema if exists gateway cascade"))
                self.say(f"reusing database {database}: {self.seeded['residents']:,} residents")
        if not self.seeded:
            self.say(f"creating database {self.db_name} (PostgreSQL {self.postgres_version})")
            asyncio.run(_admin(self.admin_dsn, f'create database "{self.db_name}"'))
            if database is None:
                self._exit.callback(self._drop_database)
            self.say(f"seeding {residents:,} residents + the 20-member fixture household")
            self.seeded = asyncio.run(_prepare(self.dsn, residents))
            if database is not None:
                asyncio.run(_remember(self.dsn, self.seeded | {"asked": residents}))
            self.say(f"seeded in {self.seeded['seconds']} s")
        self.say("starting the nts and mma demo agencies")
        for code in HTTP_AGENCIES:
            agency = AgencyProcess(code, self.dsn)
            if agency_nodelay:
                # The same command under bench.launch with TCP_NODELAY on its listening socket.
                module_args = agency.args[agency.args.index("-m") + 1 :]
                agency.args = _command(module_args, None, ["listen-nodelay"])
            self._exit.callback(agency.stop)
            self.agency_urls[code] = agency.start()
            assert agency.process is not None
            self.agency_pids.append(agency.process.pid)

    def _drop_database(self) -> None:
        try:
            asyncio.run(
                _admin(self.admin_dsn, f'drop database if exists "{self.db_name}" with (force)')
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            print(f"warning: could not drop database {self.db_name}: {exc}", file=sys.stderr)
        else:
            self.say(f"dropped database {self.db_name}")

    def keys(self, sample: int) -> tuple[list[str], list[str], list[str]]:
        """``sample`` seeded RRNs (deterministic), the fixture household's 20 members, and
        one member of each regrouped household of 20."""
        return asyncio.run(_fetch_keys(self.dsn, sample))

    def households(self) -> list[str]:
        """Heads of 200 households of 20 (made once per stack; see ``_make_households``)."""
        if self._households is None:
            self._households = asyncio.run(_make_households(self.dsn))
        return self._households

    def gateway_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        agencies: dict[str, Any] = {code: {"kind": "sql", "dsn": self.dsn} for code in SQL_AGENCIES}
        # The demo agencies' credential, by reference (the gateway inherits our environment).
        trust = demo_agency_settings()
        agencies |= {
            code: {"kind": "http", "url": url, **trust} for code, url in self.agency_urls.items()
        }
        base = {
            "server": {"host": "127.0.0.1", "workers": 1},
            # The gateway's own store (consents, audit trail) lives in the scratch database too.
            "database": {"url": self.dsn},
            "auth": {"secret": self.auth_secret},
            "audit": {"key": self.audit_key},
            "policy": {"file": str(self.policy_path)},
            # One token drives every request: a per-principal rate limit would measure itself.
            "limits": {"rate_requests": 0, "rate_cost": 0},
            "agencies": agencies,
        }
        return deep_merge(base, overrides or {})

    def token(self) -> str:
        """A bearer token for the bench role (may read every field for every purpose)."""
        config = AuthConfig(secret=self.auth_secret)
        return issue_token(config, sub="bench", roles=[BENCH_ROLE], ttl_s=TOKEN_TTL_S)

    def start_gateway(
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        label: str = "gateway",
        profile_to: Path | None = None,
        patches: Sequence[str] = (),
    ) -> ServerProcess:
        config = self.gateway_config(overrides)
        text = to_toml(config)
        tomllib.loads(text)  # fail here, not in the child, if the writer got it wrong
        port = free_port()
        path = self.workdir / f"{label}-{port}.toml"
        path.write_text(text)
        args = _command(
            ["gateway", "serve", "--config", str(path), "--port", str(port)], profile_to, patches
        )
        server = ServerProcess(label, args, port, self.workdir / f"{label}-{port}.log", child_env())
        self._servers.append(server)
        server.start()
        workers = int(config.get("server", {}).get("workers", 1))
        if workers > 1:  # every worker up before the load generator opens its connections
            wait_for_workers(port, workers)
        return server

    def start_ceiling(self, *, profile_to: Path | None = None) -> ServerProcess:
        port = free_port()
        args = _command(["bench.ceiling", "--dsn", self.dsn, "--port", str(port)], profile_to)
        server = ServerProcess(
            "ceiling", args, port, self.workdir / f"ceiling-{port}.log", child_env()
        )
        self._servers.append(server)
        return server.start()

    def stop(self, server: ServerProcess) -> None:
        server.stop()
        if server in self._servers:
            self._servers.remove(server)


def bench_policy() -> dict[str, Any]:
    """One role that may read everything, so the benchmark measures serving, not refusals."""
    return {
        "roles": {
            BENCH_ROLE: {
                "description": "The benchmark's caller: every resident field, every purpose.",
                "operations": ["Query.resident", "Query.residents", "Query.agencies"],
                "views": {purpose: {"fields": ALL_FIELDS} for purpose in PURPOSES},
            }
        }
    }


def _command(
    module_and_args: Sequence[str], profile_to: Path | None, patches: Sequence[str] = ()
) -> list[str]:
    """``python -m MODULE ARGS``, or the same under :mod:`bench.launch` to profile or patch."""
    if profile_to is None and not patches:
        return [sys.executable, "-m", *module_and_args]
    args = [sys.executable, "-m", "bench.launch"]
    if profile_to is not None:
        args += ["--profile-out", str(profile_to)]
    if patches:
        args += ["--patch", ",".join(patches)]
    return [*args, "-m", *module_and_args]


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Ignore further Ctrl-C (and SIGTERM) while tearing down: teardown must finish."""

    def hold(signum: int, frame: object) -> None:
        print("(still tearing down; one moment)", file=sys.stderr, flush=True)

    try:
        previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
