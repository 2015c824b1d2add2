"""A demo land registry speaking SOAP-style XML, with parcels derived from the RRN."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from land_registry.adapter import LR, NS, envelope


def parcels(rrn: str) -> list[dict[str, str]]:
    """0 to 2 parcels per resident, the same every time."""
    digest = hashlib.sha256(rrn.encode()).hexdigest()
    return [
        {
            "id": f"{int(digest[i * 8 : i * 8 + 8], 16) % 10**10:010d}",
            "address": f"{int(digest[i * 4 : i * 4 + 2], 16) + 1} Jibeon-ro, Sejong",
            "areaSqm": f"{int(digest[i * 6 : i * 6 + 4], 16) % 5000 + 50}.5",
            "acquiredOn": f"{1990 + int(digest[i], 16)}-0{i + 1}-15",
        }
        for i in range(int(digest[:2], 16) % 3)
    ]


async def soap(request: Request) -> Response:
    asked = ET.fromstring(await request.body())  # noqa: S314 - a demo server
    answer = ET.Element(f"{{{LR}}}GetParcelsResponse")
    for owner in asked.iterfind(".//lr:GetParcels/lr:owner", NS):
        found = ET.SubElement(answer, f"{{{LR}}}owner", rrn=str(owner.text))
        for parcel in parcels(str(owner.text)):
            ET.SubElement(found, f"{{{LR}}}parcel", parcel)
    return Response(envelope(answer), media_type="text/xml")


app = Starlette(routes=[Route("/soap", soap, methods=["POST"])])


@contextlib.contextmanager
def demo() -> Iterator[Mapping[str, Mapping[str, Any]]]:
    """The demo registry on a free loopback port, in a thread: agency ``land``'s table."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        url = f"http://127.0.0.1:{port}"
        yield {"land": {"kind": "landregistry", "url": url, "datasets": ["land_parcels"]}}
    finally:
        server.should_exit = True
        thread.join()
