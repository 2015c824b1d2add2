"""A vehicle registry that runs an Apollo Federation v2 subgraph (strawberry's federation
support): ``Resident.vehicles`` and ``Resident.licence`` for the gateway to compose.

Tests start it in a child process (:func:`serving`, ``python -m
tests.federation.subgraph_server``), on a free port, optionally over TLS, behind a bearer
credential or slow. It records the ``_entities`` queries it answers, which tests read back
from ``GET /_test/received``, so they assert on what the subgraph actually received."""

from __future__ import annotations

import argparse
import asyncio
import enum
import functools
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.data import members

#: A resident whose entity the subgraph fails to resolve (a per-key error).
FAILING = "800101-1000001"
#: The environment variable holding the credential the subgraph requires, if any.
AUTH_ENV = "TEST_SUBGRAPH_AUTH"


@strawberry.federation.type(description="A periodic roadworthiness inspection.")
class Inspection:
    passed_on: str = strawberry.federation.field(description="Day it was passed (ISO).")
    odometer_km: int = strawberry.federation.field(description="Odometer reading, in km.")


@strawberry.enum(description="What a vehicle runs on.")
class Fuel(enum.Enum):
    PETROL = strawberry.enum_value("PETROL", description="Petrol (gasoline).")
    ELECTRIC = strawberry.enum_value("ELECTRIC", description="A battery.")


@strawberry.enum(description="Whether a driving licence may be used.")
class LicenceStatus(enum.Enum):
    VALID = "VALID"
    SUSPENDED = "SUSPENDED"


@strawberry.federation.type(description="A motor vehicle registered to a resident.")
class Vehicle:
    plate: str = strawberry.federation.field(description="The registration plate.")
    make: str = strawberry.federation.field(description="Maker and model.")
    year: int = strawberry.federation.field(description="Model year.")
    electric: bool = strawberry.federation.field(description="Whether it is electric.")
    fuel: Fuel = strawberry.federation.field(description="What it runs on.")
    inspections: list[Inspection] = strawberry.federation.field(
        description="Inspections, oldest first."
    )


@strawberry.federation.type(description="A driving licence.")
class Licence:
    number: str = strawberry.federation.field(description="The licence number.")
    expires_on: str = strawberry.federation.field(description="Last day it is valid (ISO).")


@functools.cache
def _indexes() -> dict[str, int]:
    return {m[0]: i for i, m in enumerate(members())}


def _index(rrn: str) -> int | None:
    """The resident's place in the test household (the compliance suite asks 1,000 keys at
    once: a dict, not a scan of the household per key)."""
    return _indexes().get(rrn)


def vehicles_of(rrn: str) -> list[Vehicle]:
    """The test data: every second household member owns rrn-derived vehicles."""
    index = _index(rrn)
    if index is None or index % 2:
        return []
    return [
        Vehicle(
            plate=f"{10 + index}가{1000 + n}",
            make="Hyundai Ioniq" if n else "Kia Ray",
            year=2015 + n,
            electric=bool(n),
            fuel=Fuel.ELECTRIC if n else Fuel.PETROL,
            inspections=[Inspection(passed_on=f"202{n}-03-0{index % 9 + 1}", odometer_km=n)],
        )
        for n in range(index % 3 + 1)
    ]


def licence_of(rrn: str) -> Licence | None:
    """Every household member but the second holds a licence."""
    index = _index(rrn)
    if index is None or index == 1:
        return None
    return Licence(number=f"11-{index:02d}-123456-0{index % 9}", expires_on="2031-12-31")


def penalty_points_of(rrn: str) -> int | None:
    """Licence holders have points: 0 for the head, more for the others."""
    index = _index(rrn)
    return None if index is None or licence_of(rrn) is None else 3 * index


@strawberry.federation.type(keys=["rrn"], description="A resident, by RRN.")
class Resident:
    rrn: str = strawberry.federation.field(description="Resident registration number.")

    vehicles: list[Vehicle] | None = strawberry.federation.field(
        description="Vehicles registered to the resident."
    )
    licence: Licence | None = strawberry.federation.field(
        description="The resident's driving licence."
    )
    penalty_points: int | None = strawberry.federation.field(
        description="Penalty points on the resident's licence."
    )
    licence_status: LicenceStatus | None = strawberry.federation.field(
        description="Whether the resident's licence may be used."
    )

    @classmethod
    def resolve_reference(cls, rrn: str) -> Resident:
        if rrn == FAILING:
            raise RuntimeError("register offline for this resident")
        licence = licence_of(rrn)
        return cls(
            rrn=rrn,
            vehicles=vehicles_of(rrn) or None,
            licence=licence,
            penalty_points=penalty_points_of(rrn),
            licence_status=None if licence is None else LicenceStatus.VALID,
        )


@strawberry.type(description="The vehicle registry's own queries.")
class Query:
    registry: str = strawberry.field(description="The registry's name.", default="vehicles")


class QuietSchema(strawberry.federation.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        pass  # the failing resident is on purpose: no traceback in the test output


# Federation v2 (strawberry 0.341 dropped enable_federation_2: v2 is the default).
SCHEMA = QuietSchema(query=Query, types=[Resident], federation_version="2.11")


def app(delay_s: float = 0.0, auth: str | None = None) -> Starlette:
    """The subgraph; ``_entities`` answers take ``delay_s``; with ``auth`` it answers 401
    to requests whose ``Authorization`` differs."""
    received: list[dict[str, Any]] = []

    async def graphql(request: Request) -> Response:
        if auth is not None and request.headers.get("authorization") != auth:
            return JSONResponse({"errors": [{"message": "unauthorized"}]}, 401)
        body = await request.json()
        query = str(body.get("query", ""))
        if "_entities" in query:
            representations = (body.get("variables") or {}).get("representations") or []
            received.append({
                "query": query,
                "rrns": [r.get("rrn") for r in representations],
                "traceparent": request.headers.get("traceparent"),
            })  # fmt: skip
            await asyncio.sleep(delay_s)
        result = await SCHEMA.execute(query, variable_values=body.get("variables"))
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return JSONResponse(out)

    async def report(request: Request) -> Response:
        return JSONResponse(received)

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["POST"]),
            Route("/_test/received", report),
        ]
    )


@dataclass
class Subgraph:
    """A subgraph child process; ``url`` is its GraphQL endpoint."""

    url: str
    process: subprocess.Popen[str]
    verify: ssl.SSLContext | bool = True

    @property
    def received(self) -> list[dict[str, Any]]:
        """The ``_entities`` requests answered so far: ``{"query": ..., "rrns": [...]}``."""
        base = self.url.removesuffix("/graphql")
        answer = httpx.get(f"{base}/_test/received", verify=self.verify, timeout=10)
        answer.raise_for_status()
        found: list[dict[str, Any]] = answer.json()
        return found

    @property
    def entities(self) -> int:
        return len(self.received)

    @property
    def queries(self) -> list[str]:
        return [r["query"] for r in self.received]

    @property
    def traceparents(self) -> list[str | None]:
        """The ``traceparent`` header of each ``_entities`` request, in order."""
        return [r["traceparent"] for r in self.received]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextmanager
def serving(
    *,
    delay_s: float = 0.0,
    auth: str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
    timeout_s: float = 30,
) -> Iterator[Subgraph]:
    """Start the subgraph in a child process on a free port of 127.0.0.1 (https with
    ``cert``/``key``; ``ca`` verifies it for the test's own reads), wait until it answers,
    and stop it afterwards."""
    command = [sys.executable, "-m", "tests.federation.subgraph_server", "--delay-s", str(delay_s)]
    if cert is not None and key is not None:
        command += ["--certfile", str(cert), "--keyfile", str(key)]
    environ = dict(os.environ)
    environ.pop(AUTH_ENV, None)
    if auth is not None:
        environ[AUTH_ENV] = auth  # not on the command line, where `ps` shows it
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=environ,
        cwd=root,
    )  # fmt: skip
    line: list[str] = []
    reader = threading.Thread(
        target=lambda: line.append(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(timeout_s)
    verify = True if ca is None else ssl.create_default_context(cafile=str(ca))
    subgraph = Subgraph("", process, verify)
    if not line or not line[0].startswith("READY "):
        subgraph.stop()
        raise RuntimeError(f"the test subgraph did not start: {line!r}")
    subgraph.url = line[0].split()[1]
    try:
        yield subgraph
    finally:
        subgraph.stop()


class _Announcing(uvicorn.Server):
    """Prints ``READY <url>`` once it listens: the parent waits for that line."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            scheme = "https" if self.config.ssl_certfile else "http"
            print(f"READY {scheme}://127.0.0.1:{port}/graphql", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="The test vehicle registry subgraph.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    config = uvicorn.Config(
        app(args.delay_s, os.environ.get(AUTH_ENV)), host="127.0.0.1", port=args.port,
        log_level="warning", access_log=False, lifespan="off", ws="none",
        ssl_certfile=args.certfile, ssl_keyfile=args.keyfile,
    )  # fmt: skip
    _Announcing(config).run()


if __name__ == "__main__":
    main()
