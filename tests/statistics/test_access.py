"""Who may ask for statistics, what an analyst can read (nothing personal), how statistics are
audited (once per query, in no citizen's access log), what callers are told about their own
permissions, and the errors statistics answer with."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from adapters.aggregates import CATEGORIES, DIMENSIONS, AggregateQuery, Counts
from adapters.memory import InMemoryAdapter
from gateway import policy as policy_module
from gateway.audit import verify
from gateway.graphql_schema import PURPOSES, build_schema, resident_types, schema_fields
from gateway.runtime import DEMO_POLICY
from tests.access.conftest import KEYS, demo_gateway, fetch, scratch_store
from tests.conftest import GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN
from tests.statistics.conftest import ANALYST, STATISTICS, statistics

POLICY = tomllib.loads(DEMO_POLICY.read_text())
RRN_SHAPED = re.compile(r"\d{6}-?\d{7}")
PERSONAL = {
    "resident": "query($r: String!, $p: Purpose!) { resident(rrn: $r, purpose: $p) { name } }",
    "residents": "query($r: String!, $p: Purpose!) { residents(rrns: [$r], purpose: $p) { name } }",
}
OTHERS = {
    "citizen": token("citizen", rrn=HEAD_RRN),
    "welfare_officer": token("welfare_officer", agency="welfare"),
    "tax_officer": token("tax_officer", agency="nts"),
    "health_insurance_officer": token("health_insurance_officer", agency="nhis"),
    "pension_officer": token("pension_officer", agency="nps"),
    "military_officer": token("military_officer", agency="mma"),
    "operator": token("operator", agency="gateway"),
    "agency_system": token("agency_system", agency="nts"),
}


def test_only_the_analyst_role_is_granted_statistics() -> None:
    granted = [n for n, r in POLICY["roles"].items() if "Query.statistics" in r["operations"]]
    assert granted == ["analyst"]
    assert set(OTHERS) | {"analyst"} == set(POLICY["roles"])


@pytest.mark.parametrize("role", sorted(OTHERS))
async def test_every_other_role_is_forbidden_statistics(analyst: GatewayClient, role: str) -> None:
    body = await analyst.as_(OTHERS[role]).query(
        STATISTICS, {"measure": "RESIDENTS", "by": ["SEX"]}
    )
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["statistics"]


async def test_an_unknown_role_is_forbidden(analyst: GatewayClient) -> None:
    response = await analyst.as_(token("statistician", agency="statistics")).post(
        {"query": STATISTICS, "variables": {"measure": "RESIDENTS", "by": []}}
    )
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("purpose", PURPOSES)
async def test_an_analyst_reads_nothing_personal(analyst: GatewayClient, purpose: str) -> None:
    for field, template in PERSONAL.items():
        body = await analyst.query(template, {"r": HEAD_RRN, "p": purpose})
        assert body["data"] is None or body["data"][field] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        assert "Kim" not in json.dumps(body)
    for document in (
        "{ me { name } }",
        "{ myAccessLog { edges { node { at } } } }",
        "{ myConsents { id } }",
        'mutation($p: Purpose!) { grantConsent(purpose: $p, agency: "nhis") { id } }',
    ):
        body = await analyst.query(document, {"p": purpose} if "$p" in document else None)
        assert not any((body["data"] or {}).values()), document
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], document


@pytest.mark.parametrize("measure", ["RESIDENTS", "HOUSEHOLDS", "INSURED", "PENSION",
                                     "MILITARY_SERVICE", "TAX_FILERS"])  # fmt: skip
async def test_statistics_carry_categories_and_counts_only(
    analyst: GatewayClient, measure: str
) -> None:
    dataset = {"RESIDENTS": "resident", "HOUSEHOLDS": "household", "INSURED": "insurance",
               "PENSION": "pension", "MILITARY_SERVICE": "military_service",
               "TAX_FILERS": "taxes"}[measure]  # fmt: skip
    for dimension in DIMENSIONS[dataset]:
        table = await statistics(analyst, measure, [dimension.upper()])
        assert [c["key"] for c in table["cells"]] == [[v] for v in CATEGORIES[dimension]]
        for cell in table["cells"]:
            assert set(cell) == {"key", "count", "suppressed"}
            assert cell["count"] is None or isinstance(cell["count"], int)
        assert not RRN_SHAPED.search(json.dumps(table))


# --- audit ----------------------------------------------------------------------------------


async def test_each_statistics_query_is_audited_once_with_what_was_asked(
    analyst: GatewayClient, store: ScratchDatabase
) -> None:
    response = await analyst.post(
        {
            "query": STATISTICS,
            "variables": {"measure": "RESIDENTS", "by": ["AGE_BAND"], "where": {"sex": "FEMALE"}},
        }
    )
    assert response.status_code == 200
    assert "errors" not in response.json()
    request_id = response.headers["X-Request-ID"]
    rows = await fetch(
        store.dsn, "select * from gateway.audit_log where request_id = $1", request_id
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["principal"], row["roles"], row["agency"]) == ("analyst-kim", "analyst",
                                                                "statistics")  # fmt: skip
    assert (row["purpose"], row["subject"]) == ("STATISTICS", "")
    assert list(row["disclosed"]) == ["Query.statistics"]
    assert list(row["denied"]) == []
    note = json.loads(row["note"])
    assert note["measure"] == "RESIDENTS"
    assert note["by"] == ["AGE_BAND"]
    assert note["where"] == {"SEX": "FEMALE"}
    assert note["suppressedCells"] == sum(
        c["suppressed"] for c in response.json()["data"]["statistics"]["cells"]
    )
    conn = await asyncpg.connect(store.dsn)
    try:
        verdict = await verify(conn, KEYS)
    finally:
        await conn.close()
    assert verdict.problems == []
    assert verdict.checked >= 1


async def test_statistics_are_in_no_citizens_access_log(
    analyst: GatewayClient, store: ScratchDatabase
) -> None:
    citizen = analyst.as_(token("citizen", rrn=HEAD_RRN))
    log = "{ myAccessLog(first: 100) { edges { node { purpose } } } }"
    before = (await citizen.query(log))["data"]["myAccessLog"]["edges"]
    for measure in ("RESIDENTS", "HOUSEHOLDS", "INSURED"):
        await statistics(analyst, measure, [])
    after = (await citizen.query(log))["data"]["myAccessLog"]["edges"]
    assert after == before
    assert all(e["node"]["purpose"] != "STATISTICS" for e in after)
    rows = await fetch(
        store.dsn, "select subject from gateway.audit_log where purpose = 'STATISTICS'"
    )
    assert len(rows) >= 3
    assert {row["subject"] for row in rows} == {""}  # about no resident


async def test_statistics_are_withheld_when_they_cannot_be_audited(
    admin_dsn: str, agency_db: ScratchDatabase, http_agencies: dict[str, str]
) -> None:
    async with (
        scratch_store(admin_dsn) as store,
        demo_gateway(agency_db, http_agencies, store) as gateway,
    ):
        await fetch(store.dsn, "update gateway.audit_head set mac = 'forged'")
        body = await gateway.as_(ANALYST).query(STATISTICS, {"measure": "RESIDENTS", "by": []})
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["AUDIT_UNAVAILABLE"]


# --- myPermissions --------------------------------------------------------------------------

PERMISSIONS = """query P($purpose: Purpose!) {
  myPermissions(purpose: $purpose) {
    purpose allowed operations readable consentRequired rrnMasking
  }
}"""


async def permissions(client: GatewayClient, bearer: str, purpose: str) -> dict[str, Any]:
    body = await client.as_(bearer).query(PERMISSIONS, {"purpose": purpose})
    assert "errors" not in body, body
    answer: dict[str, Any] = body["data"]["myPermissions"]
    return answer


@pytest.mark.parametrize("purpose", PURPOSES)
async def test_the_analyst_is_told_it_may_read_no_resident(
    analyst: GatewayClient, purpose: str
) -> None:
    answer = await permissions(analyst, ANALYST, purpose)
    assert answer == {
        "purpose": purpose,
        "allowed": False,
        "operations": ["Query.agencies", "Query.myPermissions", "Query.statistics"],
        "readable": [],
        "consentRequired": [],
        "rrnMasking": "HIDDEN",
    }


async def test_an_official_is_told_exactly_what_the_lookup_then_allows(
    analyst: GatewayClient,
) -> None:
    welfare = OTHERS["welfare_officer"]
    answer = await permissions(analyst, welfare, "WELFARE_ELIGIBILITY")
    assert answer["allowed"] is True
    assert answer["consentRequired"] == ["Resident.pension", "Resident.taxes"]
    assert answer["rrnMasking"] == "BIRTH_DATE_AND_DIGIT"
    assert "Resident.militaryService" not in answer["readable"]
    assert {"Resident.rrn", "Resident.name", "Address.region", "TaxRecord.reportedIncome"} <= (
        set(answer["readable"])
    )
    # What it says is what a lookup does: a readable field is served, another is FORBIDDEN.
    body = await analyst.as_(welfare).query(
        "query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) "
        "{ rrn name militaryService { status } } }",
        {"r": HEAD_RRN},
    )
    assert body["data"]["resident"]["name"] == "Kim Min-jun"
    assert re.fullmatch(r"940812-1\*{6}", body["data"]["resident"]["rrn"])
    assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
        (["resident", "militaryService"], "FORBIDDEN")
    ]
    tax = await permissions(analyst, OTHERS["tax_officer"], "TAX_ADMINISTRATION")
    assert (tax["rrnMasking"], tax["consentRequired"]) == ("WHOLE", [])
    refused = await permissions(analyst, welfare, "MILITARY_ADMINISTRATION")
    assert (refused["allowed"], refused["readable"]) == (False, [])


async def test_permissions_follow_the_loaded_policy(analyst: GatewayClient) -> None:
    """Generated from the policy the gateway runs with, not written down twice."""
    schema = build_schema()
    raw = {
        "roles": {
            "analyst": {
                "description": "d",
                "operations": ["Query.myPermissions"],
                "agencies": ["statistics"],
                "views": {"HEALTH_INSURANCE": {"fields": ["Resident.birthDate"]}},
            }
        }
    }
    policy = policy_module.parse(
        raw, schema_fields(schema), PURPOSES, resident_types=resident_types(schema)
    )
    runtime = analyst.app.state.runtime
    saved, runtime.policy = runtime.policy, policy
    try:
        answer = await permissions(analyst, ANALYST, "HEALTH_INSURANCE")
    finally:
        runtime.policy = saved
    assert answer["allowed"] is True
    assert answer["operations"] == ["Query.myPermissions"]
    assert answer["readable"] == ["Resident.birthDate", "Resident.rrn"]
    assert answer["rrnMasking"] == "BIRTH_DATE"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "said"),
    [
        ({"measure": "INSURED", "by": ["REGION"]}, "INSURED cannot be grouped by REGION"),
        ({"measure": "RESIDENTS", "by": ["SEX", "SEX"]}, "twice"),
        ({"measure": "RESIDENTS", "by": ["SEX", "REGION", "STATUS"]}, "at most 2"),
        ({"measure": "RESIDENTS", "by": ["SEX", "REGION"], "where": {"status": "ACTIVE"}},
         "at most 2"),
        ({"measure": "RESIDENTS", "by": [], "where": {"region": "Atlantis"}},
         "not a REGION key"),
        ({"measure": "RESIDENTS", "by": ["SEX"], "where": {"sex": "MALE"}}, "both"),
        ({"measure": "PENSION", "by": [], "where": {"region": "Seoul"}}, "cannot be filtered"),
        ({"measure": "RESIDENTS", "by": [], "where": {"taxYear": 2024}}, "TAX_FILERS only"),
        ({"measure": "TAX_FILERS", "by": [], "where": {"taxYear": 99999}}, "between"),
    ],
)  # fmt: skip
async def test_bad_arguments_are_bad_requests(
    analyst: GatewayClient, variables: dict[str, Any], said: str
) -> None:
    body = await analyst.query(STATISTICS, variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert said in error["message"]


async def test_an_unknown_measure_is_a_bad_request(analyst: GatewayClient) -> None:
    response = await analyst.post(
        {"query": STATISTICS, "variables": {"measure": "INCOMES", "by": []}}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


class Misreporting(InMemoryAdapter):
    async def aggregate(self, query: AggregateQuery) -> Counts:
        return {("Atlantis",): 12}


@pytest.fixture
async def swapped(analyst: GatewayClient) -> AsyncIterator[Any]:
    """Put another adapter behind nhis for one test."""
    agency = analyst.app.state.agencies.by_code["nhis"]
    saved = agency.adapter

    def swap(adapter: Any) -> None:
        agency.adapter = adapter

    yield swap
    agency.adapter = saved
    agency.breaker.succeeded()


async def test_an_adapter_without_aggregate_answers_agency_unavailable(
    analyst: GatewayClient, swapped: Any
) -> None:
    swapped(InMemoryAdapter("nhis", records={"insurance": {}}))
    body = await analyst.query(STATISTICS, {"measure": "INSURED", "by": ["INSURED_TYPE"]})
    [error] = body["errors"]
    assert body["data"] is None
    assert error["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nhis"}
    assert "does not compute statistics" in error["message"]


async def test_an_agency_naming_an_unknown_category_is_refused(
    analyst: GatewayClient, swapped: Any
) -> None:
    swapped(Misreporting("nhis", records={"insurance": {}}))
    body = await analyst.query(STATISTICS, {"measure": "INSURED", "by": ["INSURED_TYPE"]})
    assert body["errors"][0]["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "nhis"}
    assert "Atlantis" not in json.dumps(body)


async def test_a_failing_http_agency_answers_agency_unavailable(
    analyst: GatewayClient, http_agencies: dict[str, str]
) -> None:
    from gateway.demo.processes import demo_agency_headers

    url = http_agencies["mma"]
    async with httpx.AsyncClient(headers=demo_agency_headers()) as http:
        await http.post(f"{url}/fault", json={"fault": "error"})
        try:
            body = await analyst.query(STATISTICS, {"measure": "MILITARY_SERVICE", "by": []})
        finally:
            await http.post(f"{url}/fault", json={"fault": "ok"})
    assert body["errors"][0]["extensions"] == {"code": "AGENCY_UNAVAILABLE", "agency": "mma"}
    analyst.app.state.agencies.by_code["mma"].breaker.succeeded()
