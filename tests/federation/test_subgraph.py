"""An agency running an Apollo Federation v2 subgraph joins as it is (``kind = "graphql"``):
its SDL is read at start-up, its Resident fields are composed into the schema, and they are
resolved with batched ``_entities`` calls through the gateway's machinery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLEnumType, GraphQLInt, GraphQLList, GraphQLObjectType, get_named_type

from adapters.records import Dataset
from adapters.subgraph import SubgraphAdapter
from adapters.testing import AdapterCompliance
from gateway.config import ConfigError
from gateway.graphql_schema import schema_for
from gateway.subgraph import from_sdl
from tests.access.conftest import fetch
from tests.adapters.tls_servers import CA
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, token
from tests.data import HEAD_RRN, members
from tests.federation.conftest import vehicle_agency, vehicle_config
from tests.federation.subgraph_server import (
    FAILING,
    SCHEMA,
    Subgraph,
    licence_of,
    penalty_points_of,
    serving,
    vehicles_of,
)

QUERY = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    vehicles { plate make year electric fuel inspections { passedOn odometerKm } }
    licence { number expiresOn } penaltyPoints licenceStatus } }"""
ABSENT = "900101-1234568"
NOTHING = {"vehicles": None, "licence": None, "penaltyPoints": None, "licenceStatus": None}


def expected(rrn: str) -> dict[str, Any]:
    """The answer to QUERY."""
    vehicles = [
        {"plate": v.plate, "make": v.make, "year": v.year, "electric": v.electric,
         "fuel": v.fuel.value,
         "inspections": [{"passedOn": i.passed_on, "odometerKm": i.odometer_km}
                         for i in v.inspections]}
        for v in vehicles_of(rrn)
    ]  # fmt: skip
    licence = licence_of(rrn)
    return {
        "vehicles": vehicles or None,
        "licence": None if licence is None else
        {"number": licence.number, "expiresOn": licence.expires_on},
        "penaltyPoints": penalty_points_of(rrn),
        "licenceStatus": None if licence is None else "VALID",
    }  # fmt: skip


def test_sdl_fields_join_the_schema_with_their_descriptions(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    subgraph: Subgraph,
    vehicle_policy: Path,
) -> None:
    agency = vehicle_agency(subgraph.url)
    schema = schema_for(vehicle_config(agency_db, http_agencies, vehicle_policy, agency))._schema
    resident = schema.type_map["Resident"]
    assert isinstance(resident, GraphQLObjectType)
    field = resident.fields["vehicles"]
    assert field.description == "Vehicles registered to the resident."
    assert isinstance(field.type, GraphQLList)  # [Vehicle!], nullable as every agency field
    vehicle = get_named_type(field.type)
    assert isinstance(vehicle, GraphQLObjectType)
    assert vehicle.description == "A motor vehicle registered to a resident."
    assert {n: f.description for n, f in vehicle.fields.items()} == {
        "plate": "The registration plate.", "make": "Maker and model.", "year": "Model year.",
        "electric": "Whether it is electric.", "inspections": "Inspections, oldest first.",
        "fuel": "What it runs on.",
    }  # fmt: skip
    inspection = schema.type_map["Inspection"]
    assert isinstance(inspection, GraphQLObjectType)
    assert inspection.fields["odometerKm"].description == "Odometer reading, in km."
    # Enums, with their descriptions, and scalar and enum fields on Resident.
    fuel = schema.type_map["Fuel"]
    assert isinstance(fuel, GraphQLEnumType)
    assert fuel.description == "What a vehicle runs on."
    assert {n: v.description for n, v in fuel.values.items()} == {
        "PETROL": "Petrol (gasoline).", "ELECTRIC": "A battery."
    }  # fmt: skip
    points = resident.fields["penaltyPoints"]
    assert (points.type, points.description) == (
        GraphQLInt, "Penalty points on the resident's licence."
    )  # fmt: skip
    assert resident.fields["licenceStatus"].type is schema.type_map["LicenceStatus"]


async def test_end_to_end(gateway: GatewayClient) -> None:
    body = await gateway.query(QUERY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
    assert "errors" not in body, body
    assert body["data"]["resident"] == expected(HEAD_RRN)
    assert None not in expected(HEAD_RRN).values()
    provenance = body["extensions"]["provenance"]
    assert any(e["agency"] == "vehicle" for e in provenance)


async def test_forbidden_without_grant(gateway: GatewayClient, subgraph: Subgraph) -> None:
    before, calls = subgraph.entities, gateway.calls("vehicle")
    body = await gateway.as_(token("plain_officer", agency="welfare")).query(
        "query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) "
        "{ vehicles { plate } } }",
        {"rrn": HEAD_RRN},
    )
    assert body["data"]["resident"]["vehicles"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    assert (subgraph.entities, gateway.calls("vehicle")) == (before, calls)


async def test_household_is_one_entities_call(gateway: GatewayClient, subgraph: Subgraph) -> None:
    query = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
        household { members { name vehicles { plate } } } } }"""
    before = subgraph.entities
    body = await gateway.query(query, {"rrn": HEAD_RRN})
    assert "errors" not in body, body
    found = body["data"]["resident"]["household"]["members"]
    assert len(found) == len(members()) > 1
    assert subgraph.entities == before + 1
    assert sorted(subgraph.received[-1]["rrns"]) == sorted(m[0] for m in members())
    plates = sorted(v["plate"] for m in found for v in m["vehicles"] or ())
    assert plates == sorted(v.plate for rrn, *_ in members() for v in vehicles_of(rrn))


async def test_audit_lists_the_field(gateway: GatewayClient, agency_db: ScratchDatabase) -> None:
    sub = "vehicle-audit-officer"
    bearer = token("vehicle_officer", agency="welfare", sub=sub)
    body = await gateway.as_(bearer).query(
        "query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) "
        "{ vehicles { plate year } } }",
        {"rrn": HEAD_RRN},
    )
    assert "errors" not in body, body
    rows = await fetch(
        agency_db.dsn, "select disclosed from gateway.audit_log where principal = $1", sub
    )
    assert [list(r["disclosed"]) for r in rows] == [
        ["Resident.vehicles", "Vehicle.plate", "Vehicle.year"]
    ]


async def test_subgraph_down_is_agency_unavailable(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], vehicle_policy: Path
) -> None:
    with serving() as doomed:
        agency = vehicle_agency(doomed.url)
        config = vehicle_config(agency_db, http_agencies, vehicle_policy, agency)
        bearer = token("vehicle_officer", agency="welfare")
        async with gateway_client(config, bearer) as client:
            doomed.stop()
            body = await client.query(QUERY, {"rrn": HEAD_RRN})
    assert body["data"]["resident"] == NOTHING
    assert {(e["extensions"]["code"], e["extensions"]["agency"]) for e in body["errors"]} == {
        ("AGENCY_UNAVAILABLE", "vehicle")
    }


async def test_slow_subgraph_is_agency_timeout(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], vehicle_policy: Path
) -> None:
    # Its _entities answers take 6 s; the agency's timeout is 0.3 s. The margin is wide: the
    # answer must come long before the subgraph's, not at any precise time.
    with serving(delay_s=6) as slow:
        agency = vehicle_agency(slow.url, timeout_ms=300)
        config = vehicle_config(agency_db, http_agencies, vehicle_policy, agency)
        bearer = token("vehicle_officer", agency="welfare")
        async with gateway_client(config, bearer) as client:
            started = time.monotonic()
            body = await client.query(QUERY, {"rrn": HEAD_RRN})
            elapsed = time.monotonic() - started
        assert slow.entities == 1  # it was asked, once (retries = 0)
    assert body["data"]["resident"] == NOTHING
    assert {(e["extensions"]["code"], e["extensions"]["agency"]) for e in body["errors"]} == {
        ("AGENCY_TIMEOUT", "vehicle")
    }
    assert elapsed < 4


async def test_subgraph_over_tls_with_a_private_ca_and_a_bearer_credential(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    vehicle_policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca = CA(tmp_path)
    issued = ca.issue("vehicle-registry", server=True)
    ca_file = ca.pem
    secret = "Bearer vehicle-gateway-credential-1"
    monkeypatch.setenv("VEHICLE_AUTH", secret)
    with serving(auth=secret, cert=issued.cert, key=issued.key, ca=ca_file) as secure:
        assert secure.url.startswith("https://")
        trusted = vehicle_agency(
            secure.url, settings={"ca_file": str(ca_file), "auth_header": "env:VEHICLE_AUTH"}
        )
        config = vehicle_config(agency_db, http_agencies, vehicle_policy, trusted)
        async with gateway_client(config, token("vehicle_officer", agency="welfare")) as client:
            body = await client.query(QUERY, {"rrn": HEAD_RRN})
        assert "errors" not in body, body
        assert body["data"]["resident"] == expected(HEAD_RRN)
        assert secure.entities == 1

        # Start-up reads the SDL through the same trust settings: without the CA, or with
        # another credential, it cannot, and says so in one line, the secret unsaid.
        untrusted = vehicle_agency(secure.url, settings={"auth_header": "env:VEHICLE_AUTH"})
        with pytest.raises(ConfigError, match=r"cannot read its SDL: .*TLS failed") as refused:
            schema_for(vehicle_config(agency_db, http_agencies, vehicle_policy, untrusted))
        monkeypatch.setenv("OTHER_AUTH", "Bearer another-credential")
        other_credential = vehicle_agency(
            secure.url, settings={"ca_file": str(ca_file), "auth_header": "env:OTHER_AUTH"}
        )
        with pytest.raises(ConfigError, match=r"cannot read its SDL: .*HTTP 401") as other:
            schema_for(vehicle_config(agency_db, http_agencies, vehicle_policy, other_credential))
    assert str(refused.value).endswith("TLS failed (CERTIFICATE_VERIFY_FAILED)")
    assert str(other.value).endswith(": cannot read its SDL: vehicle answered HTTP 401")


# Start-up refuses what it cannot compose, with one line naming the agency -------------

HERE = "[agencies.vehicle] (graphql subgraph x)"


def _sdl() -> str:
    return str(SCHEMA.as_str())


def test_undescribed_field_stops_start_up() -> None:
    sdl = _sdl().replace('  """Model year."""\n', "")
    with pytest.raises(ConfigError, match=r"^\[agencies.vehicle\] .*: field Vehicle.year has no"):
        from_sdl("vehicle", sdl, HERE)
    sdl = _sdl().replace('"""A motor vehicle registered to a resident."""\n', "")
    with pytest.raises(ConfigError, match=r": type Vehicle has no description$"):
        from_sdl("vehicle", sdl, HERE)


VEHICLE = '"""A motor vehicle registered to a resident."""\ntype Vehicle {'
UNSUPPORTED = [
    # (what the subgraph's SDL has, the line start-up prints after the agency's name)
    (
        VEHICLE + '\n  """Its VIN."""\n  vin: VIN!',
        "scalar VIN\n",
        "field Vehicle.vin is of custom scalar VIN (not supported)",
    ),
    (
        VEHICLE + '\n  """Its owner."""\n  owner: Owner',
        '"""Who owns it."""\ninterface Owner {\n  """Name."""\n  name: String\n}\n',
        "field Vehicle.owner is of interface Owner (not supported)",
    ),
    (
        VEHICLE + '\n  """A document."""\n  paper: Paper',
        '"""A paper."""\nunion Paper = Inspection | Licence\n',
        "field Vehicle.paper is of union Paper (not supported)",
    ),
    (
        VEHICLE + '\n  """Plates issued, by year."""\n  plates(year: Int): [String!]',
        "",
        "field Vehicle.plates takes arguments (not supported)",
    ),
    (
        VEHICLE + '\n  """The vehicle towing it."""\n  towedBy: Vehicle',
        "",
        "type Vehicle is recursive (not supported)",
    ),
    (
        '"""What a vehicle runs on."""\nenum Fuel {',
        "",
        "enum Fuel has no description",
    ),
    (
        '"""Vehicles registered to the resident."""\n  vehicles: [Vehicle!]',
        "",
        "field Resident.vehicles has no description",
    ),
]


@pytest.mark.parametrize(("find", "add", "line"), UNSUPPORTED)
def test_what_is_not_supported_stops_start_up_in_one_line(find: str, add: str, line: str) -> None:
    sdl = _sdl()
    assert find.split("\n")[0] in sdl
    if find.startswith(VEHICLE):  # a field added to Vehicle
        changed = sdl.replace(VEHICLE, find)
    else:  # a description taken away
        changed = sdl.replace(find, find.split("\n", 1)[1])
    with pytest.raises(ConfigError) as refused:
        from_sdl("vehicle", add + changed, HERE)
    assert str(refused.value) == f"{HERE}: {line}"


def test_collision_stops_start_up(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Any
) -> None:
    from gateway import subgraph as module
    from gateway.graphql_schema import build_schema

    clash = from_sdl("vehicle", _sdl().replace("Inspection", "Address"), HERE)
    with pytest.raises(ConfigError, match=r"^\[agencies.vehicle\] .*: type Address already"):
        build_schema(contributions=[(HERE, clash)])
    taxes = from_sdl("vehicle", _sdl().replace("vehicles:", "taxes:"), HERE)
    with pytest.raises(ConfigError, match=r"^\[agencies.vehicle\] .*: field Resident.taxes"):
        build_schema(contributions=[(HERE, taxes)])
    with pytest.raises(ConfigError, match="no entity Resident"):
        from_sdl("vehicle", _sdl().replace('@key(fields: "rrn")', ""), HERE)
    assert module.KIND == "graphql"


def test_unreachable_subgraph_stops_start_up(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], vehicle_policy: Path
) -> None:
    agency = vehicle_agency("http://127.0.0.1:1/graphql")
    config = vehicle_config(agency_db, http_agencies, vehicle_policy, agency)
    with pytest.raises(ConfigError, match=r"^\[agencies.vehicle\] .*: cannot read its SDL"):
        schema_for(config)


# The GraphQL source passes the compliance suite ----------------------------------------


class TestSubgraphCompliance(AdapterCompliance):
    present = (HEAD_RRN,)
    absent = (ABSENT,)
    failing = (FAILING,)
    dataset: Dataset

    @pytest.fixture(autouse=True)
    def _subgraph(self, subgraph: Subgraph) -> None:
        self.url = subgraph.url
        type(self).dataset = from_sdl("vehicle", _sdl(), HERE).dataset

    def make_adapter(self) -> SubgraphAdapter:
        return SubgraphAdapter("vehicle", {"url": self.url})

    def make_unreachable_adapter(self) -> SubgraphAdapter:
        return SubgraphAdapter("vehicle", {"url": "http://127.0.0.1:1/graphql"})


# The wire: trust headers go with every request; a failed batch is an agency failure ----


async def test_static_header_and_batch_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from adapters.base import AgencyFailure

    seen: list[httpx.Request] = []
    answers = iter(
        [
            {"errors": [{"message": "boom: 940812-1001751", "extensions": {"code": "DOWN"}}]},
            {"data": None},
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=next(answers))

    monkeypatch.setenv("VEHICLE_AUTH", "X-Api-Key: s3cret-key")
    settings = {"url": "https://vehicle.test/graphql", "auth_header": "env:VEHICLE_AUTH"}
    dataset = from_sdl("vehicle", _sdl(), HERE).dataset
    async with SubgraphAdapter("vehicle", settings, httpx.MockTransport(handler)) as adapter:
        with pytest.raises(
            AgencyFailure, match=r"^vehicle answered 1 GraphQL error\(s\) \(DOWN\)$"
        ):
            await adapter.fetch(dataset, [HEAD_RRN])
        with pytest.raises(AgencyFailure, match="not an _entities list"):
            await adapter.fetch(dataset, [HEAD_RRN])
    assert [r.headers["X-Api-Key"] for r in seen] == ["s3cret-key"] * 2
