"""The gateway forwards to a GraphQL subgraph only the subfields a request selects and the
caller may read: asserted on the queries the subgraph process actually received."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import GatewayClient, ScratchDatabase, gateway_client, token
from tests.data import HEAD_RRN, members
from tests.federation.conftest import vehicle_agency, vehicle_config
from tests.federation.subgraph_server import Subgraph, licence_of, vehicles_of

LOOKUP = "query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { %s } }"


def forwarded(received: dict[str, Any]) -> str:
    """The selection an ``_entities`` query asked of each Resident (after the key, which every
    entity is asked for, to check it is the resident asked about)."""
    query: str = received["query"]
    asked = query.split("... on Resident { ", 1)[1].rsplit(" } } }", 1)[0]
    identity = "__typename rrn "
    assert asked.startswith(identity), asked
    return asked.removeprefix(identity)


async def asked(
    gateway: GatewayClient, subgraph: Subgraph, selection: str, bearer: str | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The answer to a lookup of HEAD_RRN, and the selections the subgraph received for it."""
    before = subgraph.entities
    client = gateway if bearer is None else gateway.as_(bearer)
    body = await client.query(LOOKUP % selection, {"rrn": HEAD_RRN})
    return body, [forwarded(r) for r in subgraph.received[before:]]


async def test_only_the_selected_subfields_are_forwarded(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    body, selections = await asked(gateway, subgraph, "vehicles { plate }")
    assert "errors" not in body, body
    assert selections == ["vehicles { plate }"]
    assert body["data"]["resident"]["vehicles"] == [
        {"plate": v.plate} for v in vehicles_of(HEAD_RRN)
    ]

    body, selections = await asked(
        gateway, subgraph, "licence { expiresOn } vehicles { __typename }"
    )
    assert "errors" not in body, body
    assert selections == ["licence { expiresOn } vehicles { __typename }"]
    assert body["data"]["resident"]["licence"] == {"expiresOn": licence_of(HEAD_RRN).expires_on}  # type: ignore[union-attr]


async def test_scalar_and_enum_fields_are_forwarded_as_leaves(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    body, selections = await asked(
        gateway, subgraph, "penaltyPoints licenceStatus vehicles { fuel }"
    )
    assert "errors" not in body, body
    assert selections == ["licenceStatus penaltyPoints vehicles { fuel }"]
    assert body["data"]["resident"] == {
        "penaltyPoints": 0,  # a value, though falsy: not "no record"
        "licenceStatus": "VALID",
        "vehicles": [{"fuel": v.fuel.value} for v in vehicles_of(HEAD_RRN)],
    }


async def test_aliases_and_fragments_are_merged_into_one_call(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    # Every member's fields resolve in one batch: one _entities call carrying the union of
    # the selections, however they are spelt.
    query = """query($rrn: String!, $full: Boolean!) {
      resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { household { members {
        cars: vehicles { plate }
        ...More
        vehicles @include(if: $full) { electric }
        licence @skip(if: $full) { number }
      } } }
    }
    fragment More on Resident {
      vehicles { ... on Vehicle { make } inspections { ...Reading } }
      licence { expiresOn }
    }
    fragment Reading on Inspection { odometerKm }"""
    before = subgraph.entities
    body = await gateway.query(query, {"rrn": HEAD_RRN, "full": False})
    assert "errors" not in body, body
    received = subgraph.received[before:]
    assert len(received) == 1
    assert sorted(received[0]["rrns"]) == sorted(m[0] for m in members())
    assert forwarded(received[0]) == (
        "licence { expiresOn number } vehicles { inspections { odometerKm } make plate }"
    )
    found = body["data"]["resident"]["household"]["members"]
    for member, (rrn, *_) in zip(found, members(), strict=True):
        vehicles = vehicles_of(rrn)
        assert member["cars"] == ([{"plate": v.plate} for v in vehicles] or None)
        assert member["vehicles"] == (
            [
                {
                    "make": v.make,
                    "inspections": [{"odometerKm": i.odometer_km} for i in v.inspections],
                }
                for v in vehicles
            ]
            or None
        )
        licence = licence_of(rrn)
        assert member["licence"] == (
            None if licence is None else {"number": licence.number, "expiresOn": licence.expires_on}
        )


async def test_a_cached_narrow_selection_never_answers_a_wider_one(
    agency_db: ScratchDatabase,
    http_agencies: dict[str, str],
    subgraph: Subgraph,
    vehicle_policy: Path,
) -> None:
    agency = vehicle_agency(subgraph.url, cache=True, cache_ttl_s=300)
    config = vehicle_config(agency_db, http_agencies, vehicle_policy, agency)
    async with gateway_client(config, token("vehicle_officer", agency="welfare")) as cached:
        narrow, selections = await asked(cached, subgraph, "vehicles { plate }")
        assert selections == ["vehicles { plate }"]
        wide, selections = await asked(cached, subgraph, "vehicles { plate make }")
        assert selections == ["vehicles { make plate }"]
        again, selections = await asked(cached, subgraph, "vehicles { plate }")
        assert selections == []  # the narrow part, from the cache
        wide_again, selections = await asked(cached, subgraph, "vehicles { make plate }")
        assert selections == []  # the same part, however ordered
    assert "errors" not in wide, wide
    vehicles = vehicles_of(HEAD_RRN)
    assert narrow["data"] == again["data"]
    assert wide["data"] == wide_again["data"]
    assert wide["data"]["resident"]["vehicles"] == [
        {"plate": v.plate, "make": v.make} for v in vehicles
    ]


async def test_a_field_the_caller_may_not_read_is_never_forwarded(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    # plate_officer may read Resident.vehicles, Vehicle.plate and Vehicle.inspections only.
    bearer = token("plate_officer", agency="welfare")
    body, selections = await asked(
        gateway,
        subgraph,
        "vehicles { plate inspections { passedOn } } licence { number } v2: vehicles { year }",
        bearer,
    )
    assert selections == ["vehicles { inspections { __typename } plate }"]
    refused = {(e["extensions"]["code"], ".".join(map(str, e["path"][1:]))) for e in body["errors"]}
    assert refused == {
        ("FORBIDDEN", "licence"),
        ("FORBIDDEN", "vehicles.0.inspections.0.passedOn"),
        ("FORBIDDEN", "v2.0.year"),
    }


async def test_a_field_awaiting_consent_is_never_forwarded(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    # Under CIVIL_PETITION Resident.licence needs the resident's consent; HEAD_RRN gave none.
    before = subgraph.entities
    body = await gateway.query(
        "query($rrn: String!) { resident(rrn: $rrn, purpose: CIVIL_PETITION) "
        "{ vehicles { plate } licence { number } } }",
        {"rrn": HEAD_RRN},
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["CONSENT_REQUIRED"]
    assert body["data"]["resident"]["vehicles"] == [
        {"plate": v.plate} for v in vehicles_of(HEAD_RRN)
    ]
    assert [forwarded(r) for r in subgraph.received[before:]] == ["vehicles { plate }"]


async def test_each_view_forwards_only_what_it_grants(
    gateway: GatewayClient, subgraph: Subgraph
) -> None:
    # Adversarial: one request, two purposes. vehicle_officer reads Inspection.* for
    # WELFARE_ELIGIBILITY but not for CIVIL_PETITION; a union across the request must not
    # carry odometer readings into the CIVIL_PETITION lookup's call.
    before = subgraph.entities
    body = await gateway.query(
        """query($rrn: String!) {
          w: resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
            vehicles { inspections { odometerKm } } }
          c: resident(rrn: $rrn, purpose: CIVIL_PETITION) {
            vehicles { plate inspections { odometerKm } } } }""",
        {"rrn": HEAD_RRN},
    )
    received = sorted(forwarded(r) for r in subgraph.received[before:])
    assert received == [
        "vehicles { inspections { __typename } plate }",  # CIVIL_PETITION
        "vehicles { inspections { odometerKm } plate }",  # WELFARE_ELIGIBILITY
    ]
    assert {(e["extensions"]["code"], e["path"][0]) for e in body["errors"]} == {("FORBIDDEN", "c")}
