"""A vehicle registry that runs an Apollo Federation v2 subgraph (strawberry's federation
support), served by uvicorn on 127.0.0.1 in a thread: ``Resident.vehicles`` for the
gateway to compose. It counts the ``_entities`` requests it answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.data import members

#: A resident whose entity the subgraph fails to resolve (a per-key error).
FAILING = "800101-1000001"


@strawberry.federation.type(description="A periodic roadworthiness inspection.")
class Inspection:
    passed_on: str = strawberry.federation.field(description="Day it was passed (ISO).")
    odometer_km: int = strawberry.federation.field(description="Odometer reading, in km.")


@strawberry.federation.type(description="A motor vehicle registered to a resident.")
class Vehicle:
    plate: str = strawberry.federation.field(description="The registration plate.")
    make: str = strawberry.federation.field(description="Maker and model.")
    year: int = strawberry.federation.field(description="Model year.")
    electric: bool = strawberry.federation.field(description="Whether it is electric.")
    inspections: list[Inspection] = strawberry.federation.field(
        description="Inspections, oldest first."
    )


def vehicles_of(rrn: str) -> list[Vehicle]:
    """The test data: every second household member owns rrn-derived vehicles."""
    index = next((i for i, m in enumerate(members()) if m[0] == rrn), None)
    if index is None or index % 2:
        return []
    return [
        Vehicle(
            plate=f"{10 + index}가{1000 + n}",
            make="Hyundai Ioniq" if n else "Kia Ray",
            year=2015 + n,
            electric=bool(n),
            inspections=[Inspection(passed_on=f"202{n}-03-0{index % 9 + 1}", odometer_km=n)],
        )
        for n in range(index % 3 + 1)
    ]


@strawberry.federation.type(keys=["rrn"], description="A resident, by RRN.")
class Resident:
    rrn: str = strawberry.federation.field(description="Resident registration number.")

    vehicles: list[Vehicle] | None = strawberry.federation.field(
        description="Vehicles registered to the resident."
    )

    @classmethod
    def resolve_reference(cls, rrn: str) -> Resident:
        if rrn == FAILING:
            raise RuntimeError("register offline for this resident")
        return cls(rrn=rrn, vehicles=vehicles_of(rrn) or None)


@strawberry.type(description="The vehicle registry's own queries.")
class Query:
    registry: str = strawberry.field(description="The registry's name.", default="vehicles")


class QuietSchema(strawberry.federation.Schema):
    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        pass  # the failing resident is on purpose: no traceback in the test output


# Federation v2 (strawberry 0.341 dropped enable_federation_2: v2 is the default).
SCHEMA = QuietSchema(query=Query, types=[Resident], federation_version="2.11")


@dataclass
class Subgraph:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    entities: int = 0  # _entities requests answered
    queries: list[str] = field(default_factory=list)
    traceparents: list[str | None] = field(default_factory=list)  # of _entities requests

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def app(state: dict[str, Any]) -> Starlette:
    async def graphql(request: Request) -> Response:
        body = await request.json()
        query = str(body.get("query", ""))
        subgraph: Subgraph = state["subgraph"]
        if "_entities" in query:
            subgraph.entities += 1
            subgraph.queries.append(query)
            subgraph.traceparents.append(request.headers.get("traceparent"))
        result = await SCHEMA.execute(query, variable_values=body.get("variables"))
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        return JSONResponse(out)

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


@contextmanager
def serving() -> Iterator[Subgraph]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    state: dict[str, Any] = {}
    config = uvicorn.Config(app(state), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    subgraph = Subgraph(f"http://127.0.0.1:{port}/graphql", server, thread)
    state["subgraph"] = subgraph
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test subgraph did not start")
        time.sleep(0.01)
    try:
        yield subgraph
    finally:
        subgraph.stop()
        sock.close()
