"""A hostile federation subgraph, in a thread of the test process: the test sets its SDL
(or a stream trickling it) and how it answers ``_entities`` (a function of the
representations returning a response body), and reads back the queries it received."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Representations = list[dict[str, Any]]


@dataclass
class Hostile:
    sdl: str
    entities: Callable[[Representations], dict[str, Any]] | None = None
    #: Makes the SDL answer's body (a start-up that hangs on it), when set.
    sdl_stream: Callable[[], AsyncIterator[bytes]] | None = None
    url: str = ""
    queries: list[dict[str, Any]] = field(default_factory=list)


def _app(h: Hostile) -> Starlette:
    async def graphql(request: Request) -> Response:
        body = await request.json()
        h.queries.append(body)
        query = str(body.get("query", ""))
        if "_service" in query:
            if h.sdl_stream is not None:
                return StreamingResponse(h.sdl_stream(), media_type="application/json")
            return JSONResponse({"data": {"_service": {"sdl": h.sdl}}})
        if "_entities" in query and h.entities is not None:
            return JSONResponse(h.entities(body["variables"]["representations"]))
        return JSONResponse({"data": {"__typename": "Query"}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


@contextmanager
def serving(h: Hostile) -> Iterator[Hostile]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(_app(h), log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    h.url = f"http://127.0.0.1:{port}/graphql"
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield h
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


SDL = """
"A resident." type Resident @key(fields: "rrn") {
  rrn: ID!
  "Vehicles registered to the resident." vehicles: [Vehicle!]
  "Penalty points." penaltyPoints: Int
}
"A vehicle." type Vehicle {
  "The plate." plate: String
  "Engine power, in kW." power: Float
  "Internal fraud-risk score; never for the public API." riskScore: Float @inaccessible
}
"""


def entity(rep: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """An honest entity for a representation: its key, and ``fields``."""
    return {"__typename": "Resident", "rrn": rep["rrn"], **fields}


def honest(reps: Representations) -> dict[str, Any]:
    return {"data": {"_entities": [
        entity(r, vehicles=[{"plate": "plate-of-" + r["rrn"][-4:], "power": 80.5,
                             "riskScore": 0.97}], penaltyPoints=2)
        for r in reps
    ]}}  # fmt: skip
