"""An agency running an Apollo Federation v2 subgraph joins as it is (``kind = "graphql"``):
its SDL is read at start-up, its Resident fields are composed into the schema, and they are
resolved with batched ``_entities`` calls through the gateway's machinery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from graphql import GraphQLList, GraphQLObjectType, get_named_type

from adapters.records import Dataset
from adapters.subgraph import SubgraphAdapter
from adapters.testing import AdapterCompliance
from gateway.config import AgencyConfig, ConfigError, PolicyConfig
from gateway.graphql_schema import schema_for
from gateway.subgraph import from_sdl
from tests.access.conftest import fetch
from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, make_config, token
from tests.data import HEAD_RRN, members
from tests.federation.subgraph_server import FAILING, SCHEMA, Subgraph, serving, vehicles_of

POLICY = """
[roles.vehicle_officer]
description = "Reads vehicles."
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.vehicle_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.household", "Household.*", "Resident.vehicles",
          "Vehicle.plate", "Vehicle.make", "Vehicle.year", "Vehicle.electric",
          "Vehicle.inspections", "Inspection.passedOn", "Inspection.odometerKm"]

[roles.plain_officer]
description = "No vehicles."
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.plain_officer.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name"]
"""
QUERY = """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
    vehicles { plate make year electric inspections { passedOn odometerKm } } } }"""
ABSENT = "900101-1234568"


def vehicle_agency(url: str) -> AgencyConfig:
    return AgencyConfig(code="vehicle", kind="graphql", url=url, cache=False, retries=0)


@pytest.fixture(scope="session")
def subgraph() -> Iterator[Subgraph]:
    with serving() as running:
        yield running


def _config(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], url: str, policy: Any
) -> Any:
    return make_config(
        agency_db.dsn, http_agencies, agencies={"vehicle": vehicle_agency(url)},
        policy=PolicyConfig(file=str(policy)),
    )  # fmt: skip


@pytest.fixture(scope="session")
async def gateway(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    subgraph: Subgraph,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[GatewayClient]:
    policy = tmp_path_factory.mktemp("vehicle") / "policy.toml"
    policy.write_text(POLICY)
    config = _config(agency_db, http_agencies, subgraph.url, policy)
    async with gateway_client(config, token("vehicle_officer", agency="welfare")) as client:
        yield client


def expected(rrn: str) -> list[dict[str, Any]] | None:
    found = [
        {"plate": v.plate, "make": v.make, "year": v.year, "electric": v.electric,
         "inspections": [{"passedOn": i.passed_on, "odometerKm": i.odometer_km}
                         for i in v.inspections]}
        for v in vehicles_of(rrn)
    ]  # fmt: skip
    return found or None


def test_sdl_fields_join_the_schema_with_their_descriptions(
    agency_db: ScratchDatabase, http_agencies: dict[str, str], subgraph: Subgraph, tmp_path: Any
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    schema = schema_for(_config(agency_db, http_agencies, subgraph.url, policy))._schema
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
    }  # fmt: skip
    inspection = schema.type_map["Inspection"]
    assert isinstance(inspection, GraphQLObjectType)
    assert inspection.fields["odometerKm"].description == "Odometer reading, in km."


async def test_end_to_end(gateway: GatewayClient) -> None:
    body = await gateway.query(QUERY, {"rrn": HEAD_RRN}, extensions={"provenance": True})
    assert "errors" not in body, body
    assert body["data"]["resident"]["vehicles"] == expected(HEAD_RRN) != None  # noqa: E711
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
    # The fixed selection: the contributed fields' known subfields, never anything else.
    assert "vehicles { plate make year electric inspections" in subgraph.queries[-1]
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
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Any
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with serving() as doomed:
        config = _config(agency_db, http_agencies, doomed.url, policy)
        bearer = token("vehicle_officer", agency="welfare")
        async with gateway_client(config, bearer) as client:
            doomed.stop()
            body = await client.query(QUERY, {"rrn": HEAD_RRN})
    assert body["data"]["resident"]["vehicles"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["AGENCY_UNAVAILABLE"]


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
    agency_db: ScratchDatabase, http_agencies: dict[str, str], tmp_path: Any
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    config = _config(agency_db, http_agencies, "http://127.0.0.1:1/graphql", policy)
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
