"""What a citizen sees: their own record in full, their household as a register shows it, and
who looked at their data."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from gateway.rrn import mask
from tests.access.conftest import error_codes
from tests.conftest import GatewayClient, token
from tests.data import HEAD_RRN, members

PEOPLE = members()
MEMBERS = [rrn for rrn, *_ in PEOPLE]
HEAD_NAME = "Kim Min-jun"

ME_FULL = """{ me {
  rrn name birthDate sex status isForeignResident relationship
  address { region city street postalCode registeredOn }
  household { id size head { rrn name } }
  insurance { insuredType enrolledOn monthlyPremium dependents insuredBy }
  taxes { year reportedIncome taxAssessed taxPaid arrears }
  pension { subscriberType monthsContributed expectedMonthlyBenefit monthlyBenefit benefitSince }
  militaryService { status branch enlistedOn dischargedOn exemptionReason }
} }"""

HOUSEHOLD = """{ me { household { members {
  rrn name birthDate sex relationship status
  isForeignResident address { region } household { size } insurance { insuredType }
  taxes { year } pension { subscriberType } militaryService { status }
} } } }"""
REGISTER_FIELDS = {"rrn", "name", "birthDate", "sex", "relationship", "status"}
HIDDEN_FIELDS = [
    "isForeignResident", "address", "household", "insurance", "taxes", "pension",
    "militaryService",
]  # fmt: skip

LOG = """query($first: Int, $after: String) { myAccessLog(first: $first, after: $after) {
  edges { cursor node { at agency role purpose fields denied outcome } }
  pageInfo { hasNextPage endCursor }
} }"""


def citizen(demo: GatewayClient, rrn: str) -> GatewayClient:
    return demo.as_(token("citizen", rrn=rrn, sub=f"citizen-{rrn[-4:]}"))


async def look_up(
    demo: GatewayClient,
    rrn: str,
    selection: str,
    *,
    role: str = "welfare_officer",
    agency: str = "welfare",
    purpose: str = "WELFARE_ELIGIBILITY",
    sub: str = "officer-lee-7781",
) -> dict[str, Any]:
    officer = demo.as_(token(role, agency=agency, sub=sub))
    return await officer.query(
        "query($rrn: String!, $p: Purpose!) { resident(rrn: $rrn, purpose: $p) { SEL } }".replace(
            "SEL", selection
        ),
        {"rrn": rrn, "p": purpose},
    )


async def log_of(demo: GatewayClient, rrn: str, **variables: Any) -> dict[str, Any]:
    body = await citizen(demo, rrn).query(LOG, variables)
    assert "errors" not in body, body
    log: dict[str, Any] = body["data"]["myAccessLog"]
    return log


# --- me -----------------------------------------------------------------------------------


async def test_me_is_the_whole_own_record_with_the_full_rrn(demo: GatewayClient) -> None:
    body = await citizen(demo, HEAD_RRN).query(ME_FULL)
    assert "errors" not in body, body
    me = body["data"]["me"]
    assert me["rrn"] == HEAD_RRN
    assert me["name"] == HEAD_NAME
    assert me["relationship"] == "HEAD"
    assert me["address"]["street"] == "12 Teheran-ro"
    assert me["household"]["size"] == 20
    assert me["household"]["head"] == {"rrn": HEAD_RRN, "name": HEAD_NAME}
    assert me["insurance"]["monthlyPremium"] == 152000
    assert [t["year"] for t in me["taxes"]] == [2024, 2025]
    assert me["pension"]["monthsContributed"] == 96
    assert me["militaryService"]["branch"] == "ARMY"


async def test_household_members_show_only_what_a_register_shows(demo: GatewayClient) -> None:
    nts = demo.app.state.agencies.by_code["nts"].stats
    keys = nts.keys
    body = await citizen(demo, HEAD_RRN).query(HOUSEHOLD)
    people = body["data"]["me"]["household"]["members"]
    assert len(people) == 20
    own, others = people[0], people[1:]
    assert own["rrn"] == HEAD_RRN
    assert [t["year"] for t in own["taxes"]] == [2024, 2025]
    assert own["militaryService"] == {"status": "COMPLETED"}
    expected = {
        ("me", "household", "members", i, field): "FORBIDDEN"
        for i in range(1, 20)
        for field in HIDDEN_FIELDS
    }
    assert error_codes(body) == expected
    for (rrn, name, birth, sex, relationship), person in zip(PEOPLE[1:], others, strict=True):
        # The register view grants birthDate and sex, not isForeignResident: no 7th digit.
        assert person["rrn"] == mask(rrn, seventh_digit=False)
        assert person["name"] == name
        assert person["birthDate"] == birth.isoformat()
        assert person["sex"] == sex
        assert person["relationship"] == relationship
        assert person["status"] == "ACTIVE"
        assert all(person[field] is None for field in HIDDEN_FIELDS)
    # Only the citizen's own taxes were fetched.
    assert nts.keys - keys == 1


async def test_a_member_sees_the_head_as_a_register_shows_him(demo: GatewayClient) -> None:
    body = await citizen(demo, MEMBERS[5]).query(
        "{ me { rrn household { head { rrn name taxes { year } } } } }"
    )
    assert body["data"]["me"]["rrn"] == MEMBERS[5]
    head = body["data"]["me"]["household"]["head"]
    assert head["rrn"] == mask(HEAD_RRN, seventh_digit=False)
    assert head["name"] == HEAD_NAME
    assert head["taxes"] is None
    assert error_codes(body) == {("me", "household", "head", "taxes"): "FORBIDDEN"}
    assert HEAD_RRN not in str(body)


@pytest.mark.parametrize(
    "query",
    [
        f'{{ resident(rrn: "{MEMBERS[1]}", purpose: CIVIL_PETITION) {{ name }} }}',
        f'{{ resident(rrn: "{HEAD_RRN}", purpose: WELFARE_ELIGIBILITY) {{ name }} }}',
        f'{{ residents(rrns: ["{MEMBERS[1]}"], purpose: CIVIL_PETITION) {{ name }} }}',
    ],
)
async def test_a_citizen_may_not_look_up_residents(demo: GatewayClient, query: str) -> None:
    registry = demo.calls("registry")
    body = await citizen(demo, HEAD_RRN).query(query)
    root = "residents" if "residents" in query else "resident"
    assert error_codes(body) == {(root,): "FORBIDDEN"}
    assert body["data"] is None or body["data"][root] is None
    assert "Kim" not in str(body)
    assert demo.calls("registry") == registry


@pytest.mark.parametrize(
    "query", ["{ me { name } }", "{ myConsents { id } }", "{ myAccessLog { edges { cursor } } }"]
)
async def test_without_an_rrn_claim_there_is_no_own_record(demo: GatewayClient, query: str) -> None:
    body = await demo.as_(token("citizen")).query(query)
    root = query.split()[1]
    assert error_codes(body) == {(root,): "FORBIDDEN"}
    assert body["data"] is None or body["data"][root] is None


# --- myAccessLog -------------------------------------------------------------------------


async def new_entries(demo: GatewayClient, rrn: str, before: list[str]) -> list[dict[str, Any]]:
    """Entries added since ``before`` (the cursors then); they must all be on top."""
    edges = (await log_of(demo, rrn, first=100))["edges"]
    cursors = [e["cursor"] for e in edges]
    fresh = len(cursors) - len(before)
    assert cursors[fresh:] == before, "older entries changed or the new ones are not on top"
    return [e["node"] for e in edges[:fresh]]


async def cursors_of(demo: GatewayClient, rrn: str) -> list[str]:
    # Other tests in this module can add entries too (a head reading his household logs a
    # SELF_HOUSEHOLD entry for every member), so tests compare with what was there before.
    return [e["cursor"] for e in (await log_of(demo, rrn, first=100))["edges"]]


async def test_an_officials_lookup_shows_in_the_log_at_once(demo: GatewayClient) -> None:
    rrn = MEMBERS[7]
    before = await cursors_of(demo, rrn)
    looked = await look_up(demo, rrn, "name militaryService { status }", sub="officer-lee-7781")
    answered = time.perf_counter()
    assert looked["data"]["resident"]["name"] == PEOPLE[7][1]
    while not (fresh := await new_entries(demo, rrn, before)):
        assert time.perf_counter() - answered < 1, "not in the access log within a second"
        await asyncio.sleep(0.05)
    assert time.perf_counter() - answered < 1
    assert len(fresh) == 1
    entry = fresh[0]
    assert entry["agency"] == "welfare"
    assert entry["role"] == "welfare_officer"
    assert entry["purpose"] == "WELFARE_ELIGIBILITY"
    assert entry["fields"] == ["Resident.name"]
    assert entry["denied"] == ["Resident.militaryService"]
    assert entry["outcome"] == "PARTIAL"
    # Never the official's personal id, wherever it might hide.
    everything = str(await citizen(demo, rrn).query(LOG, {"first": 100}))
    assert "officer-lee" not in everything
    assert "7781" not in everything


async def test_outcomes_and_newest_first(demo: GatewayClient) -> None:
    rrn = MEMBERS[8]
    before = await cursors_of(demo, rrn)
    neighbour = await cursors_of(demo, MEMBERS[9])
    await look_up(demo, rrn, "name birthDate")  # GRANTED
    await look_up(demo, rrn, "militaryService { status }")  # DENIED
    await look_up(
        demo,
        rrn,
        "name insurance { insuredType } taxes { year }",
        role="tax_officer",
        agency="nts",
        purpose="TAX_ADMINISTRATION",
    )  # GRANTED, another agency
    await citizen(demo, rrn).query("{ me { name } }")  # the citizen's own look
    entries = await new_entries(demo, rrn, before)
    assert [(e["purpose"], e["outcome"], e["agency"], e["role"]) for e in entries] == [
        ("SELF", "GRANTED", None, "citizen"),
        ("TAX_ADMINISTRATION", "GRANTED", "nts", "tax_officer"),
        ("WELFARE_ELIGIBILITY", "DENIED", "welfare", "welfare_officer"),
        ("WELFARE_ELIGIBILITY", "GRANTED", "welfare", "welfare_officer"),
    ]
    assert entries[1]["fields"] == [
        "HealthInsurance.insuredType",
        "Resident.insurance",
        "Resident.name",
        "Resident.taxes",
        "TaxRecord.year",
    ]
    assert (entries[2]["fields"], entries[2]["denied"]) == ([], ["Resident.militaryService"])
    assert (entries[3]["fields"], entries[3]["denied"]) == (
        ["Resident.birthDate", "Resident.name"],
        [],
    )
    times = [e["at"] for e in entries]
    assert times == sorted(times, reverse=True)
    # Another citizen's log got none of it.
    assert await cursors_of(demo, MEMBERS[9]) == neighbour


async def test_pages_are_disjoint_and_say_whether_more_exist(demo: GatewayClient) -> None:
    rrn = MEMBERS[10]
    before = await cursors_of(demo, rrn)
    purposes = ["WELFARE_ELIGIBILITY", "CIVIL_PETITION"] * 2 + ["WELFARE_ELIGIBILITY"]
    for purpose in purposes:
        await look_up(demo, rrn, "name", purpose=purpose)
    fresh = await new_entries(demo, rrn, before)
    assert [e["purpose"] for e in fresh] == purposes[::-1]
    whole = await log_of(demo, rrn, first=100)
    total = len(whole["edges"])
    assert total >= 5
    assert whole["pageInfo"]["hasNextPage"] is False

    pages, after = [], None
    while True:
        page = await log_of(demo, rrn, first=2, after=after)
        pages.append(page)
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
        assert len(pages) <= total
    sizes = [len(p["edges"]) for p in pages]
    assert sizes == [2] * (total // 2) + ([1] if total % 2 else [])
    cursors = [e["cursor"] for p in pages for e in p["edges"]]
    assert len(set(cursors)) == total  # disjoint
    assert cursors == [e["cursor"] for e in whole["edges"]]  # and together, the whole log
    assert [p["pageInfo"]["hasNextPage"] for p in pages] == [True] * (len(pages) - 1) + [False]
    # Past the last entry: an empty page.
    last = await log_of(demo, rrn, first=2, after=cursors[-1])
    assert last == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("%%%", id="not-base64"),
        pytest.param("bm90IGEgY3Vyc29y", id="base64-of-junk"),
        pytest.param(b64("page:3"), id="other-kind"),
        pytest.param(b64("seq:three"), id="not-a-number"),
        pytest.param(b64("seq:" + "9" * 25), id="number-too-large"),
    ],
)
async def test_a_bad_cursor_is_bad_request(demo: GatewayClient, cursor: str) -> None:
    body = await citizen(demo, HEAD_RRN).query(LOG, {"first": 5, "after": cursor})
    assert error_codes(body) == {("myAccessLog",): "BAD_REQUEST"}
    assert body["data"] is None


@pytest.mark.parametrize("first", [0, -1, 101, 1000])
async def test_page_size_outside_1_to_100_is_bad_request(demo: GatewayClient, first: int) -> None:
    body = await citizen(demo, HEAD_RRN).query(LOG, {"first": first})
    assert error_codes(body) == {("myAccessLog",): "BAD_REQUEST"}


async def test_page_size_at_the_limits_is_accepted(demo: GatewayClient) -> None:
    for first in (1, 100):
        body = await citizen(demo, HEAD_RRN).query(LOG, {"first": first})
        assert "errors" not in body, body
