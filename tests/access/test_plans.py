"""Operation plans (gateway.plans) on their own: what a plan decides, what it is keyed by,
and what it selects for prefetch. No database: the schema and policies in memory."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from graphql import parse

from gateway import policy as policy_module
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.plans import Action, OperationPlan, Planner, planner
from gateway.policy import Policy

SCHEMA = build_schema()
FIELDS = schema_fields(SCHEMA)
TYPES = resident_types(SCHEMA)

POLICY = """
[roles.clerk]
description = "c"
operations = ["Query.resident"]
agencies = ["welfare"]
[roles.clerk.views.WELFARE_ELIGIBILITY]
fields = ["Resident.name", "Resident.insurance", "Resident.taxes", "Resident.household",
          "Household.members", "HealthInsurance.insuredType", "TaxRecord.year"]
consent = ["Resident.taxes"]

[roles.auditor]
description = "a"
operations = ["Query.resident", "Query.residents"]
agencies = ["welfare"]
[roles.auditor.views.TAX_ADMINISTRATION]
fields = ["Resident.*"]
unmasked_rrn = true
"""


def policy(text: str = POLICY) -> Policy:
    return policy_module.parse(tomllib.loads(text), FIELDS, PURPOSES, resident_types=TYPES)


def plan(
    p: Planner,
    query: str,
    variables: dict[str, Any] | None = None,
    roles: tuple[str, ...] = ("clerk",),
) -> OperationPlan:
    found = p.operation(SCHEMA._schema, query, parse(query), None, variables, roles, None, ())
    assert found is not None
    return found[1]


def test_a_view_plan_holds_the_policy_decisions() -> None:
    view = planner(policy()).view(("clerk",), "WELFARE_ELIGIBILITY")
    assert view.action("Resident.name") is Action.GRANT
    assert view.action("Resident.taxes") is Action.CONSENT
    assert view.action("Resident.pension") is Action.DENY
    assert view.action("Pension.subscriberType") is Action.DENY
    # Prefetch: granted without consent, agency-backed.
    assert view.prefetch == {"insurance", "household"}
    assert not view.unmasked_rrn
    assert not view.shows_birth_date


def test_one_role_plan_never_serves_another() -> None:
    p = planner(policy())
    query = (
        '{ resident(rrn: "1", purpose: TAX_ADMINISTRATION) { name pension { subscriberType } } }'
    )
    clerk = plan(p, query, roles=("clerk",))
    auditor = plan(p, query, roles=("auditor",))
    assert clerk is not auditor
    assert not clerk.views["TAX_ADMINISTRATION"].granted
    assert clerk.operations["Query.residents"] is False
    assert auditor.views["TAX_ADMINISTRATION"].action("Resident.pension") is Action.GRANT
    assert auditor.operations["Query.residents"] is True
    both = plan(p, query, roles=("clerk", "auditor"))
    assert both is not auditor
    assert both is not plan(p, query, roles=("auditor", "clerk"))
    assert plan(p, query, roles=("auditor",)) is auditor  # the same input: the same plan


def test_the_purpose_is_read_from_literals_variables_and_defaults() -> None:
    p = planner(policy())
    by_variable = "query($p: Purpose!) { resident(rrn: \"1\", purpose: $p) { name } }"
    welfare = plan(p, by_variable, {"p": "WELFARE_ELIGIBILITY"})
    tax = plan(p, by_variable, {"p": "TAX_ADMINISTRATION"})
    assert welfare is not tax
    assert set(welfare.views) == {"WELFARE_ELIGIBILITY"}
    assert set(tax.views) == {
        "TAX_ADMINISTRATION"
    }
    by_default = (
        "query($p: Purpose = CIVIL_PETITION) { resident(rrn: \"1\", purpose: $p) { name } }"
    )
    assert set(plan(p, by_default, {}).views) == {"CIVIL_PETITION"}
    in_fragment = (
        "{ ...F } fragment F on Query { a: resident(rrn: \"1\", purpose: HEALTH_INSURANCE) "
        "{ name } b: resident(rrn: \"2\", purpose: WELFARE_ELIGIBILITY) { name } }"
    )
    assert set(plan(p, in_fragment).views) == {"HEALTH_INSURANCE", "WELFARE_ELIGIBILITY"}


def test_a_new_policy_starts_with_no_plans_and_the_cache_is_bounded() -> None:
    first, second = policy(), policy()
    assert planner(first) is planner(first)
    assert planner(second) is not planner(first)
    small = Planner(first, size=2)
    queries = [
        f'{{ a{i}: resident(rrn: "1", purpose: CIVIL_PETITION) {{ name }} }}' for i in range(3)
    ]
    made = [plan(small, q) for q in queries]
    assert len(small._operations) == 2
    assert plan(small, queries[2]) is made[2]
    assert plan(small, queries[0]) is not made[0]  # evicted, planned again


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "{ r: resident(rrn: \"1\", purpose: CIVIL_PETITION) { insurance { insuredType } "
            "taxes { year } household { members { pension { subscriberType } } } } }",
            {("r",): {"insurance", "taxes", "household"},
             ("r", "household", "members"): {"pension"}},
        ),
        (  # directives and fragments that might not apply make a field conditional
            "query($no: Boolean!) { resident(rrn: \"1\", purpose: CIVIL_PETITION) { "
            "insurance @skip(if: $no) { insuredType } ... @include(if: $no) { taxes { year } } "
            "...P household @include(if: $no) { members { militaryService { status } } } } } "
            "fragment P on Resident { pension { subscriberType } }",
            {("resident",): {"pension"}},
        ),
        (
            "{ residents(rrns: [\"1\"], purpose: CIVIL_PETITION) { name address { city } } "
            "me { militaryService { status } } }",
            {("residents",): {"resident"}, ("me",): {"military_service"}},
        ),
    ],
)
def test_prefetch_selects_only_what_every_execution_reads(
    query: str, expected: dict[tuple[str, ...], set[str]]
) -> None:
    assert plan(planner(policy()), query).selected == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (  # agency objects of plain fields, registry fields: known; a nested Resident: not
            '{ r: resident(rrn: "1", purpose: CIVIL_PETITION) { name rrn address { city } '
            "insurance { insuredType } taxes(years: [2024]) { year } "
            "household { size members { pension { subscriberType } } } } }",
            {("r",): None, ("r", "household", "members"): frozenset({"pension"})},
        ),
        (  # conditional selections count: they may load
            'query($no: Boolean!) { resident(rrn: "1", purpose: CIVIL_PETITION) { '
            "insurance @skip(if: $no) { insuredType } ...P household { id size } } } "
            "fragment P on Resident { militaryService { status } }",
            {("resident",): frozenset({"insurance", "military_service", "household"})},
        ),
        (
            '{ residents(rrns: ["1"], purpose: CIVIL_PETITION) { name } '
            "me { household { head { name } } } }",
            {("residents",): frozenset(), ("me",): None, ("me", "household", "head"): frozenset()},
        ),
    ],
)
def test_a_plan_knows_what_may_load_below_each_resident(
    query: str, expected: dict[tuple[str, ...], frozenset[str] | None]
) -> None:
    assert plan(planner(policy()), query).loads == expected
