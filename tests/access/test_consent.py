"""Consent: a citizen lets one agency read their tax and pension data for one purpose.

Each test uses its own member of the 20-person household as the citizen, so consents granted
in one test never open data in another (they share this module's store).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.access.conftest import KEYS, error_codes, fetch
from tests.conftest import GatewayClient, ScratchDatabase, token
from tests.data import HEAD_RRN, members

MEMBERS = [rrn for rrn, *_ in members()]

GRANT = """mutation($purpose: Purpose!, $agency: String!, $days: Int!) {
  grantConsent(purpose: $purpose, agency: $agency, days: $days) {
    id purpose agency grantedAt expiresAt revokedAt active
  }
}"""
REVOKE = "mutation($id: ID!) { revokeConsent(id: $id) { id revokedAt active } }"
MY_CONSENTS = "{ myConsents { id purpose agency grantedAt expiresAt revokedAt active } }"
READ = """query($rrn: String!, $purpose: Purpose!) {
  resident(rrn: $rrn, purpose: $purpose) {
    name
    taxes { year reportedIncome }
    pension { subscriberType }
  }
}"""


def citizen(demo: GatewayClient, rrn: str) -> GatewayClient:
    return demo.as_(token("citizen", rrn=rrn, sub=f"citizen-{rrn[-4:]}"))


def officer(demo: GatewayClient, agency: str = "welfare") -> GatewayClient:
    return demo.as_(token("welfare_officer", agency=agency, sub=f"officer-at-{agency}"))


async def grant(
    demo: GatewayClient,
    rrn: str,
    purpose: str = "WELFARE_ELIGIBILITY",
    agency: str = "welfare",
    days: int = 30,
) -> dict[str, Any]:
    body = await citizen(demo, rrn).query(
        GRANT, {"purpose": purpose, "agency": agency, "days": days}
    )
    assert "errors" not in body, body
    consent: dict[str, Any] = body["data"]["grantConsent"]
    return consent


async def read(
    demo: GatewayClient, rrn: str, agency: str = "welfare", purpose: str = "WELFARE_ELIGIBILITY"
) -> dict[str, Any]:
    return await officer(demo, agency).query(READ, {"rrn": rrn, "purpose": purpose})


def assert_consent_required(body: dict[str, Any]) -> None:
    assert error_codes(body) == {
        ("resident", "taxes"): "CONSENT_REQUIRED",
        ("resident", "pension"): "CONSENT_REQUIRED",
    }
    resident = body["data"]["resident"]
    assert resident["taxes"] is None
    assert resident["pension"] is None
    assert resident["name"]  # the rest is served


def assert_readable(body: dict[str, Any]) -> None:
    assert "errors" not in body, body
    resident = body["data"]["resident"]
    assert [t["year"] for t in resident["taxes"]] == [2024, 2025]
    assert resident["taxes"][0]["reportedIncome"] == 41_000_000
    assert resident["pension"] == {"subscriberType": "WORKPLACE"}


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


async def test_consent_opens_taxes_and_pension_to_that_agency_only(
    demo: GatewayClient,
) -> None:
    rrn = MEMBERS[1]
    nts, nps = demo.calls("nts"), demo.calls("nps")
    assert_consent_required(await read(demo, rrn))
    # Refused for want of consent: neither agency was asked.
    assert (demo.calls("nts"), demo.calls("nps")) == (nts, nps)

    consent = await grant(demo, rrn, days=30)
    assert consent["purpose"] == "WELFARE_ELIGIBILITY"
    assert consent["agency"] == "welfare"
    assert consent["active"] is True
    assert consent["revokedAt"] is None
    lasts = parse_time(consent["expiresAt"]) - parse_time(consent["grantedAt"])
    assert lasts == dt.timedelta(days=30)
    uuid.UUID(consent["id"])

    assert_readable(await read(demo, rrn))
    assert demo.calls("nts") == nts + 1
    assert demo.calls("nps") == nps + 1
    # Another agency's officer, same role and purpose: still no consent for them.
    assert_consent_required(await read(demo, rrn, agency="seoul-welfare"))
    # An officer with no agency claim at all.
    no_agency = demo.as_(token("welfare_officer"))
    assert_consent_required(await no_agency.query(READ, {"rrn": rrn, "purpose": "CIVIL_PETITION"}))
    # The same agency under another purpose: consent is bound to its purpose.
    other_purpose = await read(demo, rrn, purpose="CIVIL_PETITION")
    assert error_codes(other_purpose) == {
        ("resident", "taxes"): "CONSENT_REQUIRED",
        ("resident", "pension"): "CONSENT_REQUIRED",
    }
    # And to its resident: the next member has given nothing.
    assert_consent_required(await read(demo, MEMBERS[2]))


async def test_revocation_takes_effect_at_once(demo: GatewayClient) -> None:
    rrn = MEMBERS[3]
    consent = await grant(demo, rrn)
    assert_readable(await read(demo, rrn))

    body = await citizen(demo, rrn).query(REVOKE, {"id": consent["id"]})
    revoked = body["data"]["revokeConsent"]
    assert revoked["id"] == consent["id"]
    assert revoked["active"] is False
    assert revoked["revokedAt"] is not None

    assert_consent_required(await read(demo, rrn))
    listed = (await citizen(demo, rrn).query(MY_CONSENTS))["data"]["myConsents"]
    assert [(c["id"], c["active"]) for c in listed] == [(consent["id"], False)]
    # Revoking again changes nothing and keeps the first revocation time.
    again = (await citizen(demo, rrn).query(REVOKE, {"id": consent["id"]}))["data"]
    assert again["revokeConsent"]["revokedAt"] == revoked["revokedAt"]


async def test_expired_consent_no_longer_opens_anything(
    demo: GatewayClient, store: ScratchDatabase
) -> None:
    rrn = MEMBERS[4]
    consent = await grant(demo, rrn, days=1)
    assert_readable(await read(demo, rrn))
    # Simulates time passing: the consent's day is over (set directly in the store).
    await fetch(
        store.dsn,
        """update gateway.consents
           set granted_at = now() - interval '2 days', expires_at = now() - interval '1 day'
           where id = $1""",
        uuid.UUID(consent["id"]),
    )
    assert_consent_required(await read(demo, rrn))
    listed = (await citizen(demo, rrn).query(MY_CONSENTS))["data"]["myConsents"]
    assert [(c["id"], c["active"], c["revokedAt"]) for c in listed] == [
        (consent["id"], False, None)
    ]


async def test_my_consents_lists_the_citizens_own_newest_first(demo: GatewayClient) -> None:
    rrn, neighbour = MEMBERS[5], MEMBERS[6]
    first = await grant(demo, rrn, purpose="WELFARE_ELIGIBILITY", agency="welfare")
    second = await grant(demo, rrn, purpose="CIVIL_PETITION", agency="gangnam-welfare", days=7)
    await citizen(demo, rrn).query(REVOKE, {"id": first["id"]})
    theirs = await grant(demo, neighbour, purpose="CIVIL_PETITION", agency="welfare")

    listed = (await citizen(demo, rrn).query(MY_CONSENTS))["data"]["myConsents"]
    assert [c["id"] for c in listed] == [second["id"], first["id"]]
    assert listed[0] == second
    assert listed[1]["active"] is False
    assert listed[1]["revokedAt"] is not None
    assert theirs["id"] not in str(listed)

    neighbours = (await citizen(demo, neighbour).query(MY_CONSENTS))["data"]["myConsents"]
    assert [c["id"] for c in neighbours] == [theirs["id"]]


async def test_revoking_someone_elses_consent_is_forbidden(demo: GatewayClient) -> None:
    owner, intruder = MEMBERS[7], MEMBERS[8]
    consent = await grant(demo, owner)
    body = await citizen(demo, intruder).query(REVOKE, {"id": consent["id"]})
    assert error_codes(body) == {("revokeConsent",): "FORBIDDEN"}
    assert body["data"] is None
    # Still in force for its owner.
    assert_readable(await read(demo, owner))
    listed = (await citizen(demo, owner).query(MY_CONSENTS))["data"]["myConsents"]
    assert [c["active"] for c in listed] == [True]

    # No such consent looks the same as someone else's; a malformed id is a bad request.
    missing = await citizen(demo, intruder).query(REVOKE, {"id": str(uuid.uuid4())})
    assert error_codes(missing) == {("revokeConsent",): "FORBIDDEN"}
    malformed = await citizen(demo, intruder).query(REVOKE, {"id": "not-a-uuid"})
    assert error_codes(malformed) == {("revokeConsent",): "BAD_REQUEST"}


@pytest.mark.parametrize("days", [0, -1, 366, 10_000])
async def test_days_outside_1_to_365_is_bad_request(
    demo: GatewayClient, store: ScratchDatabase, days: int
) -> None:
    rrn = MEMBERS[9]
    body = await citizen(demo, rrn).query(
        GRANT, {"purpose": "WELFARE_ELIGIBILITY", "agency": "welfare", "days": days}
    )
    assert error_codes(body) == {("grantConsent",): "BAD_REQUEST"}
    assert body["data"] is None
    rows = await fetch(
        store.dsn, "select 1 from gateway.consents where subject = $1", KEYS.subject(rrn)
    )
    assert rows == []


async def test_days_at_the_limits_are_accepted(demo: GatewayClient) -> None:
    rrn = MEMBERS[10]
    for days in (1, 365):
        consent = await grant(demo, rrn, days=days)
        lasts = parse_time(consent["expiresAt"]) - parse_time(consent["grantedAt"])
        assert lasts == dt.timedelta(days=days)


async def test_only_a_citizen_grants_consent(demo: GatewayClient, store: ScratchDatabase) -> None:
    variables = {"purpose": "WELFARE_ELIGIBILITY", "agency": "welfare", "days": 30}
    before = await fetch(store.dsn, "select count(*) from gateway.consents")
    body = await officer(demo).query(GRANT, variables)
    assert error_codes(body) == {("grantConsent",): "FORBIDDEN"}
    # A citizen token without an rrn claim has no record to consent for.
    body = await demo.as_(token("citizen")).query(GRANT, variables)
    assert error_codes(body) == {("grantConsent",): "FORBIDDEN"}
    assert await fetch(store.dsn, "select count(*) from gateway.consents") == before


async def test_consent_of_the_head_covers_the_head_only(demo: GatewayClient) -> None:
    # An agency no other test names, so only the head has consented to it.
    await grant(demo, HEAD_RRN, agency="busan-welfare")
    nts = demo.app.state.agencies.by_code["nts"].stats
    calls, keys = nts.calls, nts.keys
    body = await officer(demo, "busan-welfare").query(
        """query($rrn: String!) { resident(rrn: $rrn, purpose: WELFARE_ELIGIBILITY) {
             household { members { name taxes { year } } } } }""",
        {"rrn": HEAD_RRN},
    )
    member_list = body["data"]["resident"]["household"]["members"]
    assert [t["year"] for t in member_list[0]["taxes"]] == [2024, 2025]  # the head
    assert all(m["taxes"] is None and m["name"] for m in member_list[1:])
    assert error_codes(body) == {
        ("resident", "household", "members", i, "taxes"): "CONSENT_REQUIRED" for i in range(1, 20)
    }
    # Only the head's taxes were fetched: one call, one key.
    assert (nts.calls - calls, nts.keys - keys) == (1, 1)
