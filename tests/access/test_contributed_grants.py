"""Policy wildcards never grant fields contributed by agencies (packages or GraphQL
subgraphs): ``Resident.*`` does not grant ``Resident.vehicles``, ``Vehicle.*`` is refused, and a
field the agency adds later is granted to no one until named; ``gateway check-config`` lists
contributed fields no role may read. A real subgraph server on 127.0.0.1 serves the SDL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.cli import main
from gateway.config import AgencyConfig, PolicyConfig
from gateway.runtime import DEMO_POLICY
from tests.adapters.tls_servers import serve
from tests.conftest import ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN

V1 = """"A resident." type Resident @key(fields: "rrn") { rrn: ID!
  "Vehicles registered to the resident." vehicles: [Vehicle!] }
"A vehicle." type Vehicle { "The plate." plate: String }"""
V2 = V1.replace(
    '"The plate." plate: String',
    '"The plate." plate: String "Where it is parked at night." nightLocation: String',
)
NAMED = """[roles.officer]
description = "Reads vehicles."
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.vehicles", "Vehicle.plate"]
"""
_servers = itertools.count()


def subgraph_app(sdl: str) -> Starlette:
    async def graphql(request: Request) -> Response:
        body = await request.json()
        query = str(body.get("query", ""))
        if "_service" in query:
            return JSONResponse({"data": {"_service": {"sdl": sdl}}})
        if "_entities" in query:
            entities = [
                {"vehicles": [{"plate": "12가3456", "nightLocation": "home"}]}
                for _ in body["variables"]["representations"]
            ]
            return JSONResponse({"data": {"_entities": entities}})
        return JSONResponse({"data": {"__typename": "Query"}})

    return Starlette(routes=[Route("/graphql", graphql, methods=["POST"])])


@contextmanager
def subgraph(sdl: str) -> Iterator[str]:
    # A new port each time: the gateway reads a subgraph's SDL once per process and URL.
    with serve(subgraph_app(sdl)) as base:
        yield f"{base}/graphql?n={next(_servers)}"


CONFIG = """
[database]
url = "postgresql://postgres@127.0.0.1/gw"
[auth]
secret = "a-development-secret-of-forty-characters!"
[audit]
key = "an-audit-key-of-at-least-thirty-two-characters"
[policy]
file = "POLICY"
[agencies.registry]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.nhis]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.nps]
kind = "sql"
dsn = "postgresql://postgres@127.0.0.1/agencies"
[agencies.mma]
kind = "http"
url = "http://127.0.0.1:9101"
[agencies.nts]
kind = "http"
url = "http://127.0.0.1:9100"
[agencies.vehicle]
kind = "graphql"
url = "URL"
"""


def check_config(tmp_path: Path, url: str, policy: str | Path) -> int:
    if isinstance(policy, str):
        (tmp_path / "policy.toml").write_text(policy)
        policy = tmp_path / "policy.toml"
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.replace("POLICY", str(policy)).replace("URL", url))
    return main(["check-config", "--config", str(path)])


def test_a_wildcard_on_a_contributed_type_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with subgraph(V1) as url:
        assert check_config(tmp_path, url, NAMED.replace('"Vehicle.plate"', '"Vehicle.*"')) == 2
    err = capsys.readouterr().err
    assert "view WELFARE_ELIGIBILITY: 'Vehicle.*': Vehicle is contributed by [agencies." in err
    assert "name the fields to grant (Vehicle.plate): a wildcard would grant fields" in err


def test_a_field_the_agency_adds_later_is_granted_to_no_one_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with subgraph(V1) as url:
        assert check_config(tmp_path, url, NAMED) == 0
    first = capsys.readouterr().out
    assert "contributed by agencies" not in first
    with subgraph(V2) as url:  # the agency adds nightLocation; the policy is unchanged
        assert check_config(tmp_path, url, NAMED) == 0
    second = capsys.readouterr().out
    assert (
        "note: no role may read these fields contributed by agencies (wildcards do not grant "
        "them; name each one to grant it): Vehicle.nightLocation\n"
    ) in second


def test_check_config_lists_the_contributed_fields_the_demo_policy_leaves_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo policy's citizen SELF view grants "Resident.*": that is not Resident.vehicles.
    with subgraph(V1) as url:
        assert check_config(tmp_path, url, DEMO_POLICY) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "contributed by agencies" in x)
    assert line.endswith(": Resident.vehicles, Vehicle.plate")


async def test_resident_star_does_not_read_a_contributed_field(
    agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    with subgraph(V1) as url:
        agency = AgencyConfig(code="vehicle", kind="graphql", url=url, cache=False, retries=0)
        config = make_config(
            agency_db.dsn,
            http_agencies,
            agencies={"vehicle": agency},
            policy=PolicyConfig(file=str(DEMO_POLICY)),
        )
        async with gateway_client(config, token("citizen", rrn=HEAD_RRN)) as gateway:
            own: dict[str, Any] = await gateway.query("{ me { name } }")
            body: dict[str, Any] = await gateway.query("{ me { vehicles { __typename } } }")
    assert own["data"]["me"]["name"] == "Kim Min-jun"  # Resident.* still grants our fields
    assert body["data"]["me"]["vehicles"] is None
    [error] = body["errors"]
    assert error["path"] == ["me", "vehicles"]
    assert error["extensions"]["code"] == "FORBIDDEN"
