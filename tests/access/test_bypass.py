"""Ways around field-level checks that must not work, and proof that denied fields are never
fetched from their agency (agency call counts; the test agencies run without a cache)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.access.conftest import error_codes
from tests.conftest import GatewayClient, token
from tests.data import HEAD_RRN, members

MEMBERS = [rrn for rrn, *_ in members()]
HEAD_NAME = "Kim Min-jun"


def welfare(demo: GatewayClient) -> GatewayClient:
    return demo.as_(token("welfare_officer", agency="welfare"))


def assert_no_military_data(body: Any) -> None:
    text = str(body)
    for value in ("COMPLETED", "ARMY", "2014-03-10", "2015-12-09"):
        assert value not in text, value


Path_ = tuple[str | int, ...]
BYPASSES: dict[str, tuple[str, list[Path_]]] = {
    "aliases": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name a: militaryService { status } b: militaryService { branch } } }""",
        [("resident", "a"), ("resident", "b")],
    ),
    "named-fragment": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) { ...R } }
           fragment R on Resident { name militaryService { ...M } }
           fragment M on MilitaryService { status branch enlistedOn }""",
        [("resident", "militaryService")],
    ),
    "inline-fragment": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name ... on Resident { militaryService { status } } } }""",
        [("resident", "militaryService")],
    ),
    "directives": (
        """query($rrn: String!, $yes: Boolean = true) {
             resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
               name militaryService @include(if: $yes) { status @skip(if: false) } } }""",
        [("resident", "militaryService")],
    ),
    "typename-only": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name militaryService { __typename } } }""",
        [("resident", "militaryService")],
    ),
    "household-head": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name household { head { militaryService { status } } } } }""",
        [("resident", "household", "head", "militaryService")],
    ),
    "household-members": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name household { members { militaryService { status } } } } }""",
        [("resident", "household", "members", i, "militaryService") for i in range(20)],
    ),
    "members-of-members": (
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name household { members { household { members { militaryService { status } } } } }
           } }""",
        [
            ("resident", "household", "members", i, "household", "members", j, "militaryService")
            for i in range(20)
            for j in range(20)
        ],
    ),
    "residents-batch": (
        """query($rrns: [String!]!) { residents(rrns: $rrns, purpose: WELFARE_ELIGIBILITY) {
             name militaryService { status } } }""",
        [("residents", i, "militaryService") for i in range(5)],
    ),
    "operation-name": (
        """query Allowed($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name } }
           query Sneaky($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name militaryService { status } } }""",
        [("resident", "militaryService")],
    ),
}


@pytest.mark.parametrize("case", list(BYPASSES))
async def test_military_data_stays_forbidden_to_welfare(demo: GatewayClient, case: str) -> None:
    query, paths = BYPASSES[case]
    mma_calls = demo.calls("mma")
    extra = {"operationName": "Sneaky"} if case == "operation-name" else {}
    body = await welfare(demo).query(query, {"rrn": HEAD_RRN, "rrns": MEMBERS[:5]}, **extra)
    assert error_codes(body) == dict.fromkeys(paths, "FORBIDDEN")
    for path in paths:
        value: Any = body["data"]
        for step in path:
            value = value[step]
        assert value is None, path
    assert_no_military_data(body)
    # What was allowed is still served beside the refusals.
    assert HEAD_NAME in str(body)
    # The military agency was never asked.
    assert demo.calls("mma") == mma_calls


async def test_the_control_military_officer_does_fetch_military_data(demo: GatewayClient) -> None:
    # Without this the "mma calls unchanged" checks above could pass for other reasons.
    mma_calls = demo.calls("mma")
    body = await demo.as_(token("military_officer", agency="mma")).query(
        """query($rrns: [String!]!) { residents(rrns: $rrns, purpose: MILITARY_ADMINISTRATION) {
             militaryService { status branch } } }""",
        {"rrns": MEMBERS},
    )
    assert "errors" not in body, body
    assert body["data"]["residents"][0]["militaryService"] == {
        "status": "COMPLETED",
        "branch": "ARMY",
    }
    assert demo.calls("mma") == mma_calls + 1


async def test_taxes_without_consent_are_not_fetched(demo: GatewayClient) -> None:
    nts, nps = demo.calls("nts"), demo.calls("nps")
    body = await welfare(demo).query(
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             name a: taxes { year } b: taxes(years: [2025]) { reportedIncome }
             household { members { taxes { year } pension { monthlyBenefit } } } } }""",
        {"rrn": HEAD_RRN},
    )
    codes = error_codes(body)
    assert codes[("resident", "a")] == "CONSENT_REQUIRED"
    assert codes[("resident", "b")] == "CONSENT_REQUIRED"
    assert set(codes.values()) == {"CONSENT_REQUIRED"}
    assert len(codes) == 2 + 2 * 20
    assert "41000000" not in str(body)
    assert (demo.calls("nts"), demo.calls("nps")) == (nts, nps)


async def test_a_purpose_the_role_lacks_is_refused_before_any_lookup(
    demo: GatewayClient,
) -> None:
    registry = demo.calls("registry")
    for who, purpose in (
        (token("welfare_officer", agency="welfare"), "MILITARY_ADMINISTRATION"),
        (token("analyst"), "WELFARE_ELIGIBILITY"),
        (token("operator"), "TAX_ADMINISTRATION"),
    ):
        body = await demo.as_(who).query(
            """query($rrn: String!, $p: Purpose!) {
                 resident(rrn: $rrn, purpose: $p) { __typename name } }""",
            {"rrn": HEAD_RRN, "p": purpose},
        )
        assert error_codes(body) == {("resident",): "FORBIDDEN"}
        assert body["data"] == {"resident": None}
    assert demo.calls("registry") == registry


async def test_batched_http_requests_are_no_way_around(demo: GatewayClient) -> None:
    mma_calls = demo.calls("mma")
    allowed = {
        "query": "query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) { name } }",
        "variables": {"r": HEAD_RRN},
    }
    sneaky = {
        "query": """query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) {
                      name militaryService { status } } }""",
        "variables": {"r": HEAD_RRN},
    }
    response = await welfare(demo).post([allowed, sneaky])
    assert_no_military_data(response.text)
    assert demo.calls("mma") == mma_calls
    if response.status_code == 400:  # batching is off: the whole batch is refused
        body = response.json()
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_REQUEST"]
        assert "data" not in body
        return
    assert response.status_code == 200, response.text
    first, second = response.json()
    assert first == {"data": {"resident": {"name": HEAD_NAME}}}
    assert error_codes(second) == {("resident", "militaryService"): "FORBIDDEN"}


async def test_get_requests_are_checked_like_posts(demo: GatewayClient) -> None:
    mma_calls = demo.calls("mma")
    query = """query($r: String!) { resident(rrn: $r, purpose: WELFARE_ELIGIBILITY) {
                 name militaryService { status } } }"""
    caller = welfare(demo)
    params = {"query": query, "variables": json.dumps({"r": HEAD_RRN})}
    response = await demo.http.get("/graphql", params=params, headers=caller.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert error_codes(body) == {("resident", "militaryService"): "FORBIDDEN"}
    assert body["data"]["resident"]["name"] == HEAD_NAME
    assert demo.calls("mma") == mma_calls


@pytest.mark.parametrize("role", ["welfare_officer", "analyst"])
async def test_introspection_shows_the_schema_and_no_resident(
    demo: GatewayClient, role: str
) -> None:
    # Each role with an agency its policy lets it claim (analysts are statistics staff).
    caller = demo.as_(token(role, agency={"welfare_officer": "welfare"}.get(role, "statistics")))
    registry = demo.calls("registry")
    body = await caller.query(
        """{ __schema { queryType { name } types { name } }
             __type(name: "Resident") { name fields { name type { name kind } } } }"""
    )
    assert "errors" not in body, body
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Resident", "MilitaryService", "TaxRecord"} <= names
    fields = {f["name"] for f in body["data"]["__type"]["fields"]}
    assert "militaryService" in fields  # the schema is public; the data is not
    text = str(body)
    assert HEAD_NAME not in text
    assert HEAD_RRN[:6] not in text
    assert demo.calls("registry") == registry


async def test_introspection_beside_a_lookup_changes_nothing(demo: GatewayClient) -> None:
    mma_calls = demo.calls("mma")
    body = await welfare(demo).query(
        """query($rrn: String!) {
             __type(name: "MilitaryService") { fields { name } }
             resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
               __typename name militaryService { __typename status } } }""",
        {"rrn": HEAD_RRN},
    )
    assert error_codes(body) == {("resident", "militaryService"): "FORBIDDEN"}
    assert body["data"]["resident"]["__typename"] == "Resident"
    assert body["data"]["resident"]["militaryService"] is None
    assert {f["name"] for f in body["data"]["__type"]["fields"]} >= {"status", "branch"}
    assert demo.calls("mma") == mma_calls
