"""Each field's description ends with who may read it, generated from the policy file at
start-up: what GraphiQL's docs pane shows, served by introspection."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway import policy as policy_module
from gateway.config import Config
from gateway.graphql_schema import (
    PURPOSES,
    agency_fields,
    build_schema,
    describe_access,
    resident_types,
    schema_fields,
)
from gateway.runtime import DEMO_POLICY
from tests.access.conftest import DEMO
from tests.conftest import GatewayClient, gateway_client, token

FIELDS = """query($name: String!) {
  __type(name: $name) { fields { name description } }
}"""


async def descriptions(client: GatewayClient, type_name: str) -> dict[str, str]:
    result = await client.query(FIELDS, {"name": type_name})
    assert "errors" not in result, result
    fields: list[dict[str, Any]] = result["data"]["__type"]["fields"]
    return {f["name"]: f["description"] for f in fields}


async def test_demo_policy_is_in_the_served_descriptions(config: Config) -> None:
    demo_config = dataclasses.replace(config, policy=DEMO)
    async with gateway_client(demo_config, token("tax_officer", agency="nts")) as client:
        resident = await descriptions(client, "Resident")
        query = await descriptions(client, "Query")
        insurance = await descriptions(client, "HealthInsurance")
    assert resident["taxes"] == (
        "Income tax per year (nts agency), oldest first; "
        "only the given years when years is set.\n\n"
        "Access: citizen for SELF; welfare_officer for WELFARE_ELIGIBILITY (consent), "
        "CIVIL_PETITION (consent); tax_officer for TAX_ADMINISTRATION; "
        "health_insurance_officer for HEALTH_INSURANCE; "
        "pension_officer for PENSION_ADMINISTRATION."
    )
    assert resident["militaryService"].endswith(
        "\n\nAccess: citizen for SELF; military_officer for MILITARY_ADMINISTRATION."
    )
    assert resident["rrn"].endswith(
        "\n\nAccess: every caller who reads a resident; shown whole to citizen for SELF; "
        "tax_officer for TAX_ADMINISTRATION; health_insurance_officer for HEALTH_INSURANCE; "
        "pension_officer for PENSION_ADMINISTRATION; military_officer for "
        "MILITARY_ADMINISTRATION, masked to everyone else."
    )
    assert insurance["enrolledOn"].endswith(
        "\n\nAccess: citizen for SELF; welfare_officer for CIVIL_PETITION; "
        "health_insurance_officer for HEALTH_INSURANCE."
    )
    assert query["agencies"].endswith("\n\nAccess: roles analyst, operator.")
    assert query["resident"].startswith("One resident by RRN")
    assert query["resident"].endswith(
        "\n\nAccess: roles welfare_officer, tax_officer, health_insurance_officer, "
        "pension_officer, military_officer."
    )


async def test_another_policy_file_gives_other_lines(client: GatewayClient) -> None:
    """The session's gateway runs tests/allow_all.toml: the same fields, its own lines."""
    resident = await descriptions(client, "Resident")
    assert resident["militaryService"].endswith(
        "\n\nAccess: tester for WELFARE_ELIGIBILITY, TAX_ADMINISTRATION, HEALTH_INSURANCE, "
        "PENSION_ADMINISTRATION, MILITARY_ADMINISTRATION, CIVIL_PETITION."
    )
    query = await descriptions(client, "Query")
    assert query["agencies"].endswith("\n\nAccess: roles tester.")


def test_fields_nobody_may_read_say_so_and_lines_are_not_repeated() -> None:
    schema = build_schema()
    raw = {"roles": {"clerk": {"operations": ["Query.resident"], "views": {
        "CIVIL_PETITION": {"fields": ["Resident.name"]}}}}}  # fmt: skip
    policy = policy_module.parse(
        raw, schema_fields(schema), PURPOSES, resident_types=resident_types(schema)
    )
    describe_access(schema, policy)
    describe_access(schema, policy)  # start-up twice on one schema: one line, not two
    resident = schema._schema.type_map["Resident"]
    query = schema._schema.type_map["Query"]
    fields = resident.fields  # type: ignore[attr-defined]
    assert fields["name"].description.endswith("\n\nAccess: clerk for CIVIL_PETITION.")
    assert fields["name"].description.count("Access:") == 1
    assert fields["pension"].description.endswith("\n\nAccess: no role (FORBIDDEN to everyone).")
    assert query.fields["me"].description.endswith("\n\nAccess: no role.")  # type: ignore[attr-defined]
    # Service types (not resident data) are not the policy's to describe.
    status = schema._schema.type_map["AgencyStatus"]
    assert "Access:" not in status.fields["code"].description  # type: ignore[attr-defined]


def test_demo_policy_file_is_the_only_source() -> None:
    """Lines follow the file: a role's grant appears once per view it is granted in."""
    schema = build_schema()
    policy = policy_module.load(
        DEMO_POLICY,
        schema_fields(schema),
        PURPOSES,
        resident_types=resident_types(schema),
        consentable=agency_fields(schema),
    )
    for role in policy.roles.values():
        for view, grant in role.views.items():
            for coordinate in grant.fields:
                if coordinate == "Resident.rrn":
                    continue
                line = policy.access_line(coordinate)
                assert f"{role.name} for " in line
                assert view in line.split(f"{role.name} for ", 1)[1].split(";")[0]
